"""Admin login throttling by account and by address, kept in the database
(so it holds across workers and nodes), on SQLite and MariaDB."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from graderqueue.identity import passwords
from graderqueue.maintenance import cron
from graderqueue.store.models import LoginThrottle
from graderqueue.web import create_app
from harness.processes import run_cli
from tests.integration.test_admin_auth import PASSWORD, add_admin, csrf_of

WINDOW = 900  # the default admin_login_window_sec


@pytest.fixture
def admin_queue(queue):  # type: ignore[no-untyped-def]
    add_admin(queue)
    return queue


@pytest.fixture
def hashes(monkeypatch):  # type: ignore[no-untyped-def]
    """How many passwords the app checked: the real verify(), counted."""
    calls = []
    real = passwords.verify

    def counted(password_hash, password):  # type: ignore[no-untyped-def]
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "verify", counted)
    return calls


def attempt(app, name: str, password: str, address: str = "192.0.2.1", **headers: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf_of(client.get("/admin/login"))
    return client.post(
        "/admin/login",
        data={"username": name, "password": password, "csrf_token": token},
        headers=headers,
    )


def refused(answer) -> bool:  # type: ignore[no-untyped-def]
    text = answer.get_data(as_text=True)
    if answer.status_code != 429:
        return False
    assert "Too many failed log-ins" in text and "try again in 15 minutes" in text, text
    assert 1 <= int(answer.headers["Retry-After"]) <= WINDOW
    return True


def end_the_window(queue) -> None:  # type: ignore[no-untyped-def]
    """What WINDOW seconds of waiting does to the counts, without the wait."""
    with queue.db.transaction() as session:
        for row in session.scalars(select(LoginThrottle)):
            row.window_start -= timedelta(seconds=WINDOW)


def test_forty_wrong_passwords_then_the_right_one_is_refused_until_the_window_ends(
    admin_queue, hashes
):
    app = admin_queue.app
    answers = [attempt(app, "alice", f"wrong-{i}") for i in range(40)]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    assert all(refused(a) for a in answers[5:])
    right = attempt(app, "alice", PASSWORD)
    assert refused(right), "even the right password"
    assert len(hashes) == 5, "a throttled attempt costs no password hash"
    # Another address does not help: the account is throttled.
    assert refused(attempt(app, "alice", PASSWORD, address="198.51.100.7"))

    end_the_window(admin_queue)
    assert attempt(app, "alice", PASSWORD).status_code == 302
    # The success cleared the account's count; the window's rows are gone.
    subjects = set(admin_queue.rows(select(LoginThrottle.subject)))
    assert ("account:alice",) not in subjects


def test_unknown_names_and_other_spellings_count_like_the_account(admin_queue):
    app = admin_queue.app
    for i in range(5):
        assert attempt(app, "ALICE " if i % 2 else "Alice", "wrong").status_code == 401
    assert refused(attempt(app, "alice", PASSWORD))
    for _ in range(5):
        assert attempt(app, "nobody", "wrong").status_code == 401
    assert refused(attempt(app, "nobody", "wrong")), "the same answer as for a real account"


def test_a_success_starts_the_accounts_count_afresh(admin_queue):
    app = admin_queue.app
    for _ in range(3):
        for _ in range(4):
            assert attempt(app, "alice", "wrong").status_code == 401
        assert attempt(app, "alice", PASSWORD).status_code == 302


def test_one_address_trying_many_accounts_is_throttled(admin_queue, hashes):
    app = admin_queue.app
    answers = [attempt(app, f"user{i}", "wrong", address="203.0.113.9") for i in range(25)]
    assert [a.status_code for a in answers[:20]] == [401] * 20
    assert all(refused(a) for a in answers[20:])
    assert len(hashes) == 20
    assert refused(attempt(app, "alice", PASSWORD, address="203.0.113.9"))
    # Alice from elsewhere is not affected.
    assert attempt(app, "alice", PASSWORD, address="198.51.100.7").status_code == 302


def test_a_forged_address_header_does_not_escape_the_address_limit(admin_queue):
    """X-Real-IP is believed only from a trusted proxy (none by default)."""
    app = admin_queue.app
    for i in range(20):
        answer = attempt(
            app, f"user{i}", "wrong", address="203.0.113.9", **{"X-Real-IP": f"10.0.0.{i}"}
        )
        assert answer.status_code == 401
    assert refused(
        attempt(app, "user99", "wrong", address="203.0.113.9", **{"X-Real-IP": "10.9.9.9"})
    )


@pytest.mark.queue_settings(trusted_proxies=["127.0.0.1"])
def test_behind_a_trusted_proxy_the_clients_address_is_counted(admin_queue):
    app = admin_queue.app
    for i in range(20):
        assert (
            attempt(
                app, f"user{i}", "wrong", address="127.0.0.1", **{"X-Real-IP": "203.0.113.9"}
            ).status_code
            == 401
        )
    assert refused(
        attempt(app, "alice", PASSWORD, address="127.0.0.1", **{"X-Real-IP": "203.0.113.9"})
    )
    proxied = attempt(app, "alice", PASSWORD, address="127.0.0.1", **{"X-Real-IP": "198.51.100.7"})
    assert proxied.status_code == 302


def test_parallel_attempts_on_two_app_nodes_share_the_limit(admin_queue, hashes):
    """Two apps on one database (two nodes), 30 wrong passwords at once: only the
    limit's worth of them is checked, the rest refused."""
    other = create_app(admin_queue.settings)
    try:
        apps = [admin_queue.app, other]
        codes: list[int] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            answer = attempt(apps[i % 2], "alice", f"wrong-{i}", address=f"198.51.100.{i}")
            with lock:
                codes.append(answer.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [401] * 5 + [429] * 25
        assert len(hashes) == 5
        count = admin_queue.scalar(
            select(LoginThrottle.attempts).where(LoginThrottle.subject == "account:alice")
        )
        assert count == 30
    finally:
        other.extensions["graderqueue"].hints.close()
        other.extensions["graderqueue"].db.dispose()


def test_an_attempt_restarts_its_own_expired_counts_and_cron_deletes_the_rest(admin_queue):
    """An attempt touches only its own two rows (so concurrent attempts never
    deadlock on MariaDB); the hourly cron deletes every count whose window is over."""
    app = admin_queue.app
    for i in range(10):
        attempt(app, f"user{i}", "wrong", address=f"192.0.2.{i}")
    assert admin_queue.scalar(select(func.count()).select_from(LoginThrottle)) == 20
    end_the_window(admin_queue)
    attempt(app, "user0", "wrong", address="192.0.2.0")
    counts = dict(admin_queue.rows(select(LoginThrottle.subject, LoginThrottle.attempts)))
    assert (counts["account:user0"], counts["address:192.0.2.0"]) == (1, 1), "afresh"
    assert len(counts) == 20, "the others wait for cron"

    report = cron.run(admin_queue.db, admin_queue.settings, hourly=True)
    assert report.purged["log-in counts"] == 18
    assert set(admin_queue.rows(select(LoginThrottle.subject))) == {
        ("account:user0",),
        ("address:192.0.2.0",),
    }


@pytest.mark.queue_settings(admin_login_account_limit=2, admin_login_window_sec=60)
def test_the_limits_are_settings(admin_queue):
    app = admin_queue.app
    assert attempt(app, "alice", "wrong").status_code == 401
    assert attempt(app, "alice", "wrong").status_code == 401
    answer = attempt(app, "alice", PASSWORD)
    assert answer.status_code == 429 and "try again in 1 minute." in answer.get_data(as_text=True)
    assert 1 <= int(answer.headers["Retry-After"]) <= 60


def test_the_cli_unlocks_a_throttled_account(admin_queue):
    app = admin_queue.app
    for _ in range(6):
        attempt(app, "alice", "wrong")
    assert refused(attempt(app, "alice", PASSWORD))
    unlocked = run_cli(["admin", "unlock", "Alice"], env=admin_queue.env)
    assert "Login attempts of `Alice` forgotten." in unlocked.stdout
    assert attempt(app, "alice", PASSWORD).status_code == 302
    again = run_cli(["admin", "unlock", "alice"], env=admin_queue.env)
    assert "`alice` was not throttled." in again.stdout


@pytest.mark.mariadb
def test_spellings_that_mariadb_takes_for_the_account_share_its_budget(mariadb_url, tmp_path):
    """MariaDB's collation finds `alice` for `ÁLICE` or `alïce`: one budget for all."""
    from harness.queue import QueueSetup

    queue = QueueSetup(tmp_path / "instance", mariadb_url)
    try:
        add_admin(queue)
        app = queue.app
        spellings = ["alice", "ALICE", "álice", "alïce", "ÀLICE", "alicé", "alIce"]
        answers = [attempt(app, name, "wrong", address=f"192.0.2.{i}")
                   for i, name in enumerate(spellings)]  # fmt: skip
        assert [a.status_code for a in answers[:5]] == [401] * 5
        assert all(refused(a) for a in answers[5:])
    finally:
        queue.close()
