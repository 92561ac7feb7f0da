"""The real graderserver daemon with jobs that take files (docs/GRADERSERVER.md):
it fetches them from the queue under gunicorn, checks their hashes, runs the
program in the job's own folder with them in place, sends the job's
output_file back cut to max_kb, and fetches a file it has cached only once."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import requests

from tests.integration.test_api_v1_auth import bearer_jws
from tests.integration.test_graderserver_queue import Live, program

# Reads its files where the daemon says they are, writes output_file.
READER = """
folder = os.environ["GRADERSERVER_WORKDIR"]
dests = os.environ["GRADERSERVER_FILES"].split(":")
numbers = open("in/numbers.txt").read().split()
data = open("blob.bin", "rb").read()
os.makedirs("out", exist_ok=True)
with open("out/report.txt", "w") as out:
    out.write("sum=%d\\n" % sum(map(int, numbers)) + "." * 5000)
print(json.dumps({
    "sum": sum(map(int, numbers)),
    "dests": dests,
    "blob_sha256": __import__("hashlib").sha256(data).hexdigest(),
    "cwd_is_folder": os.getcwd() == folder,
}))
"""


def test_the_daemon_fetches_files_runs_on_them_and_sends_the_output_back(sqlite_queue, tmp_path):
    queue = sqlite_queue
    # Uploads have their own body limit: a 1.5 MiB file passes a 1 MiB request limit.
    server = queue.gunicorn(workers=2, threads=8, GRADERQUEUE_MAX_REQUEST_BYTES=str(2**20))
    platform = queue.platform("files")
    live = Live(queue, server.url, queue.server_token("t-c"), None, tmp_path)

    def api(method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        token = bearer_jws(platform, queue.settings.key_name)
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        url = f"{server.url}/api/v1{path}"
        return requests.request(method, url, headers=headers, timeout=30, **kw)

    blob = bytes(range(256)) * 6000  # 1.5 MiB: two chunks in the database
    octets = {"Content-Type": "application/octet-stream"}
    for name, data in (("numbers.txt", b"3 4 5\n"), ("blob.bin", blob)):
        put = api("PUT", f"/labs/lab/files/{name}", data=data, headers=octets)
        assert put.status_code == 201, put.text
    assert api("POST", "/jobs", data=b" " * len(blob)).status_code == 413  # others: 1 MiB
    # Chunked (no Content-Length), as a streaming client sends it: the same limit.
    pieces = iter([blob[:700_000], blob[700_000:]])
    put = api("PUT", "/labs/copy/files/blob.bin", data=pieces, headers=octets)
    assert put.status_code == 201 and put.json()["size"] == len(blob), put.text
    job = {
        "jobdata": {"taskPath": "$ROOT_PATH/tasks/add"},
        "tags": "c",
        "files": [
            {"lab": "lab", "name": "numbers.txt", "dest": "in/numbers.txt"},
            {"lab": "lab", "name": "blob.bin", "dest": "blob.bin"},
        ],
        "output_file": "out/report.txt",
        "max_kb": 1,
    }
    sent = [api("POST", "/jobs", json={**job, "jobusertaskid": f"j{n}"}) for n in (1, 2)]
    ids = [answer.json()["id"] for answer in sent]

    config = live.config(
        program(tmp_path, "reader", READER),
        files={"cache_dir": str(tmp_path / "cache"), "work_dir": str(tmp_path / "work")},
    )
    result = live.graderserver("-c", str(config), "--once", "-v")
    assert result.returncode == 0, result.stdout + result.stderr

    for job_id in ids:
        found = api("GET", f"/jobs/{job_id}").json()
        assert found["state"] == "FINISHED", found
        graded = found["result"]["jobdata"]
        assert graded == {
            "sum": 12,
            "dests": ["blob.bin", "in/numbers.txt"],
            "blob_sha256": hashlib.sha256(blob).hexdigest(),
            "cwd_is_folder": True,
        }
        output = api("GET", f"/jobs/{job_id}/artifacts/output")
        assert output.status_code == 200 and output.text == "sum=12\n" + "." * (1024 - 7)
        artifacts = {a["name"]: a for a in found["artifacts"]}
        assert artifacts["output"]["truncated"] is True

    # Two jobs, two files each: each file fetched once, the second job from the cache.
    fetches = re.findall(r'"POST /jobfile ', server.log_text())
    assert len(fetches) == 2, server.log_text()[-3000:]
    cached = sorted(p.name for p in Path(tmp_path / "cache").iterdir())
    assert cached == sorted(hashlib.sha256(d).hexdigest() for d in (b"3 4 5\n", blob))
    assert list(Path(tmp_path / "work").iterdir()) == []  # each job's folder is gone


def test_a_file_that_does_not_match_its_hash_is_not_used(tmp_path):
    """A cached file is trusted only under its own hash; a fetched one only if it has it."""
    from graderserver.files import FetchFailed, FileCache

    cache = FileCache(str(tmp_path / "cache"), 10)
    good = hashlib.sha256(b"good").hexdigest()

    def wrong(sha256: str, path: str) -> None:
        Path(path).write_bytes(b"evil")

    try:
        cache.get(good, wrong)
    except FetchFailed as exc:
        assert "another hash" in str(exc)
    else:
        raise AssertionError("a file with the wrong hash was accepted")
    assert list((tmp_path / "cache").iterdir()) == []

    # LRU: past 10 bytes, the file used longest ago goes (times set: a file
    # system's clock may give three quick writes the same one).
    for n, data in enumerate((b"12345", b"67890", b"abcde")):

        def fetch(sha256: str, path: str, data: bytes = data, when: int = 1000 + n) -> None:
            Path(path).write_bytes(data)
            os.utime(path, (when, when))

        cache.get(hashlib.sha256(data).hexdigest(), fetch)
    left = {p.read_bytes() for p in (tmp_path / "cache").iterdir()}
    assert left == {b"67890", b"abcde"}
