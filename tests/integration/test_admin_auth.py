"""Who gets into the admin interface: login, sessions, CSRF, the secret key, the CLI."""

from __future__ import annotations

import re
import stat

import pytest
from sqlalchemy import select

from graderqueue.identity import passwords
from graderqueue.store.models import AdminUser
from graderqueue.web import create_app
from graderqueue.web.admin.security import safe_next
from harness.processes import run_cli

PASSWORD = "s3cret-enough"


def add_admin(queue, name: str = "alice", password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        session.add(AdminUser(username=name, password_hash=passwords.hash_password(password)))


def csrf_of(response) -> str:  # type: ignore[no-untyped-def]
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert found, "the page has no CSRF field"
    return found.group(1)


def log_in(client, name: str = "alice", password: str = PASSWORD):  # type: ignore[no-untyped-def]
    token = csrf_of(client.get("/admin/login"))
    return client.post(
        "/admin/login", data={"username": name, "password": password, "csrf_token": token}
    )


@pytest.fixture
def admin_queue(sqlite_queue):  # type: ignore[no-untyped-def]
    add_admin(sqlite_queue)
    return sqlite_queue


def test_every_page_needs_a_login(admin_queue):
    client = admin_queue.app.test_client()
    for path in (
        "/admin/",
        "/admin/servers",
        "/admin/jobs/queued",
        "/admin/jobs/done",
        "/admin/jobs/1",
        "/admin/jobs/1/job.json",
        "/admin/events",
        "/admin/stats",
        "/admin/send",
    ):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/admin/login?next="), path
    # The stylesheet is public: the login page needs it.
    assert client.get("/admin/static/admin.css").status_code == 200


def test_login_sets_a_hardened_session_cookie(sqlite_queue):
    add_admin(sqlite_queue)
    client = sqlite_queue.app.test_client()  # default settings: secure cookies
    answer = log_in(client)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("graderqueue_admin=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/admin"):
        assert flag in cookie, cookie


def test_wrong_password_or_unknown_user_gets_the_same_refusal(admin_queue):
    client = admin_queue.app.test_client()
    for name, password in (("alice", "wrong"), ("mallory", PASSWORD), ("", "")):
        answer = log_in(client, name, password)
        assert answer.status_code == 401
        assert "Wrong user name or password." in answer.get_data(as_text=True)
        assert client.get("/admin/").status_code == 302


def test_login_updates_last_login_and_logout_ends_the_session(admin_queue):
    client = admin_queue.app.test_client()
    assert log_in(client).status_code == 302
    assert client.get("/admin/").status_code == 200
    with admin_queue.db.transaction() as session:
        assert session.scalars(select(AdminUser.last_login)).one() is not None
    token = csrf_of(client.get("/admin/"))
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_a_deleted_admin_is_logged_out_at_once(admin_queue):
    client = admin_queue.app.test_client()
    log_in(client)
    with admin_queue.db.transaction() as session:
        session.delete(session.scalars(select(AdminUser)).one())
    assert client.get("/admin/").status_code == 302


def test_posts_without_the_sessions_csrf_token_are_refused(admin_queue):
    client = admin_queue.app.test_client()
    log_in(client)
    for path in (
        "/admin/logout",
        "/admin/jobs/1/requeue",
        "/admin/servers/1/wakeup",
        "/admin/send",
    ):
        assert client.post(path).status_code == 400, path
        assert client.post(path, data={"csrf_token": "guess"}).status_code == 400, path
    assert client.get("/admin/").status_code == 200, "still logged in: logout was refused too"
    # Another session's token is no good either.
    other = admin_queue.app.test_client()
    log_in(other)
    stolen = csrf_of(other.get("/admin/"))
    assert client.post("/admin/logout", data={"csrf_token": stolen}).status_code == 400
    # Even the login form needs it.
    fresh = admin_queue.app.test_client()
    answer = fresh.post("/admin/login", data={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 400


def test_login_goes_back_to_the_page_asked_for_but_never_elsewhere(admin_queue):
    client = admin_queue.app.test_client()
    token = csrf_of(client.get("/admin/login?next=/admin/events"))
    answer = client.post(
        "/admin/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/admin/events",
        },
    )
    assert answer.headers["Location"] == "/admin/events"
    assert safe_next("https://evil.example/admin") is None
    assert safe_next("//evil.example/admin") is None
    assert safe_next("/api.php") is None
    assert safe_next("/admin/jobs/done?name=x") == "/admin/jobs/done?name=x"


def test_pages_carry_security_headers(admin_queue):
    client = admin_queue.app.test_client()
    log_in(client)
    answer = client.get("/admin/")
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    html = answer.get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html), "nothing loaded from elsewhere"


def test_secret_key_is_generated_once_private_and_reused(sqlite_queue):
    key_file = sqlite_queue.instance / "secret_key"
    app = sqlite_queue.app
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert app.secret_key == key_file.read_text().strip()
    assert len(app.secret_key) >= 64
    again = create_app(sqlite_queue.settings)
    assert again.secret_key == app.secret_key
    again.extensions["graderqueue"].hints.close()


def test_configured_secret_key_is_used_and_no_file_is_written(tmp_path):
    from harness.queue import QueueSetup

    queue = QueueSetup(tmp_path / "instance", secret_key="from-the-config-" + "x" * 32)
    try:
        assert queue.app.secret_key == "from-the-config-" + "x" * 32
        assert not (queue.instance / "secret_key").exists()
    finally:
        queue.close()


def test_interface_can_be_turned_off(tmp_path):
    from harness.queue import QueueSetup

    queue = QueueSetup(tmp_path / "instance", admin_enabled=False)
    try:
        client = queue.app.test_client()
        assert client.get("/admin/login").status_code == 404
        assert client.get("/healthz").status_code == 200
    finally:
        queue.close()


def test_cli_adds_lists_changes_and_removes_admins(sqlite_queue):
    env = sqlite_queue.env
    added = run_cli(["admin", "add", "bob", "--password-stdin"], env=env, input="pass-word-1\n")
    assert "Admin `bob` added." in added.stdout
    assert "pass-word-1" not in added.stdout + added.stderr
    listed = run_cli(["admin", "list"], env=env)
    assert listed.stdout.startswith("bob\tcreated ") and "last login never" in listed.stdout

    client = sqlite_queue.app.test_client()
    assert log_in(client, "bob", "pass-word-1").status_code == 302

    again = run_cli(
        ["admin", "add", "bob", "--password-stdin"], env=env, input="x" * 9, check=False
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run_cli(
        ["admin", "add", "eve", "--password-stdin"], env=env, input="short\n", check=False
    )
    assert short.returncode == 1 and "at least 8" in short.stderr

    run_cli(["admin", "passwd", "bob", "--password-stdin"], env=env, input="new-pass-word\n")
    assert log_in(sqlite_queue.app.test_client(), "bob", "pass-word-1").status_code == 401
    assert log_in(sqlite_queue.app.test_client(), "bob", "new-pass-word").status_code == 302

    run_cli(["admin", "remove", "bob"], env=env)
    assert run_cli(["admin", "list"], env=env).stdout == "No admin accounts.\n"
    assert client.get("/admin/").status_code == 302, "the removed admin's session ended"
    with sqlite_queue.db.transaction() as session:
        assert session.scalars(select(AdminUser)).all() == []


def test_cli_prompts_for_the_password_twice_without_echo(sqlite_queue):
    prompted = run_cli(
        ["admin", "add", "carol"], env=sqlite_queue.env, input="pw-pw-pw-1\npw-pw-pw-1\n"
    )
    assert "Password" in prompted.stdout + prompted.stderr  # getpass writes to the terminal
    assert "pw-pw-pw-1" not in prompted.stdout + prompted.stderr
    with sqlite_queue.db.transaction() as session:
        user = session.scalars(select(AdminUser)).one()
        assert user.username == "carol"
        assert user.password_hash.startswith("$argon2id$")
        assert passwords.verify(user.password_hash, "pw-pw-pw-1")


HUGE = "99999999999999999999999"


def test_huge_or_odd_ids_in_urls_are_not_found(admin_queue):
    """Past the project's integer rule (numbers.parse_int) an id is no page: 404, never
    a database overflow (500)."""
    client = admin_queue.app.test_client()
    log_in(client)
    token = csrf_of(client.get("/admin/"))
    for path in (f"/admin/jobs/{HUGE}", f"/admin/jobs/{HUGE}/job.json", "/admin/jobs/\u0663"):
        assert client.get(path).status_code == 404, path
    for path in (
        f"/admin/jobs/{HUGE}/requeue",
        f"/admin/jobs/{HUGE}/cancel",
        f"/admin/servers/{HUGE}/wakeup",
    ):
        assert client.post(path, data={"csrf_token": token}).status_code == 404, path
    assert client.get("/admin/jobs/999999999999999999").status_code == 404  # 18 digits: looked up
    # A paging cursor with such an id is ignored: the first page is shown.
    for path in ("/admin/jobs/queued", "/admin/jobs/done", "/admin/events"):
        answer = client.get(path, query_string={"before": f"2026-01-01T00:00:00_{HUGE}"})
        assert answer.status_code == 200, path


def test_junk_in_the_login_next_parameter_goes_to_the_dashboard(admin_queue):
    client = admin_queue.app.test_client()
    for junk in (
        "/admin/\r\nSet-Cookie: x=y",
        "/admin/jobs\n",
        "/admin/\x00",
        "/admin/jobs/done?name=a b",
        "/admin\\..\\api.php",
    ):
        page = client.get("/admin/login", query_string={"next": junk})
        assert page.status_code == 200
        assert 'name="next"' not in page.get_data(as_text=True)
        answer = client.post(
            "/admin/login",
            data={
                "username": "alice",
                "password": PASSWORD,
                "csrf_token": csrf_of(page),
                "next": junk,
            },
        )
        assert answer.status_code == 302, junk
        assert answer.headers["Location"] == "/admin/", junk
        client = admin_queue.app.test_client()


def test_next_stays_under_admin():
    for bad in (
        "/administrator",
        "/admin/../api.php",
        "/admin/%2e%2e/api.php",
        "/admin/%2E./api.php",
        "/admin/x#frag",
        "/admin/\r\n",
        "/admin/caf\u00e9",
        "http:/admin/",
        "/admin/" + "x" * 2000,
    ):
        assert safe_next(bad) is None, bad
    assert safe_next("/admin") == "/admin"
    assert safe_next("/admin/jobs/done?name=a%20b&since=2026-01-01") == (
        "/admin/jobs/done?name=a%20b&since=2026-01-01"
    )
    assert safe_next("/admin/events?") == "/admin/events"
