"""The `graderqueue` command as an operator uses it: real subprocesses, real SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from graderqueue.protocol.keys import generate_rsa_pem
from harness.processes import run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    return {"GRADERQUEUE_INSTANCE_PATH": str(tmp_path / "inst"), "GRADERQUEUE_CONFIG": None}


@pytest.fixture
def platform_key(tmp_path: Path) -> Path:
    _, public = generate_rsa_pem()
    path = tmp_path / "platform.pub.pem"
    path.write_bytes(public)
    return path


def cli(env, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run_cli(list(args), env=env, check=check)


def test_setup_from_scratch(env, platform_key, tmp_path):
    out = cli(env, "init").stdout
    assert "Database ready" in out
    key_file = tmp_path / "inst" / "keys" / "graderqueue.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "created" in out
    assert "kept" in cli(env, "init").stdout  # idempotent: the key is never replaced

    shown = cli(env, "keys", "show").stdout
    assert shown.startswith("Key name: graderqueue\n-----BEGIN PUBLIC KEY-----")

    cli(env, "tag", "add", "c")
    cli(env, "tag", "add", "java")
    cli(env, "type", "add", "general", "--tags", "c,java")
    cli(env, "platform", "add", "plat", "--public-key", str(platform_key),
        "--return-url", "https://platform.example/results", "--force-tag", "c")  # fmt: skip
    cli(env, "server", "add", "grader1", "--type", "general", "--ssl-serial", "0A:1B",
        "--ssl-dn", "CN=Queue CA,O=Example", "--wakeup-url", "udp://127.0.0.1:20000",
        "--max-jobs", "2")  # fmt: skip
    token = cli(env, "server-token", "add", "cloud", "--type", "general").stdout.strip()
    assert len(token) >= 40

    assert "general\tc,java" in cli(env, "type", "list").stdout
    assert "plat\thttps://platform.example/results" in cli(env, "platform", "list").stdout
    assert "grader1" in cli(env, "server", "list").stdout
    assert cli(env, "job", "list").stdout == "No jobs.\n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One queue for all refusals: a refusal that changed anything fails its own test."""
    from harness.queue import QueueSetup

    base = tmp_path_factory.mktemp("refusals")
    env = {"GRADERQUEUE_INSTANCE_PATH": str(base / "inst"), "GRADERQUEUE_CONFIG": None}
    cli(env, "init")
    cli(env, "tag", "add", "c")
    cli(env, "type", "add", "general", "--tags", "c")
    _, public = generate_rsa_pem()
    (base / "platform.pub.pem").write_bytes(public)
    (base / "garbage.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
    )
    setup = QueueSetup(base / "inst")
    yield env, base, setup
    setup.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "add", "c"], "already exists"),
        (["tag", "add", "a,b"], "comma"),
        (["type", "add", "t2", "--tags", "c,nosuchtag"], "unrecognized"),
        (["platform", "add", "p", "--public-key", "/nonexistent.pem"], "Cannot read"),
        (["platform", "add", "p", "--public-key", "{garbage}"], "Invalid public key"),
        (["platform", "add", "p", "--public-key", "{key}", "--force-tag", "zz"], "unrecognized"),
        (["platform", "add", "p", "--public-key", "{key}", "--return-url", "ftp://x"], "http"),
        (
            ["server", "add", "s", "--type", "nosuchtype", "--ssl-serial", "1", "--ssl-dn", "CN=x"],
            "does not exist",
        ),
        (
            ["server", "add", "s", "--type", "general", "--ssl-serial", "zz", "--ssl-dn", "CN=x"],
            "serial",
        ),
        (
            [
                "server",
                "add",
                "s",
                "--type",
                "general",
                "--ssl-serial",
                "1",
                "--ssl-dn",
                "CN=x",
                "--wakeup-url",
                "http://x",
            ],
            "udp://",
        ),
        (["server-token", "add", "t", "--type", "general", "--max-jobs", "-1"], "max jobs"),
        (["job", "show", "99"], "No job #99"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(registry, args, message):
    env, base, setup = registry
    args = [
        a.replace("{key}", str(base / "platform.pub.pem")).replace(
            "{garbage}", str(base / "garbage.pem")
        )
        for a in args
    ]
    before = setup.snapshot()
    result = cli(env, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert setup.snapshot() == before


def test_bad_configuration_is_a_clear_error(env, tmp_path):
    config = tmp_path / "gq.toml"
    config.write_text("max_fails = 'two'\n")
    result = cli({**env, "GRADERQUEUE_CONFIG": str(config)}, "tag", "list", check=False)
    assert result.returncode != 0
    assert "max_fails" in result.stderr
    assert "Traceback" not in result.stderr


def test_job_show_prints_the_job(env, platform_key, tmp_path):
    cli(env, "init")
    cli(env, "tag", "add", "c")
    cli(env, "type", "add", "general", "--tags", "c")
    from harness.queue import QueueSetup

    setup = QueueSetup(tmp_path / "inst")
    client = setup.client_for(setup.platform("p"))
    jobid = client.sendjob({"taskPath": "/x"}, jobname="shown", tags="c")
    setup.close()
    shown = json.loads(cli(env, "job", "show", str(jobid)).stdout)
    assert shown["origin"] == "queue"
    assert shown["name"] == "shown"
    assert shown["jobdata"] == {"taskPath": "/x"}
    assert shown["received_time"].endswith(" UTC")
    listed = cli(env, "job", "list", "--status", "queued").stdout
    assert re.search(
        rf"^{jobid}\tqueued\t.*\t\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\tshown$", listed, re.M
    )


def test_commands_before_init_say_so(env):
    result = cli(env, "tag", "list", check=False)
    assert result.returncode != 0
    assert "graderqueue init" in result.stderr
    assert "Traceback" not in result.stderr


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    import click

    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_command_has_help_that_is_not_cut_off(env):
    import click

    from graderqueue.cli import cli as root

    commands = dict(_commands(root))
    groups = [()] + [path for path, command in commands.items() if isinstance(command, click.Group)]
    for path in groups:
        listing = cli(env, *path, "--help").stdout
        shown = listing.split("Commands:\n", 1)[1].splitlines()
        assert not any(line.endswith("...") for line in shown), listing
        # Each line is "  NAME  SHORT HELP": no command without its line of text.
        assert all(len(line.split(None, 1)) == 2 for line in shown), listing
    for path, command in commands.items():
        assert (command.help or "").strip(), f"graderqueue {' '.join(path)} has no description"
        assert len(command.get_short_help_str(limit=1000)) <= 60, path


def test_empty_listings_say_so(env):
    cli(env, "init")
    for args, line in [
        (["tag", "list"], "No tags."),
        (["type", "list"], "No server types."),
        (["platform", "list"], "No platforms."),
        (["server", "list"], "No servers."),
        (["server-token", "list"], "No server tokens."),
        (["remote-user", "list"], "No remote users."),
        (["job", "list"], "No jobs."),
        (["job", "list", "--status", "queued"], "No jobs with status queued."),
    ]:
        assert cli(env, *args).stdout == line + "\n"


def test_a_type_without_tags_says_what_it_will_run(env):
    cli(env, "init")
    out = cli(env, "type", "add", "y").stdout
    assert "Server type `y` added" in out
    assert "only jobs that end up with no tag at all" in out
    assert "sent without tags by a platform that forces none" in out

    cli(env, "tag", "add", "c")
    with_defaults = cli({**env, "GRADERQUEUE_DEFAULT_TAGS": "c"}, "type", "add", "z").stdout
    assert "this type will never get a job" in with_defaults

    tagged = cli(env, "type", "add", "general", "--tags", "c").stdout
    assert tagged == "Server type `general` added (id 3) with tags `c`.\n"


def test_names_in_messages_are_quoted_one_way(env):
    cli(env, "init")
    assert cli(env, "tag", "add", "c").stdout == "Tag `c` added (id 1).\n"
    again = cli(env, "tag", "add", "c", check=False).stderr
    assert again == "Error: Tag `c` already exists.\n"
    missing = cli(env, "server", "add", "s", "--type", "nope", "--ssl-serial", "1", "--ssl-dn",
                  "CN=x", check=False).stderr  # fmt: skip
    assert missing == "Error: Server type `nope` does not exist.\n"
    # A name cannot forge a second line in a message.
    forged = cli(env, "tag", "add", "x\nError: fake", check=False).stdout
    assert forged == "Tag `x\\nError: fake` added (id 2).\n"
