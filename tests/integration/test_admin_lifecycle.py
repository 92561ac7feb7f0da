"""The life-cycle actions from the admin pages, on SQLite and MariaDB: logged in, with
the session's CSRF token, destructive ones asked first (docs/LIFECYCLE.md)."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from graderqueue.client import ClientError
from graderqueue.protocol import keys
from graderqueue.store.models import (
    Platform,
    PlatformKey,
    Server,
    ServerToken,
    ServerType,
    Tag,
)
from tests.integration.test_admin_auth import add_admin, csrf_of, log_in
from tests.integration.test_lifecycle_cli import logged, poll, status, types_of

pytestmark = pytest.mark.queue_settings(poll_wait_sec=0)


class Admin:
    """A logged-in admin's browser, without a browser: the app's test client."""

    def __init__(self, queue, name: str = "alice") -> None:  # type: ignore[no-untyped-def]
        add_admin(queue, name)
        self.queue = queue
        self.client = queue.app.test_client()
        log_in(self.client, name)
        self.csrf = csrf_of(self.client.get("/admin/"))

    def page(self, path: str) -> str:
        answer = self.client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        return html.unescape(answer.get_data(as_text=True))

    def post(self, path: str, **form):  # type: ignore[no-untyped-def]
        data = {"csrf_token": self.csrf, **form}
        return self.client.post(path, data=data)

    def act(self, path: str, **form) -> str:  # type: ignore[no-untyped-def]
        """Post, follow the redirect; the page's flash messages."""
        answer = self.post(path, **form)
        assert answer.status_code == 302, (path, answer.status_code)
        shown = html.unescape(self.client.get(answer.headers["Location"]).get_data(as_text=True))
        return " ".join(re.findall(r'<p class="flash [a-z]+" role="status">([^<]*)</p>', shown))

    def asked(self, path: str, **form) -> str:  # type: ignore[no-untyped-def]
        """A destructive action's first step: a confirmation page, and nothing changed."""
        before = self.queue.snapshot()
        answer = self.post(path, **form)
        assert answer.status_code == 200, (path, answer.status_code)
        page = html.unescape(answer.get_data(as_text=True))
        assert 'name="confirmed" value="yes"' in page
        assert self.queue.snapshot() == before, f"{path}: changed before being confirmed"
        return page


def row_id(queue, model, name: str) -> int:  # type: ignore[no-untyped-def]
    return queue.scalar(select(model.id).where(model.name == name))


def test_platforms_show_fair_share_and_are_edited_disabled_and_enabled(queue):
    admin = Admin(queue)
    light, heavy = queue.platform("light"), queue.platform("heavy")
    queue.client_for(light).sendjob({"x": 1}, tags="c")
    queue.client_for(heavy).sendjob({"x": 2}, tags="c")
    queue.client_for(heavy).sendjob({"x": 3}, tags="c")
    admin.act(f"/admin/platforms/{heavy.id}", weight="3", max_queued="10")
    listing = admin.page("/admin/platforms")
    assert re.search(r"heavy</a></td>.*?>3</td>\s*<td class=\"num\">75.0 %</td>", listing, re.S)
    assert re.search(r"light</a></td>.*?>1</td>\s*<td class=\"num\">25.0 %</td>", listing, re.S)
    assert ">2</a> / 10<" in listing, "heavy: 2 waiting of at most 10"

    _private, public = keys.generate_rsa_pem()
    said = admin.act(f"/admin/platforms/{light.id}", return_url="https://light.example/r",
                     restrict_paths="", force_tag="java", require_fresh_shown="1",
                     require_fresh="on", weight="1", max_queued="", add_key=public.decode(),
                     remove_key=keys.fingerprint(light.public_pem))  # fmt: skip
    assert said.startswith("Platform light updated: return_url"), said
    row = queue.rows(select(Platform).where(Platform.id == light.id))[0][0]
    assert (row.return_url, row.require_fresh) == ("https://light.example/r", True)
    assert row.force_tag_id == row_id(queue, Tag, "java")
    assert queue.rows(
        select(PlatformKey.fingerprint).where(
            PlatformKey.platform_id == light.id, PlatformKey.active.is_(True)
        )
    ) == [(keys.fingerprint(public.decode()),)]
    assert logged(queue, "platform_updated")[-1].endswith("; by admin alice")

    before = queue.snapshot()
    said = admin.act(f"/admin/platforms/{light.id}", weight="heavy", return_url="")
    assert said == "The weight must be a number." and queue.snapshot() == before
    said = admin.act(f"/admin/platforms/{light.id}", require_fresh_shown="1", weight="0")
    assert said == "The weight must be between 1 and 1000." and queue.snapshot() == before

    assert "Platform heavy disabled." in admin.act(f"/admin/platforms/{heavy.id}/disable")
    with pytest.raises(ClientError, match=r"No valid authentication provided\."):
        queue.client_for(heavy).sendjob({"x": 4}, tags="c")
    assert "disabled" in admin.page("/admin/platforms")
    admin.act(f"/admin/platforms/{heavy.id}/enable")
    queue.client_for(heavy).sendjob({"x": 4}, tags="c")
    assert logged(queue, "platform_enabled") == ["platform heavy enabled; by admin alice"]


def test_platform_removal_asks_first_and_will_not_strand_its_jobs(queue):
    admin = Admin(queue)
    p2 = queue.platform("p2")
    job_id = queue.client_for(p2).sendjob({"x": 1}, tags="c")
    page = admin.asked(f"/admin/platforms/{p2.id}/remove")
    assert "It has 1 live job(s)" in page and 'name="cancel_jobs"' in page

    before = queue.snapshot()
    said = admin.act(f"/admin/platforms/{p2.id}/remove", confirmed="yes")
    assert "would strand them" in said and queue.snapshot() == before
    said = admin.act(f"/admin/platforms/{p2.id}/remove", confirmed="yes", cancel_jobs="on")
    assert said == "Platform p2 removed; 1 live job(s) cancelled."
    assert row_id(queue, Platform, "p2") is None and status(queue, job_id) is None
    assert admin.client.get(f"/admin/platforms/{p2.id}").status_code == 404


def test_a_server_is_edited_drained_and_removed_from_its_page(queue):
    admin = Admin(queue)
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    poll(queue, token)
    server_id = row_id(queue, Server, "token1-127.0.0.1")
    job_id = client.sendjob({"x": 1}, tags="c")

    assert "drained" in admin.act(f"/admin/servers/{server_id}/drain")
    assert poll(queue, token)["errorcode"] == 1, "a drained server gets nothing"
    assert re.search(r"<span class=\"badge st-held\">drained</span>", admin.page("/admin/servers"))
    assert "undrained" in admin.act(f"/admin/servers/{server_id}/undrain")
    assert poll(queue, token)["jobid"] == job_id
    assert logged(queue, "server_drained") == ["drained by admin alice"]

    said = admin.act(f"/admin/servers/{server_id}", type="t-java", max_jobs="2",
                     wakeup_url="udp://127.0.0.1:20002", wakeup_secret="")  # fmt: skip
    assert "type t-java (was t-c)" in said
    server = queue.rows(select(Server).where(Server.id == server_id))[0][0]
    assert (server.max_concurrent_jobs, server.wakeup_url) == (2, "udp://127.0.0.1:20002")
    before = queue.snapshot()
    said = admin.act(f"/admin/servers/{server_id}", type="t-c", max_jobs="x", wakeup_url="")
    assert said == "Max jobs must be a number (0: no limit)." and queue.snapshot() == before

    page = admin.asked(f"/admin/servers/{server_id}/remove")
    assert "The 1 job(s) it is grading go back to the queue" in page
    assert "registers again" in page
    said = admin.act(f"/admin/servers/{server_id}/remove", confirmed="yes")
    assert said == "Server token1-127.0.0.1 removed; 1 job(s) it held queued again."
    assert status(queue, job_id) == "queued"


def test_server_tokens_are_rotated_and_revoked_from_the_servers_page(queue):
    admin = Admin(queue)
    old = queue.server_token("t-c", "cloud")
    poll(queue, old)
    token_id = row_id(queue, ServerToken, "cloud")
    assert 'id="token-' in admin.page("/admin/servers")

    admin.asked(f"/admin/tokens/{token_id}/rotate")
    answer = admin.post(f"/admin/tokens/{token_id}/rotate", confirmed="yes")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    new = re.search(r'<pre class="secret" id="new-token">([^<]+)</pre>', answer.get_data(True))
    assert new and new.group(1) != old
    assert poll(queue, old)["errorcode"] == 3 and poll(queue, new.group(1))["errorcode"] == 1
    assert new.group(1) not in admin.page("/admin/servers"), "shown once"

    page = admin.asked(f"/admin/tokens/{token_id}/revoke")
    assert "(cloud-127.0.0.1) can no longer authenticate" in page
    said = admin.act(f"/admin/tokens/{token_id}/revoke", confirmed="yes")
    assert "servers removed: cloud-127.0.0.1" in said
    assert poll(queue, new.group(1))["errorcode"] == 3
    assert queue.rows(select(ServerToken.id)) == [] and queue.rows(select(Server.id)) == []


def test_types_tags_and_dispatch_from_the_types_page(queue):
    admin = Admin(queue)
    client = queue.client_for(queue.platform("p2"))
    token = queue.server_token("t-c")
    t_c, t_java = row_id(queue, ServerType, "t-c"), row_id(queue, ServerType, "t-java")
    said = admin.act(f"/admin/types/{t_c}", tags=["c", "gpu"])
    assert said.startswith("Server type t-c now handles tags: c, gpu.")
    assert types_of(queue, client.sendjob({"x": 1}, tags="gpu")) == {"t-c"}
    handed = poll(queue, token)["jobid"]
    queue.post("/sendresults.php", server_token=token, jobid=str(handed),
               resultdata='{"errorcode": 0, "errormsg": "ok", "jobdata": {}}')  # fmt: skip

    admin.act(f"/admin/types/{t_c}/pause")
    assert '<span class="badge st-held">paused</span>' in admin.page("/admin/types")
    assert '<span class="badge st-held">paused</span>' in admin.page("/admin/")
    waiting = client.sendjob({"x": 2}, tags="c")
    assert poll(queue, token)["errorcode"] == 1
    admin.act(f"/admin/types/{t_c}/resume")
    assert admin.act("/admin/dispatch/pause").startswith("Dispatch paused for every type")
    assert "Dispatch is paused" in admin.page("/admin/servers")
    assert poll(queue, token)["errorcode"] == 1
    admin.act("/admin/dispatch/resume")
    assert poll(queue, token)["jobid"] == waiting
    assert logged(queue, "dispatch_paused") == [
        "type t-c paused by admin alice", "the queue paused by admin alice"
    ]  # fmt: skip

    only_java = client.sendjob({"x": 3}, tags="java")
    page = admin.asked(f"/admin/types/{t_java}/remove")
    assert "1 unfinished job(s) can run only on it" in page and 'name="move_jobs_to"' in page
    said = admin.act(f"/admin/types/{t_java}/remove", confirmed="yes", move_jobs_to="t-c")
    assert said == "Server type t-java removed; its jobs now go to t-c."
    assert types_of(queue, only_java) == {"t-c"}

    java = row_id(queue, Tag, "java")
    page = admin.asked(f"/admin/tags/{java}/remove")
    assert "1 live job(s) carry it" in page and 'name="jobs"' in page
    said = admin.act(f"/admin/tags/{java}/remove", confirmed="yes", jobs="keep")
    assert said == "Tag java removed." and status(queue, only_java) == "queued"


def test_admins_remove_other_admins_never_themselves(queue):
    admin = Admin(queue)
    add_admin(queue, "bob")
    accounts = admin.page("/admin/accounts")
    ids = dict(re.findall(r'<tr id="account-(\d+)">\s*<td>(\w+)', accounts))
    ids = {name: int(i) for i, name in ids.items()}
    admin.asked(f"/admin/accounts/{ids['bob']}/remove")
    said = admin.act(f"/admin/accounts/{ids['bob']}/remove", confirmed="yes")
    assert said == "Admin bob removed."
    assert logged(queue, "admin_removed") == ["admin bob; by admin alice"]
    said = admin.act(f"/admin/accounts/{ids['alice']}/remove", confirmed="yes")
    assert said == "You cannot remove the account you are logged in with."
    assert admin.client.get("/admin/").status_code == 200


def test_every_action_needs_the_sessions_csrf_token(queue):
    admin = Admin(queue)
    p2 = queue.platform("p2")
    queue.server_token("t-c")
    poll(queue, queue.server_token("t-c", "cloud"))
    server_id = queue.scalar(select(Server.id))
    token_id = row_id(queue, ServerToken, "cloud")
    type_id, tag_id = row_id(queue, ServerType, "t-c"), row_id(queue, Tag, "gpu")
    before = queue.snapshot()
    for path in (
        f"/admin/platforms/{p2.id}", f"/admin/platforms/{p2.id}/disable",
        f"/admin/platforms/{p2.id}/remove", f"/admin/servers/{server_id}",
        f"/admin/servers/{server_id}/drain", f"/admin/servers/{server_id}/remove",
        f"/admin/tokens/{token_id}/rotate", f"/admin/tokens/{token_id}/revoke",
        f"/admin/types/{type_id}", f"/admin/types/{type_id}/pause",
        f"/admin/types/{type_id}/remove", f"/admin/tags/{tag_id}/remove",
        "/admin/dispatch/pause", "/admin/accounts/1/remove",
    ):  # fmt: skip
        answer = admin.client.post(path, data={"confirmed": "yes", "csrf_token": "guess"})
        assert answer.status_code == 400, path
    assert queue.snapshot() == before
