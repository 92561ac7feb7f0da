"""The grading server's settings, read once from a TOML file.

The settings are a frozen dataclass passed explicitly to every part: nothing
reads global state, so tests can build a `Config` directly. Unknown keys are
errors, because a misspelt key silently falling back to a default is the kind
of mistake an operator only finds in production.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from graderserver.errors import ConfigError

DEFAULT_CONFIG_NAME = "graderserver.toml"
CONFIG_ENV = "GRADERSERVER_CONFIG"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# Placeholders a prepare_command may use; see `graderserver.prepare`.
PREPARE_PLACEHOLDERS = ("task_dir", "revision")


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs, validated. Paths are absolute."""

    queue_url: str
    command: tuple[str, ...]
    server_token: str | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    # Must outlast the queue's long-poll (~20 s), or every idle poll fails.
    request_timeout: float = 60.0
    timeout: float = 600.0
    # The queue's max_result_bytes (8 MiB by default; the largest result it
    # takes and platforms open): ASCII JSON output up to this size is a result
    # it takes. Form-encoded it also fits the queue's request limit (16 MiB),
    # though encoding can nearly double JSON. A larger output would be refused
    # after the job ran, and the job would wait out its lease.
    max_output_bytes: int = 8 * 1024 * 1024
    # The program's stdout and stderr, each cut to this many bytes of UTF-8,
    # go with the result for the queue to keep (0: send none).
    artifact_max_bytes: int = 64 * 1024
    prepare_command: tuple[str, ...] = ()
    prepare_timeout: float = 300.0
    root_path: str = ""
    path_vars: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    restrict_paths: tuple[str, ...] = ()
    wakeup_host: str = "0.0.0.0"
    wakeup_port: int = 20000
    wakeup_secret: str | None = None
    max_cpu_steal_percent: float = 30.0
    min_free_memory_mib: int = 0
    min_free_disk_mib: int = 0
    disk_path: str = "/"
    health_recheck_seconds: float = 30.0
    concurrency: int = 1
    pid_file: str | None = None
    log_file: str | None = None
    log_level: str = "WARNING"
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # A queue answering "nothing" faster than this is not long-polling; wait
    # the rest so a fast-answering queue does not make us spin.
    min_poll_interval: float = 1.0
    results_tries: int = 3
    results_retry_delay: float = 3.0
    # Seconds between asking the queue whether it still wants each running
    # job (cancelled or taken back: the program is killed); 0: never ask.
    job_check_interval: float = 2.0
    # Jobs with files (graderserver/files.py): where fetched files are kept by
    # hash (empty: a folder in the system's temporary folder), how much of
    # them (the least recently used go first), and where each such job's own
    # folder is made (empty: the system's temporary folder).
    files_cache_dir: str = ""
    files_cache_max_mib: int = 1024
    files_work_dir: str = ""

    @property
    def cache_dir(self) -> str:
        if self.files_cache_dir:
            return self.files_cache_dir
        return os.path.join(tempfile.gettempdir(), f"graderserver-files-{os.getuid()}")

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def endpoints(self) -> dict[str, str]:
        """The three grading-server endpoints of the PHP protocol under the queue's base URL."""
        base = self.queue_url.rstrip("/")
        return {name: f"{base}/{name}.php" for name in ("poll", "sendresults", "test")}

    @property
    def jobstate_url(self) -> str:
        """This project's queue only: not in the PHP protocol, so no .php name."""
        return f"{self.queue_url.rstrip('/')}/jobstate"


# TOML layout: section -> {toml key: Config field}.
_LAYOUT: dict[str, dict[str, str]] = {
    "queue": {
        "url": "queue_url",
        "server_token": "server_token",
        "cert": "cert",
        "key": "key",
        "ca": "ca",
        "request_timeout": "request_timeout",
    },
    "program": {
        "command": "command",
        "timeout": "timeout",
        "max_output_bytes": "max_output_bytes",
        "artifact_max_bytes": "artifact_max_bytes",
        "prepare_command": "prepare_command",
        "prepare_timeout": "prepare_timeout",
    },
    "paths": {
        "root": "root_path",
        "vars": "path_vars",
        "restrict": "restrict_paths",
    },
    "wakeup": {
        "host": "wakeup_host",
        "port": "wakeup_port",
        "secret": "wakeup_secret",
    },
    "health": {
        "max_cpu_steal_percent": "max_cpu_steal_percent",
        "min_free_memory_mib": "min_free_memory_mib",
        "min_free_disk_mib": "min_free_disk_mib",
        "disk_path": "disk_path",
        "recheck_seconds": "health_recheck_seconds",
    },
    "daemon": {
        "concurrency": "concurrency",
        "pid_file": "pid_file",
        "log_file": "log_file",
        "log_level": "log_level",
        "backoff_initial": "backoff_initial",
        "backoff_max": "backoff_max",
        "min_poll_interval": "min_poll_interval",
        "results_tries": "results_tries",
        "results_retry_delay": "results_retry_delay",
        "job_check_interval": "job_check_interval",
    },
    "files": {
        "cache_dir": "files_cache_dir",
        "cache_max_mib": "files_cache_max_mib",
        "work_dir": "files_work_dir",
    },
}

# Fields holding file paths: made absolute against the config file's folder,
# because a daemonized process runs from "/".
_PATH_FIELDS = (
    "cert",
    "key",
    "ca",
    "pid_file",
    "log_file",
    "disk_path",
    "files_cache_dir",
    "files_work_dir",
)


def default_config_path() -> Path:
    """`$GRADERSERVER_CONFIG`, else ./graderserver.toml."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raise ConfigError saying what is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return config_from_dict(raw, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(raw: Mapping[str, Any], base_dir: Path | None = None) -> Config:
    """Build a Config from parsed TOML (sections as in examples/graderserver.toml)."""
    base_dir = base_dir or Path.cwd()
    values: dict[str, Any] = {}
    for section, content in raw.items():
        if section not in _LAYOUT:
            raise ConfigError(f"unknown section [{section}] (known: {', '.join(_LAYOUT)})")
        if not isinstance(content, Mapping):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in content.items():
            if key not in _LAYOUT[section]:
                known = ", ".join(_LAYOUT[section])
                raise ConfigError(f"unknown key {section}.{key} (known: {known})")
            values[_LAYOUT[section][key]] = value
    if "queue_url" not in values:
        raise ConfigError("queue.url is required")
    if "command" not in values:
        raise ConfigError("program.command is required")

    for name in _PATH_FIELDS:
        if isinstance(values.get(name), str) and values[name]:
            values[name] = str(base_dir / values[name])
    values["command"] = _resolve_command(values["command"], base_dir, "program.command")
    for name in ("prepare_command", "restrict_paths"):
        if name in values:
            values[name] = _str_tuple(values[name], _key_of(name))
    if "path_vars" in values:
        values["path_vars"] = _str_mapping(values["path_vars"], "paths.vars")
    return Config(**values)


def _resolve_command(value: Any, base_dir: Path, key: str) -> tuple[str, ...]:
    argv = _str_tuple(value, key)
    # "./grader.py" or "bin/grader" mean relative to the config file; a bare
    # name ("cat") is looked up in PATH as usual.
    if argv and "/" in argv[0] and not os.path.isabs(argv[0]):
        argv = (str(base_dir / argv[0]), *argv[1:])
    return argv


def _key_of(field_name: str) -> str:
    for section, keys in _LAYOUT.items():
        for key, name in keys.items():
            if name == field_name:
                return f"{section}.{key}"
    return field_name


def _str_tuple(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(value)


def _str_mapping(value: Any, key: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{key} must be a table of strings")
    return MappingProxyType(dict(value))


def _validate(cfg: Config) -> None:
    """Check every field; each message names the TOML key an operator must fix.

    The first failing check is reported, in this order.
    """
    _check_strings(cfg)
    _check_queue_access(cfg)
    _need(len(cfg.command) > 0 and cfg.command[0] != "", "command", "must not be empty")
    _check_numbers(cfg)
    _need(cfg.log_level.upper() in LOG_LEVELS, "log_level", f"must be one of {LOG_LEVELS}")
    _check_prepare_placeholders(cfg.prepare_command)


def _need(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{_key_of(name)} {what}")


def _check_strings(cfg: Config) -> None:
    for name in (
        "queue_url",
        "root_path",
        "wakeup_host",
        "disk_path",
        "log_level",
        "files_cache_dir",
        "files_work_dir",
    ):
        _need(isinstance(getattr(cfg, name), str), name, "must be a string")
    for name in ("server_token", "cert", "key", "ca", "wakeup_secret", "pid_file", "log_file"):
        value = getattr(cfg, name)
        _need(value is None or (isinstance(value, str) and value != ""), name, "must be a string")


def _check_queue_access(cfg: Config) -> None:
    _need(
        cfg.queue_url.startswith(("http://", "https://")),
        "queue_url",
        "must start with http:// or https://",
    )
    _need(
        cfg.server_token is not None or cfg.cert is not None,
        "server_token",
        "or queue.cert must be set: the queue accepts a token or a client certificate",
    )
    _need(cfg.key is None or cfg.cert is not None, "key", "needs queue.cert too")


def _check_numbers(cfg: Config) -> None:
    _need(_is_int(cfg.concurrency) and cfg.concurrency >= 1, "concurrency", "must be >= 1")
    _need(
        _is_int(cfg.max_output_bytes) and cfg.max_output_bytes >= 1,
        "max_output_bytes",
        "must be a positive integer",
    )
    _need(
        _is_int(cfg.wakeup_port) and 0 <= cfg.wakeup_port <= 65535,
        "wakeup_port",
        "must be a port number (0-65535)",
    )
    _need(_is_int(cfg.results_tries) and cfg.results_tries >= 1, "results_tries", "must be >= 1")
    for name in (
        "min_free_memory_mib",
        "min_free_disk_mib",
        "artifact_max_bytes",
        "files_cache_max_mib",
    ):
        value = getattr(cfg, name)
        _need(_is_int(value) and value >= 0, name, "must be an integer >= 0")
    for name in (
        "timeout",
        "prepare_timeout",
        "request_timeout",
        "backoff_initial",
        "health_recheck_seconds",
    ):
        value = getattr(cfg, name)
        _need(_is_number(value) and value > 0, name, "must be a number > 0")
    for name in (
        "max_cpu_steal_percent",
        "min_poll_interval",
        "results_retry_delay",
        "job_check_interval",
    ):
        value = getattr(cfg, name)
        _need(_is_number(value) and value >= 0, name, "must be a number >= 0")
    _need(
        _is_number(cfg.backoff_max) and cfg.backoff_max >= cfg.backoff_initial,
        "backoff_max",
        "must be a number >= daemon.backoff_initial",
    )


def _check_prepare_placeholders(prepare_command: tuple[str, ...]) -> None:
    dummy = dict.fromkeys(PREPARE_PLACEHOLDERS, "x")
    for arg in prepare_command:
        try:
            arg.format(**dummy)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"program.prepare_command: bad placeholder in {arg!r} ({exc}); "
                f"known placeholders: {', '.join('{' + p + '}' for p in PREPARE_PLACEHOLDERS)}"
            ) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    # TOML `true` is a Python bool, which is an int: refuse it explicitly.
    return isinstance(value, int) and not isinstance(value, bool)
