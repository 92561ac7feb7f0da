"""The operator's security commands, run as real processes against a real queue:
``keys rotate|list|retire``, ``platform key add|list|remove``, ``remote-user``.

Each command's effect is checked where it matters: on what the queue then
accepts or refuses over the protocol.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import select

from graderqueue.protocol import keys, tokens
from graderqueue.store.models import RemoteUser
from harness import ROOT
from harness.processes import CliError, run_cli
from harness.queue import PlatformIdentity, QueueSetup


def cli(queue: QueueSetup, *args: str, input: str | None = None, **env: str):  # type: ignore[no-untyped-def]
    return run_cli(list(args), env={**queue.env, "PYTHONPATH": str(ROOT), **env}, input=input)


def refused_cli(queue: QueueSetup, *args: str, input: str | None = None, **env: str) -> str:
    with pytest.raises(CliError) as failure:
        cli(queue, *args, input=input, **env)
    assert failure.value.returncode == 1
    assert "Traceback" not in failure.value.stderr
    return failure.value.stderr


def token_for(
    queue: QueueSetup, platform: PlatformIdentity, private_pem: str, kid: str, n: int = 1
) -> str:
    public = jwk.JWK.from_pem((queue.settings.resolved_key_dir / f"{kid}.pub.pem").read_bytes())
    payload = {"request": "sendjob", "jobdata": json.dumps({"taskPath": f"/t/{n}"}), "tags": "c"}
    return tokens.seal(payload, jwk.JWK.from_pem(private_pem.encode()), platform.name, public, kid)


def api(queue: QueueSetup, platform: PlatformIdentity, token: str) -> dict[str, Any]:
    return queue.post("/api.php", sToken=token, sPlatform=platform.name)


# -- the queue's key pairs ------------------------------------------------------


def test_a_whole_key_rotation(tmp_path: Path) -> None:
    """Add a key, both decrypt, make it active, retire the old one."""
    first = QueueSetup(tmp_path / "instance")
    try:
        first.tag("c")
        first.server_type("t-c", ["c"])
        platform = first.platform("plat")
        out = cli(first, "keys", "rotate", "--name", "gq-2").stdout
        key_dir = first.settings.resolved_key_dir
        assert "`graderqueue` stays active" in out
        assert 'key_name = "gq-2"' in out
        assert "keys retire graderqueue" in out
        assert out.endswith("Key name: gq-2\n" + (key_dir / "gq-2.pub.pem").read_text())
        assert stat.S_IMODE((key_dir / "gq-2.pem").stat().st_mode) == 0o600
        assert "PRIVATE" not in out

        listed = cli(first, "keys", "list").stdout.splitlines()
        assert [line.split("\t")[::2] for line in listed] == [
            ["graderqueue", "active"],
            ["gq-2", "decrypt only"],
        ]
        # The app started after the rotation decrypts for either kid.
        for n, kid in enumerate(["graderqueue", "gq-2"]):
            assert (
                api(first, platform, token_for(first, platform, platform.private_pem, kid, n))[
                    "errorcode"
                ]
                == 0
            ), kid
    finally:
        first.close()

    second = QueueSetup(tmp_path / "instance", key_name="gq-2")
    try:
        shown = cli(second, "keys", "show").stdout
        assert shown.startswith("Key name: gq-2\n")
        for n, kid in enumerate(["graderqueue", "gq-2"], start=10):
            assert (
                api(second, platform, token_for(second, platform, platform.private_pem, kid, n))[
                    "errorcode"
                ]
                == 0
            ), kid
        assert "active key" in refused_cli(second, "keys", "retire", "gq-2")
        assert "No key named" in refused_cli(second, "keys", "retire", "nope")
        out = cli(second, "keys", "retire", "graderqueue").stdout
        assert "moved to" in out
        retired = second.settings.resolved_key_dir / "retired"
        assert (retired / "graderqueue.pem").exists()
        assert [
            line.split("\t")[0] for line in cli(second, "keys", "list").stdout.splitlines()
        ] == ["gq-2"]
    finally:
        second.close()

    third = QueueSetup(tmp_path / "instance", key_name="gq-2")
    try:
        old = token_for(third, platform, platform.private_pem, "gq-2", 20)
        assert api(third, platform, old)["errorcode"] == 0
        # Made for the retired key: nothing to decrypt it with any more.
        public_old = jwk.JWK.from_pem((retired / "graderqueue.pub.pem").read_bytes())
        stale = tokens.seal(
            {"request": "test"},
            jwk.JWK.from_pem(platform.private_pem.encode()),
            platform.name,
            public_old,
            "graderqueue",
        )
        answer = api(third, platform, stale)
        assert answer["errorcode"] == 2
        assert "encrypted to key `graderqueue`, but the queue's key is `gq-2`" in answer["errormsg"]
    finally:
        third.close()


def test_rotate_picks_a_dated_name_and_never_overwrites(tmp_path: Path) -> None:
    setup = QueueSetup(tmp_path / "instance")
    try:
        today = datetime.now(UTC).strftime("%Y%m%d")
        first = cli(setup, "keys", "rotate").stdout
        assert f"Key name: graderqueue-{today}\n" in first
        second = cli(setup, "keys", "rotate").stdout
        assert f"Key name: graderqueue-{today}-2\n" in second
        before = (setup.settings.resolved_key_dir / "graderqueue.pem").read_bytes()
        assert "already exists" in refused_cli(setup, "keys", "rotate", "--name", "graderqueue")
        assert "Invalid key name" in refused_cli(setup, "keys", "rotate", "--name", "../x")
        assert (setup.settings.resolved_key_dir / "graderqueue.pem").read_bytes() == before
    finally:
        setup.close()


# -- platforms' keys --------------------------------------------------------------


def test_platform_key_add_list_remove(sqlite_queue: QueueSetup, tmp_path: Path) -> None:
    platform = sqlite_queue.platform("plat")
    new_private, new_public = keys.generate_rsa_pem()
    new_file = tmp_path / "new.pub.pem"
    new_file.write_bytes(new_public)
    old_fp, new_fp = keys.fingerprint(platform.public_pem), keys.fingerprint(new_public.decode())

    out = cli(sqlite_queue, "platform", "key", "add", "plat", "--public-key", str(new_file))
    assert f"Key {new_fp[:16]} active for platform `plat` (2 active)" in out.stdout
    listed = cli(sqlite_queue, "platform", "key", "list", "plat").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [[old_fp, "active"], [new_fp, "active"]]

    kid = sqlite_queue.settings.key_name
    old_token = token_for(sqlite_queue, platform, platform.private_pem, kid, 1)
    new_token = token_for(sqlite_queue, platform, new_private.decode(), kid, 2)
    assert api(sqlite_queue, platform, old_token)["errorcode"] == 0
    assert api(sqlite_queue, platform, new_token)["errorcode"] == 0

    out = cli(sqlite_queue, "platform", "key", "remove", "plat", old_fp[:10])
    assert f"Key {old_fp[:16]} no longer accepted for platform `plat` (1 active)" in out.stdout
    listed = cli(sqlite_queue, "platform", "key", "list", "plat").stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [[old_fp, "removed"], [new_fp, "active"]]
    answer = api(
        sqlite_queue, platform, token_for(sqlite_queue, platform, platform.private_pem, kid, 3)
    )
    assert answer["errorcode"] == 2
    assert "signature cannot be verified" in answer["errormsg"]
    again = token_for(sqlite_queue, platform, new_private.decode(), kid, 4)
    assert api(sqlite_queue, platform, again)["errorcode"] == 0

    before = sqlite_queue.snapshot()
    assert "last active key" in refused_cli(
        sqlite_queue, "platform", "key", "remove", "plat", new_fp[:10]
    )
    assert "at least 8" in refused_cli(
        sqlite_queue, "platform", "key", "remove", "plat", new_fp[:4]
    )
    assert "does not exist" in refused_cli(
        sqlite_queue, "platform", "key", "add", "nope", "--public-key", str(new_file)
    )
    private_file = tmp_path / "private.pem"
    private_file.write_bytes(new_private)
    assert "private key" in refused_cli(
        sqlite_queue, "platform", "key", "add", "plat", "--public-key", str(private_file)
    )
    assert sqlite_queue.snapshot() == before


# -- remote users -------------------------------------------------------------------


def remote(queue: QueueSetup, user: str, password: str, request: Any) -> dict[str, Any]:
    return queue.post("/api.php", rRequest=json.dumps(request), rUsername=user, rPassword=password)


def test_remote_users_are_stored_with_argon2(sqlite_queue: QueueSetup) -> None:
    password = "correct horse battery staple"
    out = cli(
        sqlite_queue, "remote-user", "add", "alice", "--password-stdin", input=password + "\n"
    )
    assert out.stdout == "Remote user `alice` added.\n"
    assert password not in out.stdout + out.stderr

    stored = sqlite_queue.scalar(
        select(RemoteUser.password_hash).where(RemoteUser.username == "alice")
    )
    assert stored.startswith("$argon2id$")
    assert password not in repr(sqlite_queue.snapshot())

    assert remote(sqlite_queue, "alice", password, {"request": "test"}) == {
        "errorcode": 0,
        "errormsg": "Connected as user alice",
    }
    for user, given in [("alice", "wrong"), ("alice", ""), ("bob", password)]:
        answer = remote(sqlite_queue, user, given, {"request": "test"})
        assert answer == {"errorcode": 2, "errormsg": "Username/password invalid."}, (user, given)

    # Bad JSON, however deeply nested, is a clear refusal (not an internal error).
    for bad in ("{", "[" * 5000, "[]"):
        answer = sqlite_queue.post("/api.php", rRequest=bad, rUsername="alice", rPassword=password)
        assert answer["errorcode"] == 2, answer
        assert answer["errormsg"].startswith("rRequest is not"), answer

    # A remote user queues jobs like a platform (without one).
    queued = remote(
        sqlite_queue,
        "alice",
        password,
        {"request": "sendjob", "jobdata": {"taskPath": "/t"}, "tags": "c"},
    )
    assert queued["errorcode"] == 0, queued


def test_remote_user_commands(sqlite_queue: QueueSetup) -> None:
    # The prompt asks twice (confirmation); piped input answers it.
    cli(sqlite_queue, "remote-user", "add", "carol", input="first-pass\nfirst-pass\n")
    assert "already exists" in refused_cli(
        sqlite_queue, "remote-user", "add", "carol", "--password-stdin", input="x\n"
    )
    assert "must not be empty" in refused_cli(
        sqlite_queue, "remote-user", "add", "dave", "--password-stdin", input="\n"
    )
    assert "Invalid user name" in refused_cli(
        sqlite_queue, "remote-user", "add", " dave", "--password-stdin", input="x\n"
    )
    assert cli(sqlite_queue, "remote-user", "list").stdout == "1\tcarol\n"

    cli(sqlite_queue, "remote-user", "passwd", "carol", "--password-stdin", input="second-pass\n")
    assert remote(sqlite_queue, "carol", "first-pass", {"request": "test"})["errorcode"] == 2
    assert remote(sqlite_queue, "carol", "second-pass", {"request": "test"})["errorcode"] == 0

    cli(sqlite_queue, "remote-user", "remove", "carol")
    assert remote(sqlite_queue, "carol", "second-pass", {"request": "test"})["errorcode"] == 2
    assert "No remote user" in refused_cli(sqlite_queue, "remote-user", "remove", "carol")
