"""One post of a result token to a platform's return URL, and what is kept of its answer."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import requests

# What is kept of a failed post: a platform's answer may be megabytes of
# HTML, control characters, or (behind a redirect) an internal service's
# secrets. Every stored error is cut to ERROR_MAX printable characters, and
# what the platform said takes at most EXCERPT_CHARS of them.
ERROR_MAX = 300
EXCERPT_CHARS = 200
# The most of an answer that is read: {"bSuccess": true} is 18 bytes, and a
# platform's error page need not be downloaded whole to be refused.
ANSWER_READ_MAX = 64 * 1024


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` made safe to store and show: printable characters only, at most ``limit``.

    Line breaks and tabs become spaces; other control and format characters
    (escape sequences, bidi overrides, NULs) become U+FFFD. A cut is marked
    with "...".
    """
    head = text[: limit * 4]  # enough to fill ``limit`` after collapsing spaces
    cleaned = "".join(
        ch if ch.isprintable() else (" " if ch.isspace() else "\ufffd") for ch in head
    )
    cleaned = re.sub(r" {2,}", " ", cleaned).strip()
    if len(cleaned) > limit or len(head) < len(text):
        return cleaned[: max(limit - 3, 0)].rstrip() + "..."
    return cleaned


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""
    http_status: int | None = None
    duration_ms: int = 0

    def __post_init__(self) -> None:
        # The one place that bounds what is stored (last_error, attempts) and
        # shown on the admin job page, whatever made the error.
        object.__setattr__(self, "error", excerpt(self.error, ERROR_MAX))


def post_result(http: requests.Session, url: str, token: str, timeout: float) -> Outcome:
    """POST ``sToken``; success only when the answer is JSON with ``bSuccess`` true.

    The HTTP status is not looked at for success: a platform that says
    ``bSuccess`` true has stored the result, and sending it again would
    grade it twice. Redirects are not followed: requests would post the
    token again to wherever the answer points (an internal address, say) on
    307/308; a redirect is a failed attempt, retried with the usual backoff.
    Only the first ``ANSWER_READ_MAX`` bytes of the answer are read.
    """
    started = time.monotonic()

    def outcome(ok: bool, error: str = "", status: int | None = None) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(ok, error, status, elapsed)

    try:
        with http.post(
            url,
            data={"sToken": token},
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                target = excerpt(response.headers.get("Location", ""), 100) or "nowhere"
                return outcome(
                    False,
                    f"HTTP {status}: redirect to {target} refused "
                    "(the return URL must answer itself)",
                    status,
                )
            # The connect and read timeouts of one post, as the worker's lease allows.
            body = _read_answer(response, started + 2 * timeout)
    except requests.RequestException as exc:
        return outcome(False, f"{type(exc).__name__}: {exc}")
    text = body[:ANSWER_READ_MAX].decode("utf-8", errors="replace")
    if len(body) > ANSWER_READ_MAX:
        return outcome(
            False,
            f"HTTP {status}: the answer is larger than {ANSWER_READ_MAX} bytes: {excerpt(text)}",
            status,
        )
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return outcome(False, f"HTTP {status}: the answer is not JSON: {excerpt(text)}", status)
    if isinstance(answer, dict) and answer.get("bSuccess") is True:
        return outcome(True, "", status)
    reason = answer.get("sError") if isinstance(answer, dict) else None
    said = reason if isinstance(reason, str) and reason else text
    return outcome(False, f"HTTP {status}: platform refused: {excerpt(said)}", status)


def _read_answer(response: requests.Response, deadline: float) -> bytes:
    """The answer's body, at most one byte more than ``ANSWER_READ_MAX`` (to tell it was cut).

    The read timeout bounds each read, not the whole: a platform dribbling a
    byte per read could hold the post past the row's lease, and another
    worker would then post the result again. So the body must be in by
    ``deadline`` (time.monotonic()).
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > ANSWER_READ_MAX:
            break
        if time.monotonic() > deadline:
            raise requests.exceptions.ReadTimeout("the answer was still arriving at the deadline")
    return b"".join(chunks)[: ANSWER_READ_MAX + 1]
