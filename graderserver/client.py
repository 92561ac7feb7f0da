"""Talk to the queue's grading-server endpoints: poll, sendresults, test, jobstate, jobfile.

Works against this project's queue and the original PHP one alike: form-encoded
POSTs, JSON answers with `errorcode`. Anything that is not such an answer
(connection refused, HTTP 502 from a proxy, an HTML error page) becomes
`QueueUnavailable`, which the daemon retries with backoff. Only jobstate is
this project's own: where a queue has none, its 404 or page ends the checks
of that job (`JobStateUnknown`), never the job.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from graderserver import __version__
from graderserver.config import Config
from graderserver.errors import (
    AuthenticationFailed,
    JobStateUnknown,
    QueueRejected,
    QueueUnavailable,
    RequestTooLarge,
)
from graderserver.files import FetchFailed, JobFile, files_from_answer

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
# A job-state check must not stall the checks of the other running jobs for
# as long as a long-poll may take.
JOBSTATE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Job:
    """A job handed out by poll."""

    jobid: int
    jobname: str
    taskrevision: str
    jobdata: dict[str, Any]
    # This project's queue only (PROTOCOL.md [new]): files to fetch, and the
    # file to send back as the `output` artifact, cut to max_kb.
    files: tuple[JobFile, ...] = ()
    output_file: str | None = None
    max_kb: int | None = None

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> Job:
        """Read a successful poll answer; QueueUnavailable if it is malformed."""
        try:
            jobid = int(answer["jobid"])
            jobdata = answer["jobdata"]
        except (KeyError, TypeError, ValueError) as exc:
            raise QueueUnavailable(f"poll answer without a valid job: {exc!r}") from exc
        if isinstance(jobdata, str):
            # Tolerate a queue that sends the job JSON as a string.
            try:
                jobdata = json.loads(jobdata)
            except ValueError as exc:
                raise QueueUnavailable(f"job #{jobid}: jobdata is not JSON") from exc
        if not isinstance(jobdata, dict):
            raise QueueUnavailable(f"job #{jobid}: jobdata is not a JSON object")
        try:
            files = files_from_answer(answer.get("files"))
            output_file = answer.get("output_file")
            max_kb = answer.get("max_kb")
            if output_file is not None and not isinstance(output_file, str):
                raise ValueError("output_file is not a string")
            max_kb = None if max_kb is None else int(max_kb)
        except (TypeError, ValueError) as exc:
            raise QueueUnavailable(f"job #{jobid}: {exc}") from exc
        return cls(
            jobid=jobid,
            jobname=str(answer.get("jobname") or ""),
            taskrevision=str(answer.get("taskrevision") or ""),
            jobdata=jobdata,
            files=files,
            output_file=output_file or None,
            max_kb=max_kb,
        )


class QueueClient:
    """One client per daemon; safe to use from several threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.urls = {
            **config.endpoints,
            "jobstate": config.jobstate_url,
            "jobfile": f"{config.queue_url.rstrip('/')}/jobfile",
        }
        # requests.Session is not documented as thread-safe: one per thread.
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"graderserver/{__version__}"
            if self.config.cert:
                session.cert = (
                    (self.config.cert, self.config.key) if self.config.key else self.config.cert
                )
            self._local.session = session
        return session

    def _send(
        self, endpoint: str, fields: Mapping[str, Any], read_timeout: float
    ) -> requests.Response:
        """POST the form with our credentials; QueueUnavailable when no answer came."""
        data = dict(fields)
        if self.config.server_token:
            data["server_token"] = self.config.server_token
        try:
            return self._session().post(
                self.urls[endpoint],
                data=data,
                timeout=(CONNECT_TIMEOUT, read_timeout),
                # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE
                # override a session's verify, but not an explicit argument.
                verify=self.config.ca or True,
            )
        except requests.RequestException as exc:
            raise QueueUnavailable(f"{endpoint}: {exc.__class__.__name__}: {exc}") from exc

    def _post(self, endpoint: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        response = self._send(endpoint, fields, self.config.request_timeout)
        if response.status_code == 413:
            raise RequestTooLarge(f"{endpoint}: HTTP 413")
        if response.status_code != 200:
            raise QueueUnavailable(f"{endpoint}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise QueueUnavailable(
                f"{endpoint}: answer is not JSON: {response.text[:200]!r}"
            ) from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("errorcode"), int):
            raise QueueUnavailable(f"{endpoint}: answer has no errorcode: {answer!r:.200}")
        log.debug("%s answered %s", endpoint, answer)
        return answer

    @staticmethod
    def _raise_for(endpoint: str, answer: dict[str, Any]) -> None:
        code, message = answer["errorcode"], answer.get("errormsg", "")
        if code == 3:
            raise AuthenticationFailed(f"{endpoint}: authentication failed: {message}")
        if code not in (0, 1):
            raise QueueRejected(f"{endpoint}: errorcode {code}: {message}")

    def poll(self, nbtasks: int) -> Job | None:
        """Claim a job; None when the queue has none ("No job available." or busy)."""
        answer = self._post("poll", {"nbtasks": nbtasks})
        self._raise_for("poll", answer)
        if answer["errorcode"] == 1:
            log.debug("No job: %s", answer.get("errormsg", ""))
            return None
        return Job.from_answer(answer)

    def send_results(
        self,
        jobid: int,
        resultdata: dict[str, Any] | None,
        artifacts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Post a result; returns the queue's answer (errorcode 0, 1 or 2).

        errorcode 2 is a normal answer here: the queue says it so for results
        reporting a temporary error ("Resultdata received invalid."), and for
        a job no longer ours. `resultdata=None` omits the field (test mode 5).
        `artifacts` are extra fields (`stdout`, `stderr`, ...) that this
        project's queue keeps and the original ignores.
        """
        fields: dict[str, Any] = {**(artifacts or {}), "jobid": jobid}
        if resultdata is not None:
            fields["resultdata"] = json.dumps(resultdata)
        answer = self._post("sendresults", fields)
        if answer["errorcode"] == 3:
            self._raise_for("sendresults", answer)
        return answer

    def job_holds(self, jobid: int) -> bool:
        """Ask /jobstate whether the queue still counts on us for this job.

        QueueUnavailable when no answer came, or a 5xx or "try again later"
        (errorcode 1): ask again later. JobStateUnknown for any other answer
        that is not a yes or no: a queue without /jobstate (the PHP
        original, an older version of this one) answers 404 or a page.
        """
        read_timeout = min(self.config.request_timeout, JOBSTATE_TIMEOUT)
        response = self._send("jobstate", {"jobid": jobid}, read_timeout)
        if response.status_code >= 500:
            raise QueueUnavailable(f"jobstate: HTTP {response.status_code}")
        if response.status_code != 200:
            raise JobStateUnknown(f"HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise JobStateUnknown(f"answer is not JSON: {response.text[:80]!r}") from None
        if isinstance(answer, dict) and answer.get("errorcode") == 1:
            raise QueueUnavailable(f"jobstate: {answer.get('errormsg', '')}")
        if (
            not isinstance(answer, dict)
            or answer.get("errorcode") != 0
            or not isinstance(answer.get("holds"), bool)
        ):
            raise JobStateUnknown(f"answer {answer!r:.120}")
        log.debug("jobstate answered %s", answer)
        return answer["holds"]

    def download(self, jobid: int, sha256: str, path: str) -> None:
        """Write one of the job's files, by its hash, to `path` (this project's
        queue only). FetchFailed when the queue refuses, QueueUnavailable
        when no answer came."""
        data = {"jobid": jobid, "sha256": sha256}
        if self.config.server_token:
            data["server_token"] = self.config.server_token
        try:
            with self._session().post(
                self.urls["jobfile"],
                data=data,
                timeout=(CONNECT_TIMEOUT, self.config.request_timeout),
                verify=self.config.ca or True,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise QueueUnavailable(f"jobfile: HTTP {response.status_code}")
                if response.headers.get("Content-Type", "").startswith("application/json"):
                    raise FetchFailed(f"jobfile: {response.text[:200]}")
                with open(path, "wb") as fh:
                    for chunk in response.iter_content(64 * 1024):
                        fh.write(chunk)
        except requests.RequestException as exc:
            raise QueueUnavailable(f"jobfile: {exc.__class__.__name__}: {exc}") from exc
        log.debug("Job #%d: fetched file %s", jobid, sha256[:12])

    def test(self) -> dict[str, Any]:
        """Ask /test.php whether we are connected and authenticated; the raw answer."""
        return self._post("test", {})
