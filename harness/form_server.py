"""A grading server speaking the original graderserver's form protocol.

Written from PROTOCOL.md with plain ``requests``: ``server_token`` in every
form, ``/poll.php`` with ``nbtasks``, ``/sendresults.php`` with ``jobid`` and
``resultdata`` as a JSON string, ``/test.php``. Nothing of the queue's own
code is used, so what passes here is what an unchanged original server gets.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from harness.foreign_platform import protocol_answer

_OMIT = object()


class FormServer:
    """One grading server authenticated by a server token."""

    def __init__(
        self,
        url: str,
        server_token: str | None,
        session: requests.Session | None = None,
        suffix: str = ".php",
    ) -> None:
        self.url = url.rstrip("/")
        self.server_token = server_token
        self.http = session or requests.Session()
        self.suffix = suffix

    def post(self, endpoint: str, **fields: Any) -> dict[str, Any]:
        """POST *fields* (plus ``server_token``) to ``/<endpoint>.php``."""
        data = {k: v for k, v in fields.items() if v is not _OMIT}
        if self.server_token is not None:
            data.setdefault("server_token", self.server_token)
        response = self.http.post(f"{self.url}/{endpoint}{self.suffix}", data=data, timeout=60)
        return protocol_answer(response)

    def test(self) -> dict[str, Any]:
        return self.post("test")

    def poll(self, nbtasks: Any = _OMIT) -> dict[str, Any]:
        return self.post("poll", nbtasks=nbtasks)

    def sendresults(self, jobid: Any = _OMIT, resultdata: Any = _OMIT) -> dict[str, Any]:
        """*resultdata* as a dict is JSON-encoded; a str is sent as is."""
        if not isinstance(resultdata, str) and resultdata is not _OMIT:
            resultdata = json.dumps(resultdata)
        return self.post("sendresults", jobid=jobid, resultdata=resultdata)

    def claim(self, nbtasks: Any = _OMIT) -> dict[str, Any]:
        """A poll that must hand out a job."""
        answer = self.poll(nbtasks)
        assert answer["errorcode"] == 0, answer
        return answer

    def finish(self, jobid: int, jobdata: Any = None, errorcode: int = 0) -> dict[str, Any]:
        """Report a result, which must be saved."""
        answer = self.sendresults(
            str(jobid), {"errorcode": errorcode, "errormsg": "ok", "jobdata": jobdata or {}}
        )
        assert answer == {"errorcode": 0, "errormsg": "Saved resultdata."}, answer
        return answer
