"""A short run of scripts/fuzz_http.py (200 cases per endpoint), and what it found.

Each endpoint gets random forms against a real SQLite queue through the
Flask test client: every answer must be protocol JSON (HTTP 200, errorcode
0-3) without stack traces or secrets, and a refused request must change
nothing. Fixed seed by default, as in test_fuzz_tokens.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_fuzz_tokens import fuzz_seed, load_script

fuzz_http = load_script("fuzz_http")
fuzz_tokens = load_script("fuzz_tokens")
EXAMPLES = 200


@pytest.mark.parametrize("name", list(fuzz_http.ENDPOINTS))
def test_endpoint_survives_random_forms(name: str, tmp_path: Path) -> None:
    report = fuzz_http.run(
        name, EXAMPLES, instance=tmp_path / "instance", stop_on_failure=True, seed=fuzz_seed()
    )
    assert report.cases >= EXAMPLES
    assert report.failures == {}
    # The cases reached past authentication, not only the door.
    assert any(what.startswith("0 ") for what in report.outcomes), report.outcomes


@pytest.fixture(scope="module")
def shared_queue(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    queue = fuzz_http.FuzzQueue(tmp_path_factory.mktemp("fuzz") / "instance").setup()
    yield queue
    queue.close()


@pytest.fixture
def fq(shared_queue):  # type: ignore[no-untyped-def]
    shared_queue.errors.records.clear()
    return shared_queue


def test_the_checks_catch_a_change_made_by_a_refused_request(fq) -> None:  # type: ignore[no-untyped-def]
    """check_answer is what the fuzzer relies on: it must see a stored row."""
    before = fq.snapshot()
    fq.post(
        "/api.php",
        {"request": "sendjob", "jobdata": "{}", "debugPassword": fuzz_http.DEBUG_PASSWORD},
    )
    refusal = fq.post("/test.php", {"server_token": "nope"})
    with pytest.raises(AssertionError, match=r"refused .* but changed"):
        fuzz_http.check_answer(fq, refusal, before)


def test_the_checks_catch_a_secret_in_an_answer(fq) -> None:  # type: ignore[no-untyped-def]
    """An answer that echoed a form field holding a secret would be caught."""
    answer = fq.post(
        "/api.php",
        {"debugPassword": fuzz_http.DEBUG_PASSWORD, "request": fq.server_token},
    )
    with pytest.raises(AssertionError, match="secret"):
        fuzz_http.check_answer(fq, answer, fq.snapshot())


# -- what the fuzzers found over HTTP, now fixed: regression tests ----------------


def debug_send(fq, **fields: str) -> dict:  # type: ignore[no-untyped-def]
    form = {"request": "sendjob", "tags": "c", "debugPassword": fuzz_http.DEBUG_PASSWORD, **fields}
    return fq.post("/api.php", form).get_json()


def quiet(fq) -> None:  # type: ignore[no-untyped-def]
    assert fq.errors.records == [], [r.getMessage() for r in fq.errors.records]


def test_deeply_nested_jobdata_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    answer = debug_send(fq, jobdata="[" * 5000)
    assert answer["errorcode"] == 2, answer
    quiet(fq)


def test_a_5000_digit_priority_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    answer = debug_send(fq, jobdata="{}", priority="9" * 5000)
    assert answer["errorcode"] == 2, answer
    quiet(fq)


def held_job(fq) -> int:  # type: ignore[no-untyped-def]
    debug_send(fq, jobdata=json.dumps({"taskPath": "/t"}))
    polled = fq.post("/poll.php", {"nbtasks": "0"}, fuzz_http.CERT_HEADERS).get_json()
    assert polled["errorcode"] == 0, polled
    return polled["jobid"]


def test_deeply_nested_resultdata_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    jobid = held_job(fq)
    form = {"jobid": str(jobid), "resultdata": "[" * 5000}
    answer = fq.post("/sendresults.php", form, fuzz_http.CERT_HEADERS).get_json()
    assert answer["errorcode"] == 2, answer
    quiet(fq)


def test_an_infinite_time_in_a_result_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    """A result the grading server cannot get stored: it is lost after its retries."""
    jobid = held_job(fq)
    result = '{"errorcode": 0, "jobdata": {"executions": [{"testsReports": [{"execution": {"timeTakenMs": 1e999}}]}]}}'  # noqa: E501
    form = {"jobid": str(jobid), "resultdata": result}
    answer = fq.post("/sendresults.php", form, fuzz_http.CERT_HEADERS).get_json()
    assert answer["errorcode"] == 0, answer
    quiet(fq)


def test_a_huge_time_in_a_result_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    jobid = held_job(fq)
    report = {"execution": {"timeTakenMs": 2**80}}
    result = {"errorcode": 0, "jobdata": {"executions": [{"testsReports": [report]}]}}
    form = {"jobid": str(jobid), "resultdata": json.dumps(result)}
    answer = fq.post("/sendresults.php", form, fuzz_http.CERT_HEADERS).get_json()
    assert answer["errorcode"] == 0, answer
    quiet(fq)


def test_an_errorcode_of_5000_digits_over_http(fq) -> None:  # type: ignore[no-untyped-def]
    jobid = held_job(fq)
    form = {"jobid": str(jobid), "resultdata": json.dumps({"errorcode": "9" * 5000})}
    answer = fq.post("/sendresults.php", form, fuzz_http.CERT_HEADERS).get_json()
    assert answer["errorcode"] == 2, answer
    quiet(fq)


ODD_DIGITS = ["\u00b9", "\u2460"]  # '¹', '①': isdigit() is True, int() fails


@pytest.mark.parametrize("jobid", ODD_DIGITS)
def test_odd_unicode_digits_as_a_result_jobid(fq, jobid: str) -> None:  # type: ignore[no-untyped-def]
    form = {"jobid": jobid, "resultdata": '{"errorcode": 0}'}
    answer = fq.post("/sendresults.php", form, fuzz_http.CERT_HEADERS).get_json()
    assert answer["errorcode"] == 2, answer
    quiet(fq)


@pytest.mark.parametrize("jobid", ODD_DIGITS)
def test_odd_unicode_digits_as_a_getjob_jobid(fq, jobid: str) -> None:  # type: ignore[no-untyped-def]
    form = {"request": "getjob", "jobid": jobid, "debugPassword": fuzz_http.DEBUG_PASSWORD}
    answer = fq.post("/api.php", form).get_json()
    assert answer == {"errorcode": 2, "errormsg": "Invalid jobid."}, answer
    quiet(fq)
