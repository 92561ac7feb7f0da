"""The instance folder and the queue's files are private whatever the umask.

Issue 11 item 7: with umask 022 the SQLite database and its -wal/-shm were
0644, readable by every local user. Here real subprocesses run with umask
022: ``graderqueue init``, then the app writing jobs (so -wal and -shm exist);
every folder must be 0700 and every file 0600. And ``init`` on an instance
made before (0644 files, 0755 folders) fixes the modes and says so.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from harness import ROOT

WRITE_JOBS = """
import json
from graderqueue.web import create_app
from graderqueue.store.db import Database
from graderqueue.registry import actions as registry
app = create_app()
rt = app.extensions["graderqueue"]
with rt.db.transaction() as session:
    registry.add_tag(session, "c")
    registry.add_type(session, "t-c", ["c"])
    from graderqueue.protocol.keys import generate_rsa_pem
    registry.add_platform(session, "platform1", generate_rsa_pem()[1].decode())
client = app.test_client()
for n in range(3):
    answer = client.post("/api.php", data={"request": "sendjob", "debugPassword": "dbg",
        "jobdata": json.dumps({"taskPath": f"/t/{n}"}), "tags": "c"}).get_json()
    assert answer["errorcode"] == 0, answer
# Keep the connection open: -wal and -shm exist while a connection does.
import os, sys
print(sorted(os.listdir(sys.argv[1])))
"""


def run(args: list[str], instance: Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")},
        "GRADERQUEUE_INSTANCE_PATH": str(instance),
        "GRADERQUEUE_DEBUG_PASSWORD": "dbg",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def modes(instance: Path) -> dict[str, int]:
    out = {}
    for root, dirs, files in os.walk(instance):
        for name in dirs + files:
            path = Path(root) / name
            out[str(path.relative_to(instance))] = stat.S_IMODE(path.stat().st_mode)
    out["."] = stat.S_IMODE(instance.stat().st_mode)
    return out


def test_everything_the_queue_writes_is_private_with_umask_022(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    run(["-m", "graderqueue", "init"], instance)
    listed = run(["-c", WRITE_JOBS, str(instance)], instance).stdout
    # The files exist while the app runs (the process printed the folder).
    for name in ("graderqueue.db", "graderqueue.db-wal", "graderqueue.db-shm", "keys"):
        assert f"'{name}'" in listed, listed
    found = modes(instance)
    assert {"graderqueue.db", "keys/graderqueue.pem", "keys/graderqueue.pub.pem"} <= set(found)
    for path, mode in found.items():
        wanted = 0o700 if (instance / path).is_dir() else 0o600
        assert mode == wanted, f"{path} is {mode:04o}, not {wanted:04o}: {found}"


def test_the_wal_and_shm_files_are_private_even_with_umask_0(tmp_path: Path) -> None:
    """gunicorn's default umask is 0: the modes must not depend on it."""
    instance = tmp_path / "instance"
    run(["-m", "graderqueue", "init"], instance, umask=0)
    script = WRITE_JOBS.replace(
        "print(sorted(os.listdir(sys.argv[1])))",
        "print({n: oct(os.stat(os.path.join(sys.argv[1], n)).st_mode & 0o777)"
        " for n in os.listdir(sys.argv[1])})",
    )
    listed = run(["-c", script, str(instance)], instance, umask=0).stdout
    for name in ("graderqueue.db", "graderqueue.db-wal", "graderqueue.db-shm"):
        assert f"'{name}': '0o600'" in listed, listed
    assert "'keys': '0o700'" in listed, listed


def test_init_fixes_the_modes_of_an_old_instance_and_says_so(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    run(["-m", "graderqueue", "init"], instance)
    run(["-c", WRITE_JOBS, str(instance)], instance)
    # As an older version (or a copy with cp under umask 022) left it.
    loose = [instance, instance / "keys"]
    for path in loose:
        os.chmod(path, 0o755)
    files = [instance / "graderqueue.db", *sorted((instance / "keys").glob("*.pem"))]
    for path in files:
        os.chmod(path, 0o644)
    (instance / "graderqueue.db-wal").write_bytes(b"")  # as a crashed writer leaves it
    os.chmod(instance / "graderqueue.db-wal", 0o644)
    files.append(instance / "graderqueue.db-wal")
    # Something else of the operator's in the folder: not the queue's to change.
    other = instance / "notes.txt"
    other.write_text("mine")
    os.chmod(other, 0o644)

    output = run(["-m", "graderqueue", "init"], instance).stdout
    for path in loose:
        assert f"Fixed the mode of {path}: 0755 -> 0700." in output
    for path in files:
        assert f"Fixed the mode of {path}: 0644 -> 0600." in output, output
    assert "Database ready" in output
    assert output.count("Fixed the mode") == len(loose) + len(files), output
    for path in loose:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in files:
        if path.exists():  # SQLite removes the -wal when init closes the database
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(other.stat().st_mode) == 0o644
    # A second init finds nothing to fix.
    assert "Fixed" not in run(["-m", "graderqueue", "init"], instance).stdout
