"""Config loading: what an operator writes, and the errors a mistake gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graderserver.config import Config, default_config_path, load_config
from graderserver.errors import ConfigError

MINIMAL = """
[queue]
url = "https://queue.example/"
server_token = "s3cret"

[program]
command = ["/usr/bin/taskgrader"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "graderserver.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_the_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.queue_url == "https://queue.example/"
    assert cfg.server_token == "s3cret"
    assert cfg.command == ("/usr/bin/taskgrader",)
    assert cfg.wakeup_port == 20000
    assert cfg.concurrency == 1
    assert cfg.results_tries == 3
    assert cfg.results_retry_delay == 3.0
    assert cfg.restrict_paths == ()
    assert cfg.endpoints == {
        "poll": "https://queue.example/poll.php",
        "sendresults": "https://queue.example/sendresults.php",
        "test": "https://queue.example/test.php",
    }


def test_the_shipped_example_loads():
    example = Path(__file__).parents[2] / "examples" / "graderserver.toml"
    cfg = load_config(example)
    assert cfg.endpoints["poll"].endswith("/poll.php")
    assert cfg.prepare_command


def test_full_config_and_relative_paths(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
[queue]
url = "https://queue.example"
cert = "certs/server.crt"
key = "certs/server.key"
ca = "/etc/ssl/queue-ca.crt"

[program]
command = ["./grader.py", "--fast"]
timeout = 12.5
max_output_bytes = 1000
prepare_command = ["git", "-C", "{task_dir}", "checkout", "{revision}"]

[paths]
root = "/srv/tasks"
vars = { CONTEST = "/srv/contest" }
restrict = ["/srv/tasks", "/tmp"]

[wakeup]
host = "127.0.0.1"
port = 20001
secret = "wake"

[health]
max_cpu_steal_percent = 10
min_free_memory_mib = 512
min_free_disk_mib = 1024
disk_path = "/srv"

[daemon]
concurrency = 4
pid_file = "run/graderserver.pid"
log_level = "info"
""",
        )
    )
    base = str(tmp_path.resolve())
    assert cfg.cert == f"{base}/certs/server.crt"
    assert cfg.key == f"{base}/certs/server.key"
    assert cfg.ca == "/etc/ssl/queue-ca.crt"
    assert cfg.server_token is None
    assert cfg.command == (f"{base}/grader.py", "--fast")
    assert cfg.pid_file == f"{base}/run/graderserver.pid"
    assert cfg.path_vars == {"CONTEST": "/srv/contest"}
    assert cfg.restrict_paths == ("/srv/tasks", "/tmp")
    assert cfg.concurrency == 4
    assert cfg.endpoints["test"] == "https://queue.example/test.php"


def test_bare_command_names_stay_for_path_lookup(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL.replace("/usr/bin/taskgrader", "cat")))
    assert cfg.command == ("cat",)


def test_config_is_frozen(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.timeout = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[queue]", "[queue]\nuser = 'x'"), "unknown key queue.user"),
        (("[program]", "[programs]"), "unknown section [programs]"),
        (('server_token = "s3cret"', ""), "queue.server_token or queue.cert must be set"),
        (('"https://queue.example/"', '"ftp://queue.example/"'), "queue.url must start"),
        (('["/usr/bin/taskgrader"]', "[]"), "program.command must not be empty"),
        (('["/usr/bin/taskgrader"]', '"/usr/bin/taskgrader"'), "program.command must be a list"),
        (("[program]", "[daemon]\nconcurrency = 0\n[program]"), "daemon.concurrency"),
        (("[program]", "[daemon]\nconcurrency = true\n[program]"), "daemon.concurrency"),
        (("[program]", "[wakeup]\nport = 70000\n[program]"), "wakeup.port"),
        (("[program]", "[daemon]\nlog_level = 'LOUD'\n[program]"), "daemon.log_level"),
        (("[program]", "[program]\ntimeout = -1"), "program.timeout must be a number > 0"),
        (
            ("[program]", "[program]\nprepare_command = ['git', '{dir}']"),
            "bad placeholder",
        ),
        (("[queue]", "[queue]\nkey = 'k.pem'"), "queue.key needs queue.cert"),
    ],
)
def test_mistakes_are_reported_clearly(tmp_path, change, message):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, MINIMAL.replace(old, new, 1)))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[queue\nurl="))
    with pytest.raises(ConfigError, match=r"queue\.url is required"):
        load_config(write(tmp_path, "[program]\ncommand=['cat']"))


def test_default_path_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRADERSERVER_CONFIG", "/etc/graderserver.toml")
    assert default_config_path() == Path("/etc/graderserver.toml")
    monkeypatch.delenv("GRADERSERVER_CONFIG")
    assert default_config_path() == Path("graderserver.toml")


def test_config_can_be_built_directly():
    cfg = Config(queue_url="http://127.0.0.1:1/", command=("cat",), server_token="t")
    assert cfg.timeout > 0
    with pytest.raises(ConfigError):
        Config(queue_url="http://127.0.0.1:1/", command=("cat",), server_token="t", timeout=0)
