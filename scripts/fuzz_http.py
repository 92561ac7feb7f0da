"""Fuzz the protocol endpoints over HTTP (Flask test client) with hypothesis.

A real queue (SQLite, schema, keys, a platform, a platform that demands
fresh tokens, a token server, a certificate server, a remote user, an
interface token, a debug password) gets random form posts on each endpoint:

- ``api``: /api.php with garbage fields, real platform tokens around random
  requests (sendjob, sendsolution, getjob, test, wakeup...), fresh tokens
  with random claims, the debug password, the interface token, remote users,
  several credentials at once, uploads;
- ``poll``: /poll.php with random certificate headers and server tokens;
- ``sendresults``: /sendresults.php from servers that hold a job or not,
  with random job ids and result data;
- ``test``: /test.php with random credentials.

Every answer must be HTTP 200 with a JSON object whose errorcode is 0, 1, 2
or 3, with no stack trace, no "Internal error", nothing logged as an error,
and no secret (private keys, tokens, passwords) in it. A refused request
(errorcode 2 or 3) must leave every table as it was.

    python scripts/fuzz_http.py                # 10,000 cases per endpoint
    python scripts/fuzz_http.py -n 300 -t api

Wake-ups of grading servers are switched off here: they run in a background
thread and write to the database while a case is being compared (they have
their own tests).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import secrets as secrets_module
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import fuzz_tokens as ft  # noqa: E402
from jwcrypto import jwk  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from graderqueue.config import Settings  # noqa: E402
from graderqueue.identity import (  # noqa: E402
    passwords,
)
from graderqueue.protocol import tokens  # noqa: E402
from graderqueue.store.models import Job, JobStatus, RemoteUser, Server  # noqa: E402
from harness.queue import QueueSetup  # noqa: E402

DEFAULT_EXAMPLES = 10_000
CERT_SERIAL = "0A1B2C3D4E5F"
CERT_DN = "CN=fuzz CA,O=graderqueue"
DEBUG_PASSWORD = "debug-Zq9vL2mX8rT4"
REMOTE_USER, REMOTE_PASSWORD = "remote1", "remote-Pw7nK3sQ1"
# Errorcode 2 answers that still change the database, by design: a result
# that reports a failure puts the job back in the queue.
CHANGING_REFUSALS = ("Resultdata received invalid.",)


class _NoWakeups:
    def request(self, type_ids: Any) -> None:
        pass


class _Errors(logging.Handler):
    """Keeps ERROR records of the queue's loggers: an error logged is a failure."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Platform:
    name: str
    key: jwk.JWK


@dataclass
class FuzzQueue:
    """A queue on SQLite with one of every kind of credential, and its app."""

    instance: Path
    queue: QueueSetup | None = None
    settings: Any = None
    db: Any = None
    app: Any = None
    client: Any = None
    platform: Platform | None = None
    fresh: Platform | None = None
    queue_public: jwk.JWK | None = None
    server_token: str = ""
    # The original interface's `token`, which this queue accepts from no one.
    interface_token: str = field(default_factory=lambda: secrets_module.token_urlsafe(24))
    secrets: list[str] = field(default_factory=list)
    errors: _Errors = field(default_factory=_Errors)
    baseline: dict[str, list[tuple]] | None = None

    def setup(self) -> FuzzQueue:
        queue = self.queue = QueueSetup(
            self.instance,
            poll_wait_sec=0,
            trusted_proxies="127.0.0.1",
            debug_password=DEBUG_PASSWORD,
            admin_enabled=False,
            # QueueSetup turns the registry cache off for tests; fuzz with it as deployed.
            registry_cache_sec=Settings.registry_cache_sec,
        )
        self.settings, self.db = queue.settings, queue.db
        key_dir = self.settings.resolved_key_dir
        queue_pem = (key_dir / f"{self.settings.key_name}.pem").read_bytes()
        self.queue_public = jwk.JWK.from_pem(
            (key_dir / f"{self.settings.key_name}.pub.pem").read_bytes()
        )
        self.secrets += _key_secrets(queue_pem)
        queue.tag("c", "java", "gpu")
        queue.server_type("t-c", ["c"])
        queue.server_type("t-java", ["c", "java"])
        self.platform = self._platform("platform1", require_fresh=False)
        self.fresh = self._platform("fresh1", require_fresh=True)
        self.server_token = queue.server_token("t-c", "fuzz")
        queue.cert_server("cert1", "t-c", CERT_SERIAL, CERT_DN, max_jobs=2)
        with self.db.transaction() as session:
            session.add(
                RemoteUser(
                    username=REMOTE_USER, password_hash=passwords.hash_password(REMOTE_PASSWORD)
                )
            )
        self.secrets += [
            self.server_token,
            REMOTE_PASSWORD,
            DEBUG_PASSWORD,
            self.interface_token,
        ]

        self.app = queue.app
        self.app.extensions["graderqueue"].waker = _NoWakeups()
        self.client = self.app.test_client()
        logging.getLogger("graderqueue").addHandler(self.errors)
        # The token server registers itself on its first request.
        self.post("/test.php", {"server_token": self.server_token})
        return self

    def _platform(self, name: str, *, require_fresh: bool) -> Platform:
        assert self.queue is not None
        identity = self.queue.platform(name, require_fresh=require_fresh)
        private = identity.private_pem.encode()
        self.secrets += _key_secrets(private)
        return Platform(name, jwk.JWK.from_pem(private))

    def close(self) -> None:
        logging.getLogger("graderqueue").removeHandler(self.errors)
        if self.queue is not None:
            self.queue.close()

    # -- requests ------------------------------------------------------------

    def post(self, path: str, form: dict[str, Any], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return self.client.post(path, data=form, headers=headers or {})

    def seal(self, platform: Platform, payload: dict[str, Any]) -> str:
        return tokens.seal(
            payload, platform.key, platform.name, self.queue_public, self.settings.key_name
        )

    # -- database ------------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple]]:
        assert self.queue is not None
        return self.queue.snapshot()

    def trim(self) -> None:
        """Keep the database small, so snapshots stay cheap over 10,000 cases."""
        with self.db.transaction() as session:
            count = session.scalar(text("SELECT COUNT(*) FROM jobs"))
            if count > 60:
                for table in ("results", "deliveries", "job_types", "events", "seen_token_ids"):
                    session.execute(text(f"DELETE FROM {table}"))
                session.execute(text("DELETE FROM jobs"))
                session.execute(
                    text("DELETE FROM servers WHERE token_id IS NOT NULL AND ip != '127.0.0.1'")
                )
        self.baseline = None

    def held_by(self, server_name: str) -> list[int]:
        with self.db.transaction() as session:
            server = session.scalars(select(Server).where(Server.name == server_name)).first()
            if server is None:
                return []
            return list(
                session.scalars(
                    select(Job.id).where(Job.sent_to == server.id, Job.status == JobStatus.SENT)
                )
            )


def _key_secrets(private_pem: bytes) -> list[str]:
    """Pieces of a private key that must never show: PEM lines and JWK private numbers."""
    lines = [
        line for line in private_pem.decode().splitlines() if line and not line.startswith("-----")
    ]
    exported = json.loads(jwk.JWK.from_pem(private_pem).export_private())
    return lines + [exported[name] for name in ("d", "p", "q", "dp", "dq", "qi")]


# -- checking one answer ---------------------------------------------------------

TRACE_MARKERS = ("Traceback", 'File "', "Internal error", "sqlalchemy", "jwcrypto")


def _sent(*parts: dict[str, Any]) -> str:
    """Everything a request carried, to tell an echo of it from the app's own words."""
    return "\n".join(str(value) for part in parts for value in part.values())


def check_answer(
    fq: FuzzQueue, response: Any, before: dict[str, list[tuple]], sent: str = ""
) -> dict[str, Any]:
    body = response.get_data(as_text=True)
    # The next case compares with the state now, whatever this one's verdict.
    after = fq.baseline = fq.snapshot()
    if fq.errors.records:
        record = fq.errors.records[0]
        fq.errors.records.clear()
        if record.exc_info and record.exc_info[1] is not None:
            raise record.exc_info[1]
        raise AssertionError(f"logged an error: {record.getMessage()}")
    assert response.status_code == 200, (response.status_code, body[:300])
    assert response.mimetype == "application/json", response.mimetype
    answer = json.loads(body)
    assert isinstance(answer, dict), body[:300]
    assert answer.get("errorcode") in (0, 1, 2, 3), body[:300]
    assert isinstance(answer.get("errormsg"), str), body[:300]
    for marker in TRACE_MARKERS:
        # Messages may quote the request ("Unknown platform `...`"): only the app's own count.
        assert marker not in body or marker in sent, f"{marker!r} in answer: {body[:300]}"
    for secret in fq.secrets:
        assert secret not in body, "a secret is in the answer"
    ft.outcome(f"{answer['errorcode']} {re.sub(r'[#`].*', '', answer['errormsg'])[:60]}")
    refused = answer["errorcode"] in (2, 3) and answer["errormsg"] not in CHANGING_REFUSALS
    if refused:
        changed = [t for t in after if after[t] != before.get(t)]
        assert not changed, f"refused ({answer['errormsg']}) but changed {changed}"
    return answer


def _before(fq: FuzzQueue) -> dict[str, list[tuple]]:
    if fq.baseline is None:
        fq.baseline = fq.snapshot()
    return fq.baseline


# -- strategies ------------------------------------------------------------------

texts = ft.texts
small_texts = st.text(max_size=40)
API_FIELDS = [
    "sToken",
    "sPlatform",
    "rRequest",
    "rUsername",
    "rPassword",
    "token",
    "debugPassword",
    "request",
    "jobid",
    "jobdata",
    "serverid",
    "tags",
    "priority",
]
SERVER_FIELDS = ["server_token", "nbtasks", "jobid", "resultdata"]
# None keeps the request kind the payload was made for (sendjob, sendsolution).
REQUEST_KINDS = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from(["getjob", "test", "wakeup", ""]),
    ft.json_values,
)


def garbage_form(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.one_of(st.sampled_from(names), small_texts), texts, max_size=8)


def request_payloads() -> st.SearchStrategy[dict[str, Any]]:
    jobid_values = st.one_of(
        st.integers(0, 50).map(str), st.integers(0, 50), ft.unicode_digits, ft.field_values
    )
    return st.tuples(
        ft.requests_,
        REQUEST_KINDS,
        st.fixed_dictionaries({}, optional={"jobid": jobid_values, "serverid": ft.field_values}),
        st.sampled_from(["c", "java", "c,java", "gpu", "", "nope"]),
    ).map(_payload)


def _payload(parts: tuple[dict[str, Any], Any, dict[str, Any], str]) -> dict[str, Any]:
    request, kind, ids, tags = parts
    payload = {**request, **ids}
    if kind is not None:
        payload["request"] = kind
    if tags:
        payload["tags"] = tags
    return payload


def _near_now(offset: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return offset.map(lambda seconds: int(time.time()) + seconds)


random_claims = st.fixed_dictionaries(
    {},
    optional={
        "iat": st.one_of(st.integers(-(2**40), 2**40), st.floats(), ft.json_scalars),
        "exp": st.one_of(st.integers(-(2**40), 2**40), st.floats(), ft.json_scalars),
        "nbf": st.one_of(st.integers(-(2**40), 2**40), ft.json_scalars),
        "jti": st.one_of(small_texts, ft.json_scalars),
        "date": st.one_of(
            st.dates().map(lambda d: d.strftime("%d-%m-%Y")), small_texts, ft.json_scalars
        ),
    },
)
# Claims a fresh platform accepts, mostly: the request gets past freshness.
good_claims = st.one_of(
    st.fixed_dictionaries(
        {"iat": _near_now(st.integers(-600, 60)), "jti": st.uuids().map(str)},
        optional={
            "exp": _near_now(st.integers(-120, 3600)),
            "nbf": _near_now(st.integers(-600, 120)),
        },
    ),
    st.fixed_dictionaries(
        {
            "date": st.integers(-2, 2).map(
                lambda d: time.strftime("%d-%m-%Y", time.gmtime(time.time() + d * 86400))
            )
        }
    ),
)
freshness_claims = st.one_of(random_claims, good_claims, good_claims)
uploads = st.one_of(
    st.none(),
    st.tuples(
        st.text(max_size=30),
        st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    ),
)


@dataclass(frozen=True)
class ApiCase:
    mode: int
    payload: dict[str, Any]
    claims: dict[str, Any]
    extra: dict[str, str]
    sPlatform: str | None
    mutation: ft.Mutation | None
    upload: tuple[str, bytes] | None
    right_password: bool


api_cases = st.builds(
    ApiCase,
    mode=st.integers(0, 99),
    payload=request_payloads(),
    claims=freshness_claims,
    extra=garbage_form(API_FIELDS),
    sPlatform=st.one_of(st.none(), st.sampled_from(["fresh1", "nope", ""]), small_texts),
    mutation=st.one_of(st.none(), st.none(), ft.mutations(1)),
    upload=uploads,
    right_password=st.booleans(),
)


def _form_values(payload: dict[str, Any]) -> dict[str, str]:
    """A request as plain form fields (debug password and interface token ways in)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}


def run_api_case(fq: FuzzQueue, case: ApiCase) -> None:
    assert fq.platform is not None and fq.fresh is not None
    mode = case.mode
    if mode < 25:  # garbage
        form = dict(case.extra)
    elif mode < 55:  # a real platform token around a random request
        platform = fq.platform
        token = fq.seal(platform, case.payload)
        if case.mutation is not None:
            token = case.mutation.apply(token)
        form = {"sToken": token, "sPlatform": platform.name}
        if case.sPlatform is not None and mode % 5 == 0:
            form["sPlatform"] = case.sPlatform
    elif mode < 68:  # a platform that demands fresh tokens, random claims
        payload = dict(case.payload)
        if mode % 4 == 1:  # reads, which store nothing but the jti
            payload["request"] = "getjob" if mode % 8 == 1 else "test"
            payload.setdefault("jobid", str(mode))
        token = fq.seal(fq.fresh, {**payload, **case.claims})
        form = {"sToken": token, "sPlatform": fq.fresh.name}
        if mode % 3 == 0:  # sent twice: the replay is refused, or refused as the first was
            before = _before(fq)
            response = fq.client.post("/api.php", data=dict(form))
            first = check_answer(fq, response, before, _sent(form) + repr(case))
            ft.outcome(f"replay after {first['errorcode']}")
    elif mode < 80:  # the debug password: plaintext fields
        form = {**_form_values(case.payload), "debugPassword": DEBUG_PASSWORD}
        if mode % 4 == 0:
            form["debugPassword"] = case.extra.get("debugPassword", "wrong")
    elif mode < 90:  # the original interface's token: never a way in
        form = {**_form_values(case.payload), "token": fq.interface_token}
        if mode % 4 == 0:
            form["token"] = case.extra.get("token", "stale")
    elif mode < 93:  # a remote user (Argon2: slow, so rare)
        form = {
            "rRequest": json.dumps(case.payload),
            "rUsername": REMOTE_USER,
            "rPassword": REMOTE_PASSWORD if case.right_password else "wrong",
        }
    else:  # several ways in at once, and garbage around them
        form = {
            **case.extra,
            "sToken": fq.seal(fq.platform, case.payload),
            "sPlatform": case.sPlatform or fq.platform.name,
            "token": fq.interface_token,
        }
    data: dict[str, Any] = dict(form)
    if case.upload is not None and mode % 2:
        data["solfile"] = (io.BytesIO(case.upload[1]), case.upload[0])
    before = _before(fq)
    response = fq.client.post("/api.php", data=data)
    answer = check_answer(fq, response, before, _sent(form) + repr(case))
    if answer["errorcode"] == 0 and "jobid" in answer:
        fq.trim()


HEADER_NAMES = ["X-SSL-Client-Verify", "X-SSL-Client-Serial", "X-SSL-Client-I-DN", "X-Real-IP"]
header_values = st.one_of(
    st.sampled_from(["SUCCESS", "NONE", "FAILED:unable to verify", CERT_SERIAL, CERT_DN]),
    st.sampled_from(["0a:1b:2c:3d:4e:5f", "/O=graderqueue/CN=fuzz CA", "127.0.0.1", "::1"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)


@dataclass(frozen=True)
class ServerCase:
    auth: int
    headers: dict[str, str]
    token: str
    fields: dict[str, str]
    jobid: str | None
    resultdata: str | None
    hold: bool
    nbtasks: str | None


result_texts = st.one_of(
    ft.taskgrader_results.map(json.dumps),
    texts,
    ft.json_values.map(json.dumps),
    st.none(),
)
server_cases = st.builds(
    ServerCase,
    auth=st.integers(0, 9),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=4),
    token=texts,
    fields=garbage_form(SERVER_FIELDS),
    jobid=st.one_of(st.none(), st.integers(0, 10**20).map(str), ft.unicode_digits, small_texts),
    resultdata=result_texts,
    hold=st.booleans(),
    nbtasks=st.one_of(st.none(), st.just("0"), st.just(" 0 "), st.just("1"), small_texts),
)
CERT_HEADERS = {
    "X-SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-Serial": CERT_SERIAL,
    "X-SSL-Client-I-DN": CERT_DN,
}


def _server_request(fq: FuzzQueue, case: ServerCase) -> tuple[dict[str, str], dict[str, str]]:
    """Form and headers: random, or the token server's or the certificate server's."""
    form = dict(case.fields)
    if case.nbtasks is not None:
        form["nbtasks"] = case.nbtasks
    headers = dict(case.headers)
    if case.auth <= 3:  # random credentials
        if case.auth % 2:
            form["server_token"] = case.token
    elif case.auth <= 6:
        form["server_token"] = fq.server_token
    else:
        headers = {**headers, **CERT_HEADERS}
    return form, headers


def _ensure_jobs(fq: FuzzQueue, n: int = 3, *, fresh: bool = False) -> None:
    """At least ``n`` queued jobs (or one more, with ``fresh``), sent the debug way."""
    with fq.db.transaction() as session:
        queued = session.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)
        )
    for i in range(1 if fresh else n - (queued or 0)):
        form = {
            "request": "sendjob",
            "jobdata": json.dumps({"taskPath": f"/tasks/{i}", "n": time.monotonic_ns()}),
            "tags": "c",
            "debugPassword": DEBUG_PASSWORD,
        }
        assert fq.post("/api.php", form).get_json()["errorcode"] == 0
    fq.trim()
    fq.baseline = None


def run_poll_case(fq: FuzzQueue, case: ServerCase) -> None:
    if case.hold:
        _ensure_jobs(fq)
    form, headers = _server_request(fq, case)
    before = _before(fq)
    check_answer(fq, fq.post("/poll.php", form, headers), before, _sent(form, headers))


def run_sendresults_case(fq: FuzzQueue, case: ServerCase) -> None:
    form, headers = _server_request(fq, case)
    if case.auth > 3 and case.hold:
        # A server that holds a job reports on it, with random result data.
        holder = "cert1" if case.auth > 6 else "fuzz-127.0.0.1"
        headers.pop("X-Real-IP", None)
        held = fq.held_by(holder)
        if not held:
            _ensure_jobs(fq, fresh=True)
            fq.post("/poll.php", {**form, "nbtasks": "0"}, headers)
            fq.baseline = None
            held = fq.held_by(holder)
        if held:
            form["jobid"] = str(held[0])
    elif case.jobid is not None:
        form["jobid"] = case.jobid
    if case.resultdata is not None:
        form["resultdata"] = case.resultdata
    before = _before(fq)
    response = fq.post("/sendresults.php", form, headers)
    check_answer(fq, response, before, _sent(form, headers))


def run_test_case(fq: FuzzQueue, case: ServerCase) -> None:
    form, headers = _server_request(fq, case)
    before = _before(fq)
    check_answer(fq, fq.post("/test.php", form, headers), before, _sent(form, headers))


@dataclass(frozen=True)
class Endpoint:
    name: str
    strategy: st.SearchStrategy[Any]
    run_case: Callable[[FuzzQueue, Any], None]


ENDPOINTS = {
    e.name: e
    for e in [
        Endpoint("api", api_cases, run_api_case),
        Endpoint("poll", server_cases, run_poll_case),
        Endpoint("sendresults", server_cases, run_sendresults_case),
        Endpoint("test", server_cases, run_test_case),
    ]
}


def target(fq: FuzzQueue, name: str) -> ft.Target:
    endpoint = ENDPOINTS[name]
    return ft.Target(name, endpoint.strategy, lambda case: endpoint.run_case(fq, case))


def run(
    name: str,
    examples: int,
    *,
    instance: Path,
    stop_on_failure: bool = False,
    seed: int | None = None,
) -> ft.Report:
    """Fuzz one endpoint against a fresh queue in ``instance``."""
    fq = FuzzQueue(instance).setup()
    try:
        return ft.run(target(fq, name), examples, stop_on_failure=stop_on_failure, seed=seed)
    finally:
        fq.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("-t", "--target", action="append", choices=sorted(ENDPOINTS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="show the answers given")
    args = parser.parse_args(argv)
    reports = []
    with tempfile.TemporaryDirectory(prefix="gq-fuzz-http-") as tmp:
        for name in args.target or ENDPOINTS:
            instance = Path(tmp) / name
            reports.append(run(name, args.examples, instance=instance, seed=args.seed))
            print("\n".join(reports[-1].lines()), flush=True)
            if args.verbose:
                print("\n".join(reports[-1].outcome_lines()), flush=True)
    return ft.totals(reports)


if __name__ == "__main__":
    sys.exit(main())
