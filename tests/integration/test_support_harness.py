"""The test harness itself, checked on real parts.

If these fail, every integration test built on harness/ would fail or,
worse, skip for the wrong reason; so they run against a real MariaDB, a
real throwaway server and real gunicorn processes.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from harness import mariadb
from harness.mariadb import (
    MariaDBServer,
    MariaDBUnavailable,
    create_test_database,
    drop_test_database,
    find_mariadb_binaries,
    in_ci,
    mariadb_base_url,
    mariadb_base_url_or_skip,
    server_answers,
    temporary_database,
)
from harness.processes import CliError, Gunicorn, free_port, run_cli, stop_process, wait_port

# -- helpers -------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while *pid* runs; a zombie left for init to reap counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def _get(url: str, path: str) -> tuple[int, str]:
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _database_exists(base_url: str, name: str) -> bool:
    engine = create_engine(base_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": name},
            ).all()
    finally:
        engine.dispose()
    return bool(found)


def _need_mariadb_binaries() -> None:
    if find_mariadb_binaries() is None:
        if in_ci():
            pytest.fail("MariaDB server binaries are required under CI=true")
        pytest.skip("MariaDB server binaries not installed")


# -- MariaDB -------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url():
    url, server = mariadb_base_url_or_skip()
    yield url
    if server is not None:
        server.stop()


@pytest.mark.mariadb
def test_base_url_reaches_a_server_without_naming_a_database(base_url):
    assert server_answers(base_url) is None
    assert not make_url(base_url).database
    engine = create_engine(base_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
    finally:
        engine.dispose()
    assert version


@pytest.mark.mariadb
def test_test_database_is_created_utf8mb4_and_dropped(base_url):
    url = create_test_database(base_url)
    name = make_url(url).database
    assert name.startswith("gqtest_") and len(name) == len("gqtest_") + 8
    assert make_url(url).query.get("charset") == "utf8mb4"
    try:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                charset = conn.exec_driver_sql(
                    "SELECT default_character_set_name FROM information_schema.schemata "
                    "WHERE schema_name = DATABASE()"
                ).scalar_one()
                conn.exec_driver_sql("CREATE TABLE t (s VARCHAR(20)) ENGINE=InnoDB")
                conn.execute(text("INSERT INTO t VALUES (:s)"), {"s": "ok \U0001f600"})
            with engine.connect() as conn:
                stored = conn.exec_driver_sql("SELECT s FROM t").scalar_one()
        finally:
            engine.dispose()
        assert charset == "utf8mb4"
        assert stored == "ok \U0001f600"  # 4-byte characters survive
    finally:
        drop_test_database(url)
    assert not _database_exists(base_url, name)


@pytest.mark.mariadb
def test_two_test_databases_get_different_names(base_url):
    first, second = create_test_database(base_url), create_test_database(base_url)
    try:
        assert make_url(first).database != make_url(second).database
    finally:
        drop_test_database(first)
        drop_test_database(second)


@pytest.mark.mariadb
def test_temporary_database_is_dropped_even_when_the_block_fails(base_url):
    with pytest.raises(RuntimeError, match="on purpose"), temporary_database(base_url) as url:
        name = make_url(url).database
        assert _database_exists(base_url, name)
        raise RuntimeError("failed on purpose")
    assert not _database_exists(base_url, name)


@pytest.mark.mariadb
@pytest.mark.parametrize("name", ["mysql", "graderqueue", "gqtest", "gqtestx_1", "gqtest_a`b", ""])
def test_drop_refuses_databases_not_made_for_tests(base_url, name):
    url = make_url(base_url)._replace(database=name).render_as_string(hide_password=False)
    with pytest.raises(ValueError, match="refusing to drop"):
        drop_test_database(url)
    assert _database_exists(base_url, "mysql")


@pytest.mark.mariadb
def test_configured_url_wins_and_its_database_part_is_not_used(base_url, monkeypatch):
    configured = make_url(base_url)._replace(database="production")
    configured = configured.update_query_dict({"charset": "utf8mb4"})
    monkeypatch.setenv(mariadb.ENV_URL, configured.render_as_string(hide_password=False))
    url, server = mariadb_base_url()
    assert server is None
    parsed = make_url(url)
    assert not parsed.database
    assert (parsed.host, parsed.port) == (make_url(base_url).host, make_url(base_url).port)
    assert parsed.query.get("charset") == "utf8mb4"


def test_configured_url_that_does_not_answer_is_an_error_not_a_skip(monkeypatch):
    monkeypatch.setenv(mariadb.ENV_URL, f"mysql+pymysql://root@127.0.0.1:{free_port()}/x")
    with pytest.raises(RuntimeError, match="does not answer") as caught:
        mariadb_base_url()
    assert not isinstance(caught.value, MariaDBUnavailable)


@pytest.mark.mariadb
def test_without_local_server_a_throwaway_one_is_started(monkeypatch):
    _need_mariadb_binaries()
    monkeypatch.delenv(mariadb.ENV_URL, raising=False)
    monkeypatch.setattr(
        mariadb, "DEFAULT_LOCAL_URL", f"mysql+pymysql://root@127.0.0.1:{free_port()}/"
    )
    url, server = mariadb_base_url()
    try:
        assert isinstance(server, MariaDBServer)
        assert url == server.url
        assert server_answers(url) is None
    finally:
        if server is not None:
            server.stop()


@pytest.mark.mariadb
def test_throwaway_server_starts_serves_and_leaves_nothing_behind():
    _need_mariadb_binaries()
    with MariaDBServer() as server:
        port, pid, base_dir = server.port, server.process.pid, server.base_dir
        assert port != 3306
        assert base_dir.is_dir()
        url = create_test_database(server.url)
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY)")
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 1
        finally:
            engine.dispose()
        drop_test_database(url)
    assert not server.running
    assert not _alive(pid)
    assert not base_dir.exists()
    assert _refuses(port)
    server.stop()  # a second stop is harmless


# -- processes -----------------------------------------------------------------

TINY_APP = """
import os


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("tiny app exploded on purpose")
    print("tiny app served", path, flush=True)
    body = f"{os.environ.get('TINY_GREETING', 'none')} pid={os.getpid()} path={path}"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"""

TINY_CLI = """
import os
import sys

args = sys.argv[1:]
print("args=" + " ".join(args))
print("env=" + os.environ.get("TINY_CLI", "unset"))
print("stdin=" + sys.stdin.read())
if args and args[0] == "fail":
    print("tiny cli failed on purpose", file=sys.stderr)
    sys.exit(3)
"""


@pytest.fixture
def tiny_app_dir(tmp_path: Path) -> Path:
    (tmp_path / "tinyapp.py").write_text(TINY_APP)
    return tmp_path


def test_free_port_can_be_bound():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_port_returns_once_something_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        wait_port(sock.getsockname()[1], timeout=10)


def test_wait_port_gives_up_when_the_server_exits():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    with pytest.raises(RuntimeError, match="exited with 0 while starting"):
        wait_port(free_port(), timeout=60, proc=proc)


def test_stop_process_kills_what_ignores_sigterm():
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    proc = subprocess.Popen(
        [sys.executable, "-c", ignoring + "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    stop_process(proc, timeout=1)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()
    stop_process(proc)  # stopping a stopped process is a no-op


def test_gunicorn_serves_the_app_and_stops_with_its_workers(tiny_app_dir):
    server = Gunicorn(
        "tinyapp:app",
        env={"PYTHONPATH": str(tiny_app_dir), "TINY_GREETING": "hello"},
        workers=2,
        threads=2,
    )
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        master = server.pid
        status, body = _get(server.url, "/first")
        assert status == 200
        assert body.startswith("hello pid=") and body.endswith("path=/first")
        worker = int(body.split("pid=")[1].split()[0])
        assert worker != master
        status, _ = _get(server.url, "/boom")
        assert status == 500  # an app error is an answer, not a dead server
    assert not server.running
    assert not _alive(master) and not _alive(worker)
    assert _refuses(server.port)
    logs = server.log_text()  # still readable after stop
    assert "GET /first" in logs  # access log
    assert "tiny app served /first" in logs  # captured app output
    assert "tiny app exploded on purpose" in logs  # error log


def test_two_gunicorns_run_side_by_side(tiny_app_dir):
    env = {"PYTHONPATH": str(tiny_app_dir)}
    with Gunicorn("tinyapp:app", env=env, workers=1) as first:
        with Gunicorn("tinyapp:app", env=env, workers=1) as second:
            assert first.port != second.port
            assert _get(first.url, "/a")[0] == 200
            assert _get(second.url, "/b")[0] == 200
        assert _get(first.url, "/c")[0] == 200  # stopping one left the other alone


def test_gunicorn_that_cannot_start_fails_with_its_log(tmp_path):
    server = Gunicorn("no_such_module_for_harness:app", env={"PYTHONPATH": str(tmp_path)})
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert "No module named 'no_such_module_for_harness'" in str(caught.value)
    assert not server.running


def test_run_cli_passes_args_env_and_input(tmp_path):
    package = tmp_path / "tinycli"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(TINY_CLI)
    env = {"PYTHONPATH": str(tmp_path), "TINY_CLI": "set"}

    done = run_cli(["a", "b c"], env=env, module="tinycli", input="typed")
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["args=a b c", "env=set", "stdin=typed"]

    with pytest.raises(CliError) as caught:
        run_cli(["fail"], env=env, module="tinycli", cwd=tmp_path)
    assert caught.value.returncode == 3
    assert "tiny cli failed on purpose" in str(caught.value)

    done = run_cli(["fail"], env={**env, "TINY_CLI": None}, module="tinycli", check=False)
    assert done.returncode == 3
    assert "env=unset" in done.stdout
