"""Admin sessions end server-side: an old cookie and its CSRF token are refused after
logout, a new password (the real CLI) or removing the account, on SQLite and MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from graderqueue.identity import passwords
from graderqueue.store import migrate
from graderqueue.store.db import Database
from graderqueue.store.models import AdminUser, Job
from harness.processes import run_cli
from tests.integration.test_admin_auth import PASSWORD, add_admin, csrf_of, log_in

COOKIE = "graderqueue_admin"


@pytest.fixture
def admin_queue(queue):  # type: ignore[no-untyped-def]
    add_admin(queue)
    return queue


def stolen_session(client) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The cookie and CSRF token of a logged-in client, as someone who copied them has them."""
    cookie = client.get_cookie(COOKIE, path="/admin")
    assert cookie is not None, "not logged in"
    return cookie.value, csrf_of(client.get("/admin/"))


def replayed(queue, cookie: str):  # type: ignore[no-untyped-def]
    """Another browser sending that cookie."""
    client = queue.app.test_client()
    client.set_cookie(COOKIE, cookie, path="/admin")
    return client


def a_job(queue) -> int:  # type: ignore[no-untyped-def]
    return queue.client_for(queue.platform("p2")).sendjob({"x": 1}, tags="c")


def assert_works(queue, cookie: str) -> None:  # type: ignore[no-untyped-def]
    assert replayed(queue, cookie).get("/admin/").status_code == 200


def assert_refused(queue, cookie: str, token: str, job_id: int) -> None:  # type: ignore[no-untyped-def]
    page = replayed(queue, cookie).get("/admin/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login")
    # The old cookie with its own CSRF token: past the CSRF check, refused as no session.
    cancel = replayed(queue, cookie).post(
        f"/admin/jobs/{job_id}/cancel", data={"csrf_token": token}
    )
    assert cancel.status_code == 302 and cancel.headers["Location"].startswith("/admin/login")
    assert queue.scalar(select(Job.status).where(Job.id == job_id)) == "queued", "not cancelled"


def test_logout_ends_the_session_server_side(admin_queue):
    job_id = a_job(admin_queue)
    client = admin_queue.app.test_client()
    assert log_in(client).status_code == 302
    cookie, token = stolen_session(client)
    assert_works(admin_queue, cookie)
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert_refused(admin_queue, cookie, token, job_id)


def test_logout_ends_every_session_of_the_account(admin_queue):
    """Logging out is "log out everywhere": the other browser's session ends too."""
    job_id = a_job(admin_queue)
    laptop, phone = admin_queue.app.test_client(), admin_queue.app.test_client()
    log_in(laptop)
    log_in(phone)
    cookie, token = stolen_session(phone)
    laptop.post("/admin/logout", data={"csrf_token": csrf_of(laptop.get("/admin/"))})
    assert_refused(admin_queue, cookie, token, job_id)
    # Logging in again is a new session that works.
    assert log_in(phone).status_code == 302
    assert phone.get("/admin/").status_code == 200


def test_another_admins_logout_leaves_this_session_alone(admin_queue):
    add_admin(admin_queue, "bob")
    alice, bob = admin_queue.app.test_client(), admin_queue.app.test_client()
    log_in(alice)
    log_in(bob, "bob")
    bob.post("/admin/logout", data={"csrf_token": csrf_of(bob.get("/admin/"))})
    assert alice.get("/admin/").status_code == 200


def test_a_new_password_from_the_cli_ends_the_sessions(admin_queue):
    job_id = a_job(admin_queue)
    client = admin_queue.app.test_client()
    log_in(client)
    cookie, token = stolen_session(client)
    assert_works(admin_queue, cookie)
    changed = run_cli(
        ["admin", "passwd", "alice", "--password-stdin"],
        env=admin_queue.env,
        input="a-new-password\n",
    )
    assert "sessions are ended" in changed.stdout
    assert_refused(admin_queue, cookie, token, job_id)
    assert client.get("/admin/").status_code == 302, "the browser that was logged in, too"
    assert log_in(client, password="a-new-password").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_removing_an_admin_ends_its_sessions_even_if_the_name_is_made_again(admin_queue):
    """SQLite gives a re-made account the id of the removed one: the name and id
    of an old cookie then match again, its stamp does not."""
    job_id = a_job(admin_queue)
    client = admin_queue.app.test_client()
    log_in(client)
    cookie, token = stolen_session(client)
    assert_works(admin_queue, cookie)
    run_cli(["admin", "remove", "alice"], env=admin_queue.env)
    assert_refused(admin_queue, cookie, token, job_id)
    run_cli(
        ["admin", "add", "alice", "--password-stdin"], env=admin_queue.env, input="other-pass-1\n"
    )
    assert_refused(admin_queue, cookie, token, job_id)


def test_a_session_from_before_the_stamps_is_refused(admin_queue):
    """A cookie signed with the right key but carrying no stamp (made before the
    upgrade) or a forged-looking one is no session."""
    client = admin_queue.app.test_client()
    log_in(client)
    with client.session_transaction("/admin/") as flask_session:
        del flask_session["stamp"]
    assert client.get("/admin/").status_code == 302
    log_in(client)
    with client.session_transaction("/admin/") as flask_session:
        flask_session["stamp"] = ""
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_the_migration_gives_existing_admins_their_own_stamp(backend, request, tmp_path):
    from graderqueue.config import load_settings

    url = request.getfixturevalue("mariadb_url") if backend == "mariadb" else ""
    settings = load_settings({"instance_path": str(tmp_path), "database_url": url}, environ={})
    db = Database(settings)
    try:
        migrate.upgrade(db, "0001")
        with db.engine.begin() as conn:
            for name in ("alice", "bob"):
                conn.exec_driver_sql(
                    "INSERT INTO admin_users (username, password_hash, created_at)"
                    " VALUES (%s, %s, '2026-01-01 00:00:00')"
                    if backend == "mariadb"
                    else "INSERT INTO admin_users (username, password_hash, created_at)"
                    " VALUES (?, ?, '2026-01-01 00:00:00')",
                    (name, passwords.hash_password(PASSWORD)),
                )
        migrate.upgrade(db)
        assert migrate.is_up_to_date(db)
        with db.reading() as session:
            stamps = session.scalars(select(AdminUser.session_stamp)).all()
        assert len(stamps) == 2 and all(len(s) >= 32 for s in stamps) and len(set(stamps)) == 2
    finally:
        db.dispose()
