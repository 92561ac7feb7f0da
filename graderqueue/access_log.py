"""A gunicorn logger that keeps secrets out of the access and error logs.

The protocol sends tokens and passwords in POST bodies, which gunicorn never
logs; but a client (or a probe) may put them in a GET query string, e.g.
``/poll.php?server_token=...``, and gunicorn logs the request target as it
came: in the access log (``%(r)s``, ``%(q)s``, ``%({raw_uri}e)s``) and in the
error log ("Invalid request from ip=...: Invalid HTTP request line: ...",
"Error handling request /poll.php?..."). Logs are kept long and read by more
people than the database.

So every line either log writes goes through one rule, :func:`redact`: the
value of each ``name=value`` pair whose name speaks of a secret is replaced,
whatever ``access_log_format`` says. Credential headers are blanked too,
should a log format name them.

Its lines have the app's shape too (:mod:`graderqueue.logs`): time, level,
pid and request id, as text or JSON lines after the ``log_format`` setting;
an access line carries the id the app put in its ``X-Request-ID`` answer.
A ``--log-config`` of the operator's own is left as it is.

Use it from the gunicorn config (examples/gunicorn.conf.py)::

    logger_class = "graderqueue.access_log.RedactingLogger"
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

from graderqueue import logs

REDACTED = "[redacted]"
# A parameter is secret when its (decoded, lower-cased) name contains one of
# these: server_token, sToken, token, rPassword, debugPassword, secret_key...
SECRET_NAME_PARTS = ("token", "password", "passwd", "secret")
# Headers that carry credentials.
SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")
# name=value in a query string, a request line or a repr of one. The value
# runs to the next separator or blank (a quote in it is redacted too).
_PAIR = re.compile(r"(?P<name>[^=&;?\s'\"]+)=(?P<value>[^&;\s]*)")


def _is_secret_name(name: str) -> bool:
    # Decoded first: werkzeug reads server%5Ftoken as server_token.
    lowered = unquote_plus(name).lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def _redact_pair(match: re.Match[str]) -> str:
    if _is_secret_name(match["name"]):
        return f"{match['name']}={REDACTED}"
    return match[0]


def redact(text: str) -> str:
    """``text`` with the value of every secret-named ``name=value`` pair replaced."""
    if "=" not in text:
        return text
    return _PAIR.sub(_redact_pair, text)


class _RedactFilter(logging.Filter):
    """Rewrites each record into its redacted final text (and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = _RedactFilter()


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger; every access and error line goes through :func:`redact`."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # addFilter ignores a filter already there: setup runs again on reload.
        self.error_log.addFilter(_FILTER)
        self.access_log.addFilter(_FILTER)
        if cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json:
            return  # the operator's own formats
        formatter = logs.make_formatter(logs.format_from_settings())
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                # gunicorn's syslog handler keeps its own prefix and format.
                if getattr(handler, "_gunicorn", False) and not isinstance(
                    handler, logging.handlers.SysLogHandler
                ):
                    handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        # The id the client was given; the request's own context may be over.
        given = next(
            (v for k, v in resp.headers if k.lower() == logs.REQUEST_ID_HEADER.lower()), None
        )
        with logs.request_id(given or logs.current_request_id()):
            super().access(resp, req, environ, request_time)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for header in SECRET_HEADERS:
            names = ("{" + header + "}i", "{http_" + header.replace("-", "_") + "}e")
            for key in names:
                if key in atoms:
                    atoms[key] = REDACTED
        return atoms
