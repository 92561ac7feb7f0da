"""The job-state checks against a real tiny HTTP server on 127.0.0.1.

Only a clear "no" from the queue may stop a job. A queue without /jobstate
(the PHP original, an older version of this project) answers 404 or a page:
the job is then no longer asked about, and never killed for it. A queue that
gives no answer this time is asked again at the next round.

With the same server, the one rule about artifacts a real queue does not
show easily: a result refused with them is sent again without them.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from graderserver.client import QueueClient
from graderserver.config import Config, config_from_dict
from graderserver.errors import ConfigError
from graderserver.jobcheck import JobWatcher
from graderserver.results import send_results

HOLDS = (200, {"errorcode": 0, "errormsg": "Success", "jobid": 7, "holds": True})
GONE = (200, {"errorcode": 0, "errormsg": "Success", "jobid": 7, "holds": False})
TOO_LARGE = {"errorcode": 2, "errormsg": "Request too large."}


class ScriptedQueue(http.server.ThreadingHTTPServer):
    """Answers each POST with the next (status, body) of its script; the last repeats."""

    def __init__(self, script: list[tuple[int, Any]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def answer(self) -> tuple[int, Any]:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def asked(self) -> int:
        with self.lock:
            return len(self.requests)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ScriptedQueue

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        with self.server.lock:
            self.server.requests.append((self.path, form))
        status, body = self.server.answer()
        data = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedQueue] = []

    def make(*script: tuple[int, Any]) -> ScriptedQueue:
        server = ScriptedQueue(list(script))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def watcher_for(url: str, interval: float = 60.0) -> JobWatcher:
    config = Config(queue_url=url, command=("cat",), server_token="tok", request_timeout=5)
    return JobWatcher(QueueClient(config).job_holds, interval)


class Gone:
    """An on_gone callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.called.set()


def test_a_no_stops_the_job_once_and_a_yes_keeps_it(scripted):
    queue = scripted(HOLDS, GONE)
    watcher = watcher_for(queue.url)
    gone = Gone()
    watcher.watch(7, gone)
    watcher.check_once()
    assert (gone.calls, watcher.watching()) == (0, [7])
    watcher.check_once()
    assert (gone.calls, watcher.watching()) == (1, [])
    watcher.check_once()
    assert (gone.calls, queue.asked()) == (1, 2), "a job taken back is not asked about again"
    path, form = queue.requests[0]
    assert path == "/jobstate"
    assert (form["jobid"], form["server_token"]) == (["7"], ["tok"])


@pytest.mark.parametrize(
    "answer",
    [
        (404, "<html>Not Found</html>"),
        (200, "<html>the PHP queue's front page</html>"),
        (200, {"errorcode": 2, "errormsg": "Invalid request."}),
        (200, {"errorcode": 0, "errormsg": "Success"}),  # no holds: not this protocol
    ],
    ids=["404", "not-json", "errorcode-2", "no-holds"],
)
def test_a_queue_that_cannot_tell_is_not_asked_again_and_never_kills(scripted, caplog, answer):
    queue = scripted(answer, GONE)  # a "no" after it must not be asked for
    watcher = watcher_for(queue.url)
    gone = Gone()
    watcher.watch(7, gone)
    with caplog.at_level(logging.INFO, logger="graderserver.jobcheck"):
        watcher.check_once()
        watcher.check_once()
    assert gone.calls == 0
    assert watcher.watching() == []
    assert queue.asked() == 1
    said = [r for r in caplog.records if "cannot tell" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO], caplog.text


@pytest.mark.parametrize(
    "answer",
    [(502, "Bad Gateway"), (200, {"errorcode": 1, "errormsg": "Try again later."})],
    ids=["502", "errorcode-1"],
)
def test_no_answer_this_time_is_asked_again(scripted, answer):
    queue = scripted(answer, GONE)
    watcher = watcher_for(queue.url)
    gone = Gone()
    watcher.watch(7, gone)
    watcher.check_once()
    assert (gone.calls, watcher.watching()) == (0, [7])
    watcher.check_once()
    assert gone.calls == 1


def test_an_unreachable_queue_kills_nothing(scripted):
    queue = scripted(GONE)
    url = queue.url
    queue.shutdown()
    queue.server_close()  # nothing listens there now: connection refused
    watcher = watcher_for(url)
    gone = Gone()
    watcher.watch(7, gone)
    watcher.check_once()
    assert (gone.calls, watcher.watching()) == (0, [7])


def test_a_forgotten_job_is_not_stopped(scripted):
    # The job ended here (its result on the way) before the queue's "no" came.
    queue = scripted(GONE)
    watcher = watcher_for(queue.url)
    gone = Gone()
    watcher.forget(watcher.watch(7, gone))
    watcher.check_once()
    assert gone.calls == 0 and queue.asked() == 0


def test_the_thread_checks_every_interval_and_stops_cleanly(scripted):
    queue = scripted(HOLDS, HOLDS, GONE)
    watcher = watcher_for(queue.url, interval=0.05).start()
    gone = Gone()
    try:
        watcher.watch(7, gone)
        assert gone.called.wait(20), "the queue's no never stopped the job"
    finally:
        watcher.stop(timeout=10)
    assert queue.asked() == 3
    assert watcher._thread is not None and not watcher._thread.is_alive()


def test_the_settings_and_their_defaults():
    base = {"queue": {"url": "http://q/", "server_token": "t"}, "program": {"command": ["cat"]}}
    cfg = config_from_dict(base)
    assert (cfg.job_check_interval, cfg.artifact_max_bytes) == (2.0, 65536)
    assert cfg.jobstate_url == "http://q/jobstate"
    cfg = config_from_dict(
        {
            **base,
            "program": {"command": ["cat"], "artifact_max_bytes": 0},
            "daemon": {"job_check_interval": 0},
        }
    )
    assert (cfg.job_check_interval, cfg.artifact_max_bytes) == (0, 0)
    with pytest.raises(ConfigError, match=r"daemon\.job_check_interval"):
        config_from_dict({**base, "daemon": {"job_check_interval": -1}})
    with pytest.raises(ConfigError, match=r"program\.artifact_max_bytes"):
        config_from_dict({**base, "program": {"command": ["cat"], "artifact_max_bytes": 1.5}})


# -- the artifacts never cost a result ------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [(413, "<html>413 Request Entity Too Large</html>"), (200, TOO_LARGE)],
    ids=["nginx-413", "queue-errorcode-2"],
)
def test_a_result_refused_with_its_artifacts_is_sent_without_them(scripted, refusal):
    queue = scripted(refusal, (200, {"errorcode": 0, "errormsg": "Saved resultdata."}))
    config = Config(queue_url=queue.url, command=("cat",), server_token="tok")
    result = {"errorcode": 0, "errormsg": "ok", "jobdata": {}}
    artifacts = {"stdout": "{}", "stderr": "x" * 100, "stderr_truncated": "1"}
    send_results(
        QueueClient(config), config, 7, result, artifacts=artifacts, cold=threading.Event()
    )
    forms = [form for _, form in queue.requests]
    assert len(forms) == 2
    assert (forms[0]["stdout"], forms[0]["stderr_truncated"]) == (["{}"], ["1"])
    assert "stdout" not in forms[1] and "stderr" not in forms[1]
    assert forms[1]["resultdata"] == forms[0]["resultdata"]
