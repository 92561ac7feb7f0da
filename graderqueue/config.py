"""Settings: defaults in code, then a TOML file, then ``GRADERQUEUE_*`` variables.

The web app, the CLI and the cron command all call :func:`load_settings`, so
they always agree. Settings are an immutable value passed around explicitly;
nothing reads a global.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graderqueue.errors import ConfigError

ENV_PREFIX = "GRADERQUEUE_"

#: Default solution file extensions per language (sendsolution), as the original.
DEFAULT_EXTENSIONS: dict[str, str] = {
    "c": ".c",
    "cpp": ".cpp",
    "java": ".java",
    "ocaml": ".ml",
    "pascal": ".pas",
    "py": ".py",
    "sh": ".sh",
    "[default]": ".sh",
}


#: The most result_zip_max_bytes may be: jwcrypto's inflate limit in the
#: platform client (graderqueue.tokens.DEFAULT_MAX_BYTES).
RESULT_ZIP_CEILING = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    # Where the queue keeps its local state: SQLite file, keys, secret key.
    instance_path: Path = Path("instance")
    # SQLAlchemy URL; empty means a SQLite file in the instance folder.
    database_url: str = ""
    # Folder holding the queue's RSA key pairs; empty means <instance>/keys.
    key_dir: str = ""
    # Name of the queue's key (the JWE ``kid`` platforms encrypt to).
    key_name: str = "graderqueue"

    # Queue rules (PROTOCOL.md).
    max_fails: int = 2
    default_timeout_sec: int = 300
    # Upper bound on a job's lease (the platform's ``timeout``); larger values
    # are lowered to it. A lost job is handed out again once its lease ends.
    max_timeout_sec: int = 6 * 3600
    poll_wait_sec: float = 20.0
    # Long-polls that may wait at once in one worker process: per grading
    # server, and in all. A poll beyond either tries one claim and answers at
    # once, so pollers never hold every thread (docs/SIZING.md). Keep
    # max_waiting_polls well below gunicorn's threads per worker.
    max_polls_per_server: int = 4
    max_waiting_polls: int = 48
    # A waiting poll looks at the database at least this often even without a
    # "new job" hint: covers lost hints and leases that run out.
    poll_recheck_sec: float = 5.0
    # Tags given to jobs sent without any; empty means "any server type".
    default_tags: tuple[str, ...] = ()
    lang_extensions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EXTENSIONS))

    # Seconds the web app keeps platforms, their keys, tags and server types in
    # memory (graderqueue/registry/view.py); 0 reads them for every request.
    registry_cache_sec: float = 2.0

    # Security.
    token_max_bytes: int = 1024 * 1024
    max_request_bytes: int = 16 * 1024 * 1024
    # Addresses of the TLS proxy whose client-certificate headers we believe.
    trusted_proxies: tuple[str, ...] = ()
    debug_password: str = ""
    # Seconds a ``date`` field or ``iat`` may be off when a platform asks for freshness.
    token_max_age_sec: int = 86400

    # Wake-ups of grading servers over UDP.
    wakeup_strategy: str = "first"
    wakeup_recent_sec: int = 18
    wakeup_timeout_sec: float = 1.0
    # Address this node's long-polls listen on for "a job arrived" hints from
    # other processes and nodes. Other nodes must be able to reach it.
    notify_host: str = "127.0.0.1"

    # Maintenance (cron) and alerts.
    keep_old_days: int = 7
    warn_nb: int = 10
    warn_seconds: int = 600
    token_server_max_wakeup_fails: int = 50
    admin_emails: tuple[str, ...] = ()
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "graderqueue@localhost"
    # A server counts as "not waking up" in the hourly alert from this many
    # failed wake-ups in a row (a poll resets the count).
    warn_wakeup_fails: int = 3

    # Result delivery to platforms.
    delivery_enabled: bool = True
    delivery_timeout_sec: float = 10.0
    delivery_backoff_max_sec: int = 3600
    delivery_give_up_after_sec: int = 14 * 86400
    # First retry delay; it doubles per failed attempt up to delivery_backoff_max_sec.
    delivery_backoff_base_sec: float = 10.0
    # An idle delivery worker looks at the outbox at least this often: it sees
    # rows queued by other nodes or by `graderqueue job redeliver` without a kick.
    delivery_poll_sec: float = 5.0
    # Posts one delivery worker has under way at once, to one platform or
    # several (a pool thread with its own HTTP session each). One at a time,
    # a platform that takes 50 ms to answer would cap delivery at 20/s.
    delivery_concurrency: int = 8
    # The largest result the queue takes and delivers: sResultData (the
    # grading server's resultdata.jobdata) as compact JSON, in bytes. A larger
    # one is refused at /sendresults.php (errorcode 2); the grading server's
    # default output cap (graderserver max_output_bytes) is the same 8 MiB and
    # the platform client (graderqueue.client) opens results up to it.
    max_result_bytes: int = 8 * 1024 * 1024
    # Result tokens are compressed (zip DEF) only when the signed JWS inside is
    # at most this many bytes; larger ones are sent without zip. JOSE libraries
    # cap what they inflate (Node's jose and joserfc at about 250,000 bytes),
    # so this keeps every token openable with their defaults. 0: never compress.
    result_zip_max_bytes: int = 250_000

    # Admin web interface.
    admin_enabled: bool = True
    send_job_form: bool = False
    secret_key: str = ""
    session_cookie_secure: bool = True
    # Login throttling (docs/ADMIN.md): within a window of this many seconds,
    # at most this many attempts per account (a success starts it afresh) and
    # this many failed ones per client address; beyond, even the right
    # password is refused (HTTP 429) without being checked.
    admin_login_window_sec: int = 900
    admin_login_account_limit: int = 5
    admin_login_address_limit: int = 20

    # -- internals: timings with safe defaults, rarely worth changing -----------
    # Seconds of clock difference allowed on a token's exp and nbf.
    token_clock_skew_sec: int = 60
    # SQLite: how long a writer waits for the write lock before failing.
    sqlite_busy_timeout_ms: int = 15000
    # Hints to waiting polls (dispatch/hints.py): a listener re-registers this
    # often, counts as gone after listener_stale_sec without doing so, and a
    # sender's list of listeners may be this old. A signed hint older or newer
    # than hint_window_sec is dropped (nodes' clocks are NTP-synced).
    listener_heartbeat_sec: float = 30.0
    listener_stale_sec: float = 120.0
    listener_list_cache_sec: float = 1.0
    hint_window_sec: float = 30.0
    # A failure that repeats (database outage, forged hints) is logged when it
    # starts and then at most this often.
    failure_log_interval_sec: float = 60.0
    # -- logs (issue 15, item 6: docs/LOGS.md) ------------------------------------
    # "text" lines or "json" lines (one object per line, for a log shipper);
    # either way each has the time, level, pid and request id.
    log_format: str = "text"
    # Delivery worker: lease slack on top of the posts' own time; how long a
    # busy worker gathers outcomes into one transaction; its wait when rows are
    # due but another worker holds them (never spin on the database).
    delivery_lease_slack_sec: float = 30.0
    delivery_gather_sec: float = 0.05
    delivery_busy_wait_sec: float = 0.1
    # Mail: SMTP connection timeout; the same alert at most once per alert_repeat_sec.
    smtp_timeout_sec: float = 30.0
    alert_repeat_sec: int = 3600
    # The hourly cron's lease: one node at a time does the heavy deletes. Longer
    # than any hourly run; a node that dies holding it delays the next run by at
    # most this much.
    hourly_lease_sec: int = 15 * 60

    # Autoscaling (docs/AUTOSCALING.md).
    # `graderqueue autoscale` wants, per server type, job slots for the largest
    # of three demands: the slots busy over the burst window times
    # autoscale_burst_ratio; those busy over the medium or the long window
    # (the larger) times autoscale_long_ratio; and the jobs running plus the
    # jobs waiting, finished within autoscale_target_wait_sec at the recent
    # mean job duration. The ratios, windows and delay default to the PHP
    # original's (1.3, 1.6; 1, 5 and 15 minutes; 30 minutes).
    autoscale_target_wait_sec: float = 120.0
    autoscale_burst_ratio: float = 1.3
    autoscale_long_ratio: float = 1.6
    autoscale_burst_window_sec: int = 60
    autoscale_medium_window_sec: int = 5 * 60
    autoscale_long_window_sec: int = 15 * 60
    # The mean job duration assumed for a type none of whose jobs ended in the long window.
    autoscale_default_job_sec: float = 60.0
    # Fewer servers are wanted only once the wanted number has not changed for this long.
    autoscale_scale_down_delay_sec: int = 30 * 60
    # Servers wanted per type, at least and at most; autoscale_type_limits
    # sets them for some types by name: {gpu = "0-4"} (TOML), {"gpu": "0-4"} (env).
    autoscale_min_servers: int = 0
    autoscale_max_servers: int = 10
    autoscale_type_limits: dict[str, str] = field(default_factory=dict)
    # `autoscale --hook CMD`: the command is killed after this long.
    autoscale_hook_timeout_sec: float = 120.0

    # Admin panel: lost servers, attention
    # A server is shown "lost" once it has not polled for this long and it
    # cannot be reached otherwise: its wake-ups fail, a job's lease it holds
    # ran out, or it has no wake-up URL (docs/ADMIN.md).
    server_lost_after_sec: float = 120.0
    # The dashboard's "needs attention" strip names a server type whose
    # oldest queued job has waited longer than this.
    attention_wait_sec: float = 300.0

    # JSON API (docs/API.md).
    # stdout/stderr a grading server sends beside a result: each kept up to
    # this many bytes (the rest is cut, and the artifact says so).
    artifact_max_bytes: int = 64 * 1024
    # How long an Idempotency-Key is remembered (at least 24 h, by contract).
    idempotency_keep_hours: int = 48
    # Jobs per page of GET /api/v1/jobs, and in one POST /api/v1/jobs batch.
    api_page_max: int = 200
    api_batch_max: int = 1000
    # Jobs one POST /api/v1/jobs/actions may change (a dry run counts them all).
    api_action_max: int = 100_000
    # Event streams: one thread per web worker reads every watched job's state
    # from the database each events_poll_sec, whatever the number of streams;
    # a worker serves at most events_max_streams at once (more: 503), each for
    # at most events_max_sec (the client resumes with Last-Event-ID).
    events_poll_sec: float = 1.0
    events_max_streams: int = 32
    events_max_sec: float = 600.0
    events_keepalive_sec: float = 15.0
    # Runs and callbacks (docs/API.md "Runs", "Callbacks"; queue/runs.py).
    # The most roster entries one run may have (more: 400 at submission).
    runs_roster_max: int = 10_000
    # Roster jobs made per transaction when a run's students stage starts:
    # bounds how long one stage change holds its locks, whatever the roster.
    runs_batch: int = 500
    # Metrics and health (docs/METRICS.md).
    # /metrics answers requests from these client networks (the real client's
    # address: behind nginx, through trusted_proxies) without a token; empty:
    # only with the token.
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1")
    # A bearer token that opens /metrics from any address; empty: none.
    metrics_token: str = ""

    # Files (labs): docs/API.md "Files (labs)", graderqueue/files/.
    # The largest file one PUT /api/v1/labs/{lab}/files/{name} stores. Its own
    # body limit, beside max_request_bytes; the default fits the example nginx
    # configuration's client_max_body_size (17m): raise both together.
    file_max_bytes: int = 16 * 1024 * 1024
    # All of one platform's stored files together (each content counted once,
    # those only submitted jobs still hold included).
    file_platform_max_bytes: int = 1024 * 1024 * 1024
    # `cron --hourly` deletes files no lab and no kept job refers to, once they
    # are at least this old.
    file_grace_sec: int = 3600

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.instance_path / 'graderqueue.db').resolve()}"

    @property
    def resolved_key_dir(self) -> Path:
        return Path(self.key_dir) if self.key_dir else self.instance_path / "keys"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a TOML value or an environment string into the field's type."""
    origin = typing.get_origin(kind)
    try:
        if kind is Path:
            return Path(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind is int:
            if isinstance(value, bool):
                raise ValueError("not an integer")
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            if not isinstance(value, str | int | float):
                raise ValueError("not a string")
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(v) for v in value)
        if origin is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError("not a table")
            return {str(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: {exc}") from exc
    if isinstance(kind, types.UnionType):  # pragma: no cover - no such field today
        return value
    raise ConfigError(f"setting {name}: unsupported type {kind!r}")


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from defaults, the config file, the environment, then overrides.

    The config file is named by ``GRADERQUEUE_CONFIG`` (TOML, keys are the
    field names of :class:`Settings`). Unknown keys are errors: a typo in a
    security setting must not pass silently.
    """
    env = os.environ if environ is None else environ
    kinds = _field_types()
    values: dict[str, Any] = {}

    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            if key not in kinds:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, kinds[key], value)

    for key, kind in kinds.items():
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None:
            values[key] = _coerce(key, kind, raw)

    for key, value in (overrides or {}).items():
        if key not in kinds:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, kinds[key], value)

    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.wakeup_strategy not in ("first", "last"):
        raise ConfigError("wakeup_strategy must be 'first' or 'last'")
    for name in (
        "max_fails",
        "default_timeout_sec",
        "max_timeout_sec",
        "token_max_bytes",
        "max_request_bytes",
        "delivery_concurrency",
        "max_polls_per_server",
        "max_waiting_polls",
        "admin_login_window_sec",
        "admin_login_account_limit",
        "admin_login_address_limit",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.max_result_bytes < 1:
        raise ConfigError("max_result_bytes must be at least 1")
    if not 0 <= settings.result_zip_max_bytes <= RESULT_ZIP_CEILING:
        # A compressed token inflating past this is refused by the platform
        # client's (and most JOSE libraries') inflate limits.
        raise ConfigError(f"result_zip_max_bytes must be between 0 and {RESULT_ZIP_CEILING}")
    if settings.poll_wait_sec < 0:
        raise ConfigError("poll_wait_sec must not be negative")


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with some fields changed (tests, CLI options)."""
    return dataclasses.replace(settings, **changes)
