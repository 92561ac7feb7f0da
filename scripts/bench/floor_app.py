"""The protocol's floor: a job's four exchanges and four RSA operations, and nothing else.

The end-to-end benchmark runs this beside the queue, under the same gunicorn
configuration, to tell what any implementation of the protocol pays on this
machine from what the queue adds. It keeps jobs in memory (one worker
process; nothing is durable, nothing is routed, nobody is authenticated but
by comparing one string):

- ``POST /api.php``: decrypts and verifies the platform's token
  (``ceiling_app.open_request``) and appends the job to a list;
- ``POST /poll.php``: a long-poll that hands the next job to the caller;
- ``POST /sendresults.php``: takes the result and hands it to a poster;
- poster threads (as many as the queue's ``delivery_concurrency``) sign the
  result with the queue's key, encrypt it to the platform and POST it to
  the return URL on a keep-alive session.

Environment: ``BENCH_QUEUE_KEY`` (queue private PEM file), ``BENCH_QUEUE_KEY_NAME``,
``BENCH_PLATFORM_PUB`` (platform public PEM file), ``BENCH_PLATFORM``,
``BENCH_RETURN_URL``, ``BENCH_SERVER_TOKEN``.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time
from typing import Any

import requests
from flask import Flask, Response, request
from jwcrypto import jwe, jws

from scripts.bench.ceiling_app import PLATFORM_KEY, QUEUE_KEY, open_request

QUEUE_KEY_NAME = os.environ.get("BENCH_QUEUE_KEY_NAME", "graderqueue")
PLATFORM = os.environ.get("BENCH_PLATFORM", "bench")
RETURN_URL = os.environ["BENCH_RETURN_URL"]
SERVER_TOKEN = os.environ["BENCH_SERVER_TOKEN"]
POLL_WAIT_SEC = 20.0
POSTERS = 8
app = Flask(__name__)

_waiting: collections.deque[dict[str, Any]] = collections.deque()
_ready = threading.Condition()
_held: dict[int, dict[str, Any]] = {}
_outbox: queue.Queue[tuple[str, Any]] = queue.Queue()
_ids = iter(range(1, 1 << 62))
_posters_started = threading.Lock()
_posters: list[threading.Thread] = []


def _answer(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@app.post("/api.php")
def sendjob() -> Response:
    payload = open_request(request.form["sToken"])
    _start_posters()
    with _ready:
        job = {"jobid": next(_ids), "jobname": payload.get("jobusertaskid", ""),
               "jobdata": json.loads(payload["jobdata"])}  # fmt: skip
        _waiting.append(job)
        _ready.notify()
    return _answer({"errorcode": 0, "errormsg": "Queued.", "jobid": job["jobid"]})


@app.post("/poll.php")
def poll() -> Response:
    if request.form.get("server_token") != SERVER_TOKEN:
        return _answer({"errorcode": 3, "errormsg": "No valid authentication provided."})
    with _ready:
        if not _ready.wait_for(lambda: _waiting, timeout=POLL_WAIT_SEC):
            return _answer({"errorcode": 1, "errormsg": "No job available."})
        job = _waiting.popleft()
        _held[job["jobid"]] = job
    return _answer({"errorcode": 0, "errormsg": "", **job})


@app.post("/sendresults.php")
def sendresults() -> Response:
    if request.form.get("server_token") != SERVER_TOKEN:
        return _answer({"errorcode": 3, "errormsg": "No valid authentication provided."})
    result = json.loads(request.form["resultdata"])
    with _ready:
        job = _held.pop(int(request.form["jobid"]))
    _outbox.put((job["jobname"], result.get("jobdata")))
    return _answer({"errorcode": 0, "errormsg": "Saved resultdata."})


def _start_posters() -> None:
    with _posters_started:
        if not _posters:
            for _ in range(POSTERS):
                _posters.append(threading.Thread(target=_post_results, daemon=True))
                _posters[-1].start()


def _post_results() -> None:
    session = requests.Session()
    while True:
        name, jobdata = _outbox.get()
        payload = {"sTaskName": name, "sResultData": jobdata,
                   "date": time.strftime("%d-%m-%Y", time.gmtime())}  # fmt: skip
        signer = jws.JWS(json.dumps(payload, separators=(",", ":")).encode())
        signer.add_signature(QUEUE_KEY, None, json.dumps({"alg": "RS512", "kid": QUEUE_KEY_NAME}))
        header = {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": PLATFORM, "zip": "DEF"}
        outer = jwe.JWE(signer.serialize(compact=True).encode(), json.dumps(header))
        outer.add_recipient(PLATFORM_KEY)
        token = outer.serialize(compact=True)
        try:
            session.post(RETURN_URL, data={"sToken": token}, timeout=30).raise_for_status()
        except requests.RequestException:
            _outbox.put((name, jobdata))  # the receiver restarts only with the bench
            time.sleep(0.1)
