"""The PHP graderqueue's ``config.inc.php`` as this queue's TOML settings and key files.

:func:`plan_import` turns the variables read by :mod:`php_config` into a plan
(settings, the key pair, notes); nothing is written until
:func:`install_key` and :func:`write_settings`. Secrets (the database
password, the private key, the debug password, AWS credentials) go only into
files made 0600, never into notes or errors: those are printed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from graderqueue.errors import ConfigError
from graderqueue.legacy.php_config import PhpValue
from graderqueue.protocol.keys import KEY_NAME_RE
from graderqueue.store.private_files import private_dir, write_private

#: Legacy variables with no setting here, and what to do instead.
NO_EQUIVALENT: dict[str, str] = {
    "interface_url": "the admin pages are served by the queue itself (docs/ADMIN.md)",
    "accept_interface_tokens": "interface tokens were removed (docs/LIFECYCLE.md)",
    "res_per_page": "the admin pages choose their own page sizes",
    "defaultbutton": "no one-click test jobs; the admin page *Send a job* (send_job_form)",
    "buttons": "no one-click test jobs; the admin page *Send a job* (send_job_form)",
    "stat_intervals": "statistics come from /metrics and the admin pages (docs/METRICS.md)",
    "aws_credentials": "use `graderqueue autoscale --hook` with examples/autoscale/aws-asg.py,"
    " which takes its credentials from the AWS command line's own configuration",
    "aws_autoscaling_group": "use `graderqueue autoscale --hook"
    ' "examples/autoscale/aws-asg.py --group TYPE=GROUP"` (docs/AUTOSCALING.md)',
}
#: Read here but not settings: the database and the key pair.
_CONSUMED = {"db_hostname", "db_user", "db_password", "db_database", "private_key", "public_key"}
# legacy name -> (setting, kind); kinds are checked, never coerced by guess.
_DIRECT: dict[str, tuple[str, str]] = {
    "key_name": ("key_name", "str"),
    "max_fails": ("max_fails", "int"),
    "wakeup_strategy": ("wakeup_strategy", "str"),
    "admin_email": ("admin_emails", "strings"),
    "keep_old_days": ("keep_old_days", "int"),
    "warn_seconds": ("warn_seconds", "int"),
    "warn_nb": ("warn_nb", "int"),
    "defaultexts": ("lang_extensions", "table"),
    "autoscaling_ratio_burst": ("autoscale_burst_ratio", "float"),
    "autoscaling_ratio_long": ("autoscale_long_ratio", "float"),
    "debug_password": ("debug_password", "str"),
}
SECRET_SETTINGS = ("debug_password",)


class LegacyConfigError(ConfigError):
    """The legacy configuration cannot be carried over; each line says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class KeyPair:
    name: str
    private_pem: bytes  # PKCS#8, as `graderqueue init` writes keys
    public_pem: bytes


@dataclass
class ImportPlan:
    settings: dict[str, Any]
    key: KeyPair
    old_database_url: str = ""  # written commented out: it is the PHP queue's database
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def legacy_names(values: Mapping[str, PhpValue]) -> dict[str, PhpValue]:
    """``$CFG_max_fails`` -> ``max_fails``; other variables are not configuration."""
    return {k[4:]: v for k, v in values.items() if k.startswith("CFG_")}


def plan_import(values: Mapping[str, PhpValue], instance: Path) -> ImportPlan:
    """What to write for these legacy variables; raises :class:`LegacyConfigError`."""
    legacy = legacy_names(values)
    problems: list[str] = []
    settings: dict[str, Any] = {"instance_path": str(instance)}
    for name, (setting, kind) in _DIRECT.items():
        if name in legacy and legacy[name] is not None:
            converted = _convert(name, kind, legacy[name], problems)
            if converted is not None:
                settings[setting] = converted
    if legacy.get("autoscaling_minutes_downscale") is not None:
        downscale = legacy["autoscaling_minutes_downscale"]
        minutes = _convert("autoscaling_minutes_downscale", "float", downscale, problems)
        if minutes is not None:
            settings["autoscale_scale_down_delay_sec"] = round(minutes * 60)
    _check_values(settings, problems)
    key = _key_pair(legacy, settings.get("key_name"), problems)
    if problems or key is None:
        raise LegacyConfigError(problems)
    if settings.get("debug_password") == "":
        del settings["debug_password"]  # empty is off, the default
    plan = ImportPlan(settings=settings, key=key, old_database_url=_database_url(legacy))
    _explain(legacy, plan)
    plan.notes += [f"${k}: not a $CFG_ variable, left out." for k in values if k[:4] != "CFG_"]
    return plan


_WANTED = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "strings": "a string or an array of strings",
    "table": "an array of strings",
}


def _convert(name: str, kind: str, value: PhpValue, problems: list[str]) -> Any:
    """*value* as the setting's type, or None (and a problem) when it is another type."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok: Any = None
    plain = (kind == "str" and isinstance(value, str)) or (kind == "int" and isinstance(value, int))
    if plain and (kind == "str" or number):
        ok = value
    elif kind == "float" and number and math.isfinite(value):  # type: ignore[arg-type]
        ok = float(value)  # type: ignore[arg-type]
    elif kind == "strings" and isinstance(value, str):
        ok = [value] if value else []
    elif kind == "strings" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        ok = list(value)
    elif kind == "table" and isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        table = {str(k): v for k, v in items}
        ok = table if all(isinstance(v, str) for v in table.values()) else None
    if ok is None:
        problems.append(f"$CFG_{name}: not {_WANTED[kind]}")
    return ok


def _check_values(settings: dict[str, Any], problems: list[str]) -> None:
    if settings.get("wakeup_strategy", "first") not in ("first", "last"):
        problems.append("$CFG_wakeup_strategy: must be 'first' or 'last'")
    if not KEY_NAME_RE.match(settings.get("key_name", "graderqueue")):
        problems.append("$CFG_key_name: use letters, digits, '.', '_' or '-' (64 at most)")
    if settings.get("max_fails", 1) < 1:
        problems.append("$CFG_max_fails: must be at least 1")


def _key_pair(legacy: dict[str, PhpValue], name: Any, problems: list[str]) -> KeyPair | None:
    """The key pair, checked: RSA, unencrypted, and the public half matches the private."""
    private_text, public_text = legacy.get("private_key"), legacy.get("public_key")
    if not isinstance(private_text, str) or not private_text.strip():
        problems.append("$CFG_private_key: missing: the queue's key pair is required")
        return None
    try:
        key = serialization.load_pem_private_key(private_text.strip().encode(), password=None)
    except (ValueError, TypeError):
        # Never the exception's text: it could quote the key.
        problems.append("$CFG_private_key: not an unencrypted PEM private key")
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        problems.append("$CFG_private_key: not an RSA key")
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public = key.public_key().public_bytes(serialization.Encoding.PEM, spki)
    if isinstance(public_text, str) and public_text.strip():
        try:
            given = serialization.load_pem_public_key(public_text.strip().encode())
        except (ValueError, TypeError):
            problems.append("$CFG_public_key: not a PEM public key")
            return None
        if given.public_bytes(serialization.Encoding.PEM, spki) != public:
            problems.append("$CFG_public_key: does not match $CFG_private_key")
            return None
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(name if isinstance(name, str) else "graderqueue", private, public)


def _database_url(legacy: dict[str, PhpValue]) -> str:
    parts = [legacy.get(f"db_{n}") for n in ("hostname", "user", "password", "database")]
    if not all(isinstance(p, str) for p in parts) or not parts[0] or not parts[3]:
        return ""
    host, user, password, database = (str(p) for p in parts)
    credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"mysql+pymysql://{credentials}@{host}/{quote(database, safe='')}?charset=utf8mb4"


def _explain(legacy: dict[str, PhpValue], plan: ImportPlan) -> None:
    """Notes on what has no equivalent, and loud warnings; names only, never values."""
    for name in sorted(legacy):
        if name in NO_EQUIVALENT:
            plan.notes.append(f"$CFG_{name}: no equivalent: {NO_EQUIVALENT[name]}.")
        elif name not in {*_DIRECT, *_CONSUMED, "autoscaling_minutes_downscale"}:
            plan.notes.append(f"$CFG_{name}: not known, left out.")
    if legacy.get("accept_interface_tokens") is True:
        plan.warnings.append(
            "$CFG_accept_interface_tokens was true: requests made with interface tokens "
            "are refused now (docs/LIFECYCLE.md)."
        )
    if plan.settings.get("debug_password"):
        plan.warnings.append(
            "WARNING: debug_password carried over. Anyone who knows it can send requests "
            "without any key, as platform 1. Remove it from the settings file as soon as "
            "no platform uses it (docs/SECURITY.md)."
        )
    if not plan.old_database_url:
        plan.notes.append("$CFG_db_*: incomplete, no database URL written.")


def render_toml(plan: ImportPlan, source: str, redact: bool = False) -> str:
    """The settings file's text; *redact* hides the secrets (for printing)."""
    lines = [f"# Made by `graderqueue import-legacy-config` from {source}."]
    if plan.old_database_url:
        url = plan.old_database_url
        if redact and "@" in url:
            url = _hide_password(url)
        lines += [
            "# The PHP queue's database, for `graderqueue import-legacy --from`. It is the",
            "# OLD database: give this queue a new, empty database of its own here.",
            f"# database_url = {_toml_string(url)}",
        ]
    for key, value in plan.settings.items():
        shown = "<hidden>" if redact and key in SECRET_SETTINGS else value
        lines.append(f"{key} = {_toml_value(shown)}")
    return "\n".join(lines) + "\n"


def _hide_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:<hidden>@{host}" if ":" in credentials else url


def _toml_string(text: str) -> str:
    # JSON's string escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_string(v) for v in value) + "]"
    pairs = (f"{_toml_string(k)} = {_toml_string(v)}" for k, v in value.items())
    return "{ " + ", ".join(pairs) + " }" if value else "{}"


def install_key(key_dir: Path, key: KeyPair) -> str:
    """Write the key pair as ``<name>.pem`` and ``<name>.pub.pem`` (0600), unless already there.

    Returns "installed" or "kept" (the same key was there); refuses a different key.
    """
    private_path = key_dir / f"{key.name}.pem"
    public_path = key_dir / f"{key.name}.pub.pem"
    check_key(key_dir, key)
    if private_path.exists():
        return "kept"
    private_dir(key_dir)
    write_private(private_path, key.private_pem)
    public_path.unlink(missing_ok=True)
    write_private(public_path, key.public_pem)
    return "installed"


def check_key(key_dir: Path, key: KeyPair) -> None:
    """Refuse, before anything is written, a different key already installed under the name."""
    path = key_dir / f"{key.name}.pem"
    if path.exists():
        existing = serialization.load_pem_private_key(path.read_bytes(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if existing.public_key().public_bytes(serialization.Encoding.PEM, spki) != key.public_pem:
            raise LegacyConfigError(
                [f"{path} holds another key: refusing to replace it (move it away first)."]
            )


def write_settings(path: Path, text: str, force: bool) -> None:
    """Write the settings file 0600 (it may hold passwords); an existing one only with *force*."""
    if path.exists() and not force:
        raise LegacyConfigError([f"{path} exists: give --force to replace it."])
    private_dir(path.parent)
    if force:
        path.unlink(missing_ok=True)
    write_private(path, text.encode())
