"""A Python client of the JSON API v1 (docs/API.md), for platforms and operators; e.g.::

api = ApiClient("https://queue.example.org", PlatformSigner("myplatform", pem_text))
job_id = api.submit({"taskPath": "$ROOT_PATH/task"}, tags="c", idempotency_key="sub-42")
for event in api.events(job_id):
    print(event.type, event.data)  # ("state", "QUEUED"), ("position", 3), ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, Self
from urllib.parse import quote

import requests
from jwcrypto import jwk, jws

from graderqueue.apiclient_sse import Event, parse_events
from graderqueue.errors import QueueError

FILTERS = ("state", "tag", "type", "name", "jobusertaskid", "since", "until", "platform")
SIGNED_LIFETIME_SEC = 60  # the queue accepts up to 300; a short life limits a leaked token


class ApiError(QueueError):
    """The queue refused a request (problem+json); network failures stay requests'."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"HTTP {status}: {title}" + (f" - {detail}" if detail else ""))
        self.status = self.http_status = status
        self.title, self.detail = title, detail


# -- who is calling: anything with bearer() -> the next request's token
class BearerSource(Protocol):
    def bearer(self) -> str: ...


@dataclass(frozen=True)
class OperatorToken:
    """An operator's API token (``gqa_...``, from ``graderqueue api-token add``)."""

    token: str = field(repr=False)

    def bearer(self) -> str:
        return self.token


class PlatformSigner:
    """A fresh RS512 compact JWS for each request (the queue takes each jti once)."""

    def __init__(self, name: str, private_key_pem: str | bytes, audience: str = "graderqueue"):
        pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        self.name, self.audience = name, audience
        self._key = jwk.JWK.from_pem(pem)

    def bearer(self) -> str:
        now = int(time.time())
        claims = {"iss": self.name, "aud": self.audience, "iat": now}
        claims.update(exp=now + SIGNED_LIFETIME_SEC, jti=uuid.uuid4().hex)
        token = jws.JWS(json.dumps(claims).encode())
        header = json.dumps({"alg": "RS512", "kid": self.name})
        token.add_signature(self._key, None, protected=header)
        return token.serialize(compact=True)


# -- typed answers
def parse_time(value: str | None) -> datetime | None:
    """An API time ("2026-12-06T05:00:00.123456Z") as an aware UTC datetime."""
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def format_time(value: datetime | str) -> str:
    """A filter's time as the API writes them; a string is passed on unchanged."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous: give it a timezone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Answer:
    """Made from JSON by its fields' types; new fields are ignored (a newer queue is fine)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue  # the class's default, or a TypeError naming what is missing
            value, kind = data[f.name], str(f.type)
            if f.name in NESTED:
                value = tuple(NESTED[f.name].from_json(v) for v in value or ())
            elif "datetime" in kind:
                value = parse_time(value)
            elif kind.startswith("tuple"):
                value = tuple(value or ())
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Job(_Answer):  # as GET /api/v1/jobs lists it
    id: int
    state: str
    name: str | None
    jobusertaskid: str | None
    platform: str | None
    received_via: str | None  # how a job not sent by a platform came: "api:NAME", ...
    tags: tuple[str, ...]
    types: tuple[str, ...]
    priority: int
    timeout: int | None
    failures: int
    received_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    server: str | None


@dataclass(frozen=True)
class TimelineEntry(_Answer):
    at: datetime | None
    event: str
    server: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ArtifactInfo(_Answer):
    name: str
    size: int | None
    truncated: bool


@dataclass(frozen=True)
class JobDetail(Job):  # GET /api/v1/jobs/{id}
    taskrevision: str | None
    jobdata: Any
    result: Any
    timeline: tuple[TimelineEntry, ...]
    artifacts: tuple[ArtifactInfo, ...]


NESTED: dict[str, type[_Answer]] = {"timeline": TimelineEntry, "artifacts": ArtifactInfo}


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Position(_Answer):  # position: 0 = next; None unless QUEUED
    id: int
    state: str
    position: int | None
    eta_sec: float | None
    throughput_per_minute: float | None


@dataclass(frozen=True)
class JobState(_Answer):  # what an action on one job left
    id: int
    state: str


@dataclass(frozen=True)
class ActionOutcome(_Answer):  # dry_run: matched = how many would change
    action: str
    dry_run: bool
    matched: int
    changed: int


@dataclass(frozen=True)
class QueueSummary(_Answer):  # the by_* rows and throughput as the queue sends them
    waiting: int
    oldest_waiting_sec: float | None
    by_type: tuple[Mapping[str, Any], ...]
    by_tag: tuple[Mapping[str, Any], ...]
    by_platform: tuple[Mapping[str, Any], ...]
    throughput: Mapping[str, Any]


@dataclass(frozen=True)
class ServerStatus(_Answer):
    name: str
    type: str | None
    alive: bool
    busy: bool
    jobs_held: int
    max_jobs: int | None
    jobs_done: int
    last_poll: datetime | None
    # A queue older than this client does not say these.
    drained: bool = False
    lost: bool = False


class ApiClient:
    """Calls /api/v1 at ``base_url`` as ``auth``; ``stream_read_timeout`` bounds the wait for
    an event stream's next bytes (the queue sends a keepalive each 15 s)."""

    def __init__(
        self,
        base_url: str,
        auth: BearerSource,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        stream_read_timeout: float = 45.0,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/api/v1")
        self.auth, self.http = auth, session or requests.Session()
        self.timeout, self.stream_read_timeout = timeout, stream_read_timeout

    def request(self, method: str, path: str, headers: Any = None, **kw: Any) -> requests.Response:
        """One request under /api/v1; a refusal raises :class:`ApiError`."""
        sent = {"Authorization": f"Bearer {self.auth.bearer()}", **(headers or {})}
        kw.setdefault("timeout", self.timeout)
        response = self.http.request(method, f"{self.base_url}/api/v1{path}", headers=sent, **kw)
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    def submit(self, jobdata: Any, *, idempotency_key: str | None = None, **fields: Any) -> int:
        """Queue one job; returns its id. ``fields``: jobname, tags, priority,
        jobusertaskid, taskrevision, timeout (None values are left out)."""
        job = _present({**fields, "jobdata": jobdata})
        return int(self._json("POST", "/jobs", json=job, headers=_idem(idempotency_key))["id"])

    def submit_batch(
        self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[int]:
        """Queue several jobs at once, each a mapping of ``jobdata`` and the fields."""
        body = [_present(job) for job in jobs]
        answer = self._json("POST", "/jobs", json=body, headers=_idem(idempotency_key))
        return [int(i) for i in answer["ids"]]

    def list_jobs(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Any
    ) -> JobPage:
        """One page of jobs, newest first; ``filters``: any of :data:`FILTERS`."""
        params = {**_filters(filters), "limit": limit, "cursor": cursor}
        answer = self._json("GET", "/jobs", params=params)  # requests leaves out the Nones
        return JobPage(tuple(Job.from_json(j) for j in answer["jobs"]), answer.get("next_cursor"))

    def iter_jobs(self, *, limit: int | None = None, **filters: Any) -> Iterator[Job]:
        """Every job matching ``filters``, following the cursors (``limit``: per page)."""
        page = self.list_jobs(limit=limit, **filters)
        yield from page.jobs
        while page.next_cursor:
            page = self.list_jobs(limit=limit, cursor=page.next_cursor, **filters)
            yield from page.jobs

    def job(self, job_id: int) -> JobDetail:
        return JobDetail.from_json(self._json("GET", f"/jobs/{int(job_id)}"))

    def position(self, job_id: int) -> Position:
        return Position.from_json(self._json("GET", f"/jobs/{int(job_id)}/position"))

    def events(self, job_id: int, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's changes as they come: its state (and position while QUEUED), then
        each change, until the queue ends the stream: after a terminal state, or
        earlier (streams are time-limited): then resume with the last Event's id."""
        headers = _present({"Accept": "text/event-stream", "Last-Event-ID": last_event_id})
        timeout = (self.timeout, self.stream_read_timeout)
        path = f"/jobs/{int(job_id)}/events"
        with self.request("GET", path, headers, stream=True, timeout=timeout) as response:
            yield from parse_events(response.iter_content(chunk_size=None))

    def artifact(self, job_id: int, name: str) -> bytes:
        """An artifact's bytes: ``result`` (JSON), ``stdout`` or ``stderr``."""
        return self.request("GET", f"/jobs/{int(job_id)}/artifacts/{quote(name, safe='')}").content

    def act_on(self, job_id: int, action: str, priority: int | None = None) -> JobState:
        """cancel, hold, release or requeue one job (a new ``priority``: not with cancel)."""
        body = None if priority is None else {"priority": priority}
        return JobState.from_json(self._json("POST", f"/jobs/{int(job_id)}/{action}", json=body))

    def cancel(self, job_id: int) -> JobState:
        return self.act_on(job_id, "cancel")

    def hold(self, job_id: int, priority: int | None = None) -> JobState:
        return self.act_on(job_id, "hold", priority)

    def release(self, job_id: int, priority: int | None = None) -> JobState:
        return self.act_on(job_id, "release", priority)

    def requeue(self, job_id: int, priority: int | None = None) -> JobState:
        return self.act_on(job_id, "requeue", priority)

    def act(
        self, action: str, filter: Mapping, priority: int | None = None, dry_run: bool = False
    ) -> ActionOutcome:
        """One action on every job ``filter`` matches (``dry_run``: only count them)."""
        body = {"action": action, "filter": _filters(filter), "dry_run": dry_run}
        if priority is not None:
            body["priority"] = priority
        return ActionOutcome.from_json(self._json("POST", "/jobs/actions", json=body))

    def queue(self) -> QueueSummary:
        return QueueSummary.from_json(self._json("GET", "/queue"))

    def servers(self) -> list[ServerStatus]:
        return [ServerStatus.from_json(s) for s in self._json("GET", "/servers")["servers"]]


def _refusal(response: requests.Response) -> ApiError:
    """The ApiError of a refused request: its problem's title and detail if it has one."""
    problem = None
    with contextlib.suppress(ValueError):
        if "problem+json" in response.headers.get("Content-Type", ""):
            problem = response.json()
    if isinstance(problem, dict):
        title = str(problem.get("title") or response.reason)
        return ApiError(response.status_code, title, str(problem.get("detail") or ""))
    # Not the API's answer (a proxy's error page, say): show what came back.
    return ApiError(response.status_code, response.reason or "Error", response.text[:200].strip())


def _idem(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    if unknown := set(filters) - set(FILTERS):
        raise ValueError(f"unknown filter(s) {sorted(unknown)}: use {', '.join(FILTERS)}")
    timed = {"since", "until"}
    return {k: format_time(v) if k in timed else v for k, v in _present(filters).items()}
