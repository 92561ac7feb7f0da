"""A platform's side of the protocol: send jobs, read them back, open result tokens.

Example::

    from graderqueue.client import PlatformClient

    client = PlatformClient(
        queue_url="https://queue.example.org",
        platform_name="myplatform",
        platform_private_key=open("platform.pem").read(),
        queue_public_key=open("queue.pub.pem").read(),
        queue_key_name="graderqueue",
    )
    jobid = client.sendjob({"taskPath": "$ROOT_PATH/task"}, tags="c", jobusertaskid="sub-42")
    row = client.getjob(jobid)

    # In the platform's return-URL handler, with the form field sToken:
    result = client.open_result(request.form["sToken"])
    # -> {"sTaskName": ..., "sResultData": {...}, "date": "dd-mm-YYYY"}
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
from jwcrypto import jwk

from graderqueue.errors import QueueError
from graderqueue.protocol import tokens


class ClientError(QueueError):
    """The queue refused a request; ``errorcode`` and ``errormsg`` say why."""

    def __init__(self, errorcode: int, errormsg: str) -> None:
        super().__init__(f"errorcode {errorcode}: {errormsg}", errorcode=errorcode)
        self.errormsg = errormsg


def make_request_token(
    request: dict[str, Any],
    *,
    platform_name: str,
    platform_private_key: jwk.JWK,
    queue_public_key: jwk.JWK,
    queue_key_name: str,
) -> str:
    """The ``sToken`` of a request: signed by the platform, encrypted to the queue."""
    return tokens.seal(
        request, platform_private_key, platform_name, queue_public_key, queue_key_name
    )


def open_result_token(
    token: str,
    *,
    platform_private_key: jwk.JWK,
    queue_public_key: jwk.JWK,
    max_result_bytes: int = tokens.DEFAULT_MAX_RESULT_BYTES,
) -> dict[str, Any]:
    """Decrypt a result token with the platform's key and verify the queue's signature.

    Opens the token of any result up to ``max_result_bytes`` (the queue's
    ``max_result_bytes``, 8 MiB by default), compressed or not.
    """
    limit = tokens.result_token_max_bytes(max_result_bytes)
    return tokens.unseal(token, platform_private_key, [queue_public_key], limit)


class PlatformClient:
    def __init__(
        self,
        queue_url: str,
        platform_name: str,
        platform_private_key: str,
        queue_public_key: str,
        queue_key_name: str = "graderqueue",
        *,
        fresh: bool = False,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_result_bytes: int = tokens.DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.queue_url = queue_url.rstrip("/")
        self.platform_name = platform_name
        self.private_key = jwk.JWK.from_pem(platform_private_key.encode())
        self.queue_key = jwk.JWK.from_pem(queue_public_key.encode())
        self.queue_key_name = queue_key_name
        self.fresh = fresh  # add iat/exp/jti, for platforms that require fresh tokens
        self.http = session or requests.Session()
        self.timeout = timeout
        self.max_result_bytes = max_result_bytes  # the queue's max_result_bytes

    def token(self, request: dict[str, Any]) -> str:
        if self.fresh:
            now = int(time.time())
            request = {**request, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
        return make_request_token(
            request,
            platform_name=self.platform_name,
            platform_private_key=self.private_key,
            queue_public_key=self.queue_key,
            queue_key_name=self.queue_key_name,
        )

    def call(self, request: dict[str, Any], files: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one API request; returns the answer, raises :class:`ClientError` if refused."""
        answer = self.raw_call(request, files)
        if answer.get("errorcode") != 0:
            raise ClientError(answer.get("errorcode", -1), answer.get("errormsg", ""))
        return answer

    def raw_call(self, request: dict[str, Any], files: dict[str, Any] | None = None) -> dict:
        form = {"sToken": self.token(request), "sPlatform": self.platform_name}
        response = self.http.post(
            f"{self.queue_url}/api.php", data=form, files=files, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def sendjob(self, jobdata: dict[str, Any] | str, **fields: Any) -> int:
        """Queue a job and return its id.

        ``fields``: jobname, priority, tags, jobusertaskid, taskrevision, timeout.
        """
        if not isinstance(jobdata, str):
            jobdata = json.dumps(jobdata)
        return int(self.call({"request": "sendjob", "jobdata": jobdata, **fields})["jobid"])

    def sendsolution(self, files: dict[str, Any] | None = None, **fields: Any) -> int:
        return int(self.call({"request": "sendsolution", **fields}, files=files)["jobid"])

    def getjob(self, jobid: int) -> dict[str, Any]:
        """The answer to getjob: ``origin`` ("queue" or "done") and ``data``."""
        return self.call({"request": "getjob", "jobid": str(jobid)})

    def test(self) -> str:
        return self.call({"request": "test"})["errormsg"]

    def open_result(self, token: str) -> dict[str, Any]:
        return open_result_token(
            token,
            platform_private_key=self.private_key,
            queue_public_key=self.queue_key,
            max_result_bytes=self.max_result_bytes,
        )


# The JSON API's client (graderqueue/apiclient.py), importable from here too.
from graderqueue.apiclient import ApiClient, ApiError, OperatorToken, PlatformSigner  # noqa: E402

__all__ = [
    "ApiClient",
    "ApiError",
    "ClientError",
    "OperatorToken",
    "PlatformClient",
    "PlatformSigner",
    "make_request_token",
    "open_result_token",
]
