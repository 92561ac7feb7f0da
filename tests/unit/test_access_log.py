"""The one redaction rule of the gunicorn logger (graderqueue/access_log.py)."""

from __future__ import annotations

import pytest

from graderqueue.access_log import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '1.2.3.4 "GET /poll.php?server_token=S&nbtasks=0 HTTP/1.1" 200',
            '1.2.3.4 "GET /poll.php?server_token=[redacted]&nbtasks=0 HTTP/1.1" 200',
        ),
        ("sToken=a;jobid=3&rPassword=b", "sToken=[redacted];jobid=3&rPassword=[redacted]"),
        ("/p?server%5Ftoken=S", "/p?server%5Ftoken=[redacted]"),
        ("/p?SERVER_TOKEN=S", "/p?SERVER_TOKEN=[redacted]"),
        ("/p?debugPassword=x#y", "/p?debugPassword=[redacted]"),
        ("/p?jobid=1&nbtasks=2", "/p?jobid=1&nbtasks=2"),
        ("/healthz", "/healthz"),
    ],
)
def test_secret_named_values_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
