"""Posting one job's result to the queue, with the retries PROTOCOL.md implies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from graderserver.config import Config
from graderserver.errors import AuthenticationFailed, QueueUnavailable, RequestTooLarge

log = logging.getLogger(__name__)


class ResultsClient(Protocol):
    """What posting needs of `graderserver.client.QueueClient`."""

    def send_results(
        self,
        jobid: int,
        resultdata: dict[str, Any] | None,
        artifacts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...


def send_results(
    client: ResultsClient,
    config: Config,
    jobid: int,
    resultdata: dict[str, Any] | None,
    *,
    artifacts: Mapping[str, str] | None = None,
    cold: threading.Event,
) -> None:
    """Post the result: `results_tries` tries on network failure; as long as
    it takes while the queue answers errorcode 1 ("try again later").
    A cold shutdown (`cold` set) ends the tries: the job goes back to the queue.

    A result refused with its artifacts is sent once more without them: they
    are extras, and must never cost a job its result (too large a request).
    """
    failures = 0
    while not cold.is_set():
        try:
            answer = client.send_results(jobid, resultdata, artifacts)
        except QueueUnavailable as exc:
            if artifacts and isinstance(exc, RequestTooLarge):
                _log_dropped(jobid, str(exc))
                artifacts = None
                continue
            failures += 1
            if failures >= config.results_tries:
                log.error("Job #%d: result lost after %d tries: %s", jobid, failures, exc)
                return
            log.warning("Job #%d: could not send the result (%s); retrying.", jobid, exc)
            cold.wait(config.results_retry_delay)
            continue
        except AuthenticationFailed as exc:
            log.critical("Job #%d: %s", jobid, exc)
            return
        code, message = answer["errorcode"], answer.get("errormsg", "")
        if code == 1:
            log.warning("Job #%d: queue busy (%s); retrying.", jobid, message)
            cold.wait(config.results_retry_delay)
            continue
        reports_error = resultdata is not None and resultdata.get("errorcode", 0) >= 2
        if code == 2 and artifacts and not reports_error:
            _log_dropped(jobid, message)
            artifacts = None
            continue
        if code == 0:
            log.info("Job #%d: result saved.", jobid)
        elif reports_error:
            # The queue answers 2 to every error report: it requeued the job.
            log.info("Job #%d: reported as not graded; the queue requeues it.", jobid)
        else:
            log.warning("Job #%d: queue refused the result: %s", jobid, message)
        return


def _log_dropped(jobid: int, why: str) -> None:
    log.warning(
        "Job #%d: result refused (%s); sending it once more without the program's "
        "stdout and stderr, in case they made the request too large.",
        jobid,
        why,
    )
