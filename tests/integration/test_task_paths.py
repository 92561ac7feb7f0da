"""A platform's jobs stay inside its own task folders, and revisions stay revisions.

The attack these pin: platform A, restricted to /srv/tasks/A, sent a job for
platform B's folder with a revision of its choice (or an option such as
`--orphan=x`), and the grading server's prepare step ran git on B's
repository. The queue refuses such jobs; the real graderserver refuses them
again after resolving symlinks, and git only ever sees a revision.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from gradercommon.taskrules import REVISION_MAX, is_revision
from graderqueue.client import ClientError
from graderqueue.errors import BadRequest
from graderqueue.protocol.taskpaths import check_revision, is_inside
from graderqueue.store.models import Job
from graderserver import taskpaths as daemon_taskpaths
from tests.integration.test_graderserver_queue import make_live

FOREIGN_PATHS = [
    "/srv/tasks/B",
    "/srv/tasks/A/../B",
    "/srv/tasks/AB",
    "$ROOT_PATH/../B",
    "B",
    "/srv/tasks/A\n",
    " /srv/tasks/A",
]
REVISIONS = ["", "HEAD~1", "v1.2", "release/2024", "main^2", "a1b2c3d"]
NOT_REVISIONS = ["--orphan=x", "-b", "HEAD;rm -rf /", "a b", "$(id)", "x" * (REVISION_MAX + 1)]


@pytest.fixture
def restricted(queue):
    platform = queue.platform("plat-a", restrict_paths="/srv/tasks/A,$ROOT_PATH/tasks/A")
    return queue, queue.client_for(platform)


def refused(queue, call) -> str:
    before = queue.snapshot()
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.errorcode == 2
    assert queue.snapshot() == before
    return caught.value.errormsg


@pytest.mark.parametrize("path", FOREIGN_PATHS)
def test_queue_refuses_a_task_path_outside_the_platforms_paths(restricted, path):
    queue, client = restricted
    message = refused(queue, lambda: client.sendjob({"taskPath": path}, tags="c"))
    assert "outside this platform's allowed paths" in message


def test_queue_refuses_foreign_paths_in_sendsolution_too(restricted):
    queue, client = restricted
    fields = {"memlimit": 64, "timelimit": 100, "lang": "c", "solcontent": "x", "tags": "c"}
    refused(queue, lambda: client.sendsolution(taskpath="/srv/tasks/B", **fields))
    refused(
        queue,
        lambda: client.sendsolution(taskpath="/srv/tasks/A/t", solpath="/srv/tasks/B/c", **fields),
    )
    assert client.sendsolution(taskpath="/srv/tasks/A/t", **fields) > 0


@pytest.mark.parametrize("path", ["/srv/tasks/A", "/srv/tasks/A/sum", "$ROOT_PATH/tasks/A/./x"])
def test_queue_accepts_paths_inside(restricted, path):
    queue, client = restricted
    jobid = client.sendjob({"taskPath": path}, tags="c", taskrevision="HEAD~1")
    job = queue.scalar(select(Job).where(Job.id == jobid))
    assert json.loads(job.jobdata)["restrictToPaths"] == ["/srv/tasks/A", "$ROOT_PATH/tasks/A"]


def test_unrestricted_platforms_are_not_checked(queue):
    client = queue.client_for(queue.platform("free"))
    assert client.sendjob({"taskPath": "/anywhere/../at/all"}, tags="c") > 0


@pytest.mark.parametrize("revision", NOT_REVISIONS)
def test_queue_refuses_revisions_that_are_not_revisions(queue, revision):
    client = queue.client_for(queue.platform("free"))
    message = refused(
        queue, lambda: client.sendjob({"taskPath": "/t"}, tags="c", taskrevision=revision)
    )
    assert "Invalid taskrevision" in message


@pytest.mark.parametrize("revision", REVISIONS)
def test_queue_accepts_revisions(queue, revision):
    client = queue.client_for(queue.platform("free"))
    assert client.sendjob({"taskPath": "/t"}, tags="c", taskrevision=revision) > 0


def test_a_huge_timeout_is_clamped_to_the_setting(queue):
    client = queue.client_for(queue.platform("free"))
    jobid = client.sendjob({"taskPath": "/t"}, tags="c", timeout=2147483647)
    assert client.getjob(jobid)["data"]["timeout_sec"] == queue.settings.max_timeout_sec
    jobid = client.sendjob({"taskPath": "/t"}, tags="c", timeout=60, jobusertaskid="short")
    assert client.getjob(jobid)["data"]["timeout_sec"] == 60


@pytest.mark.parametrize("revision", [*REVISIONS, "x" * REVISION_MAX, *NOT_REVISIONS])
def test_the_queue_and_the_daemon_apply_the_one_revision_rule(revision):
    """Both sides ask gradercommon.taskrules: what one accepts, the other accepts."""
    try:
        check_revision(revision)
        queue_accepts = True
    except BadRequest:
        queue_accepts = False
    daemon_accepts = daemon_taskpaths.revision_problem(revision) is None
    assert queue_accepts == daemon_accepts == is_revision(revision)


def test_is_inside_keeps_root_path_opaque():
    assert is_inside("$ROOT_PATH/tasks/A/x", ["${ROOT_PATH}/tasks/A"])
    assert not is_inside("$ROOT_PATH/tasks/A", ["/srv"])
    assert not is_inside("$ROOT_PATH/../../srv/tasks/A", ["/srv/tasks/A"])
    assert not is_inside("/srv/tasks/A\0/x", ["/srv/tasks/A"])


# -- the daemon, with real git repositories ----------------------------------


def git(*args: str, cwd: Path) -> str:
    env_args = ["-c", "user.email=t@example.org", "-c", "user.name=t"]
    done = subprocess.run(
        ["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def repository(path: Path) -> list[str]:
    """A git repository with two commits; returns their hashes, oldest first."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    for n in (1, 2):
        (path / "version").write_text(str(n))
        git("add", "version", cwd=path)
        git("commit", "-q", "-m", f"v{n}", cwd=path)
    return git("rev-list", "--reverse", "HEAD", cwd=path).split()


@pytest.fixture
def farm(sqlite_queue, tmp_path):
    """Platform A restricted to root/A, platform B's repository in root/B, a
    graderserver whose prepare step runs real git."""
    root = tmp_path / "tasks"
    commits_a = repository(root / "A")
    commits_b = repository(root / "B")
    (root / "A" / "link-to-b").symlink_to(root / "B")
    live = make_live(sqlite_queue, tmp_path)
    platform = sqlite_queue.platform("plat-a", restrict_paths="$ROOT_PATH/A")
    live.client = sqlite_queue.client_for(platform, url=live.url)
    config = live.config(
        ["cat"],
        paths={"root": str(root)},
        program={"prepare_command": ["git", "-C", "{task_dir}", "checkout", "-q", "{revision}"]},
    )
    return live, config, root, commits_a, commits_b


def head(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo)


def test_daemon_refuses_a_symlink_into_another_platforms_repository(farm):
    live, config, root, _, commits_b = farm
    jobid = live.send({"taskPath": "$ROOT_PATH/A/link-to-b"}, taskrevision=commits_b[0])
    result = live.graderserver("-c", str(config), "--once")
    assert result.returncode == 0, result.stderr
    row = live.row(jobid)
    resultdata = json.loads(row["resultdata"])
    assert (row["status"], resultdata["errorcode"]) == ("done", 1)
    assert "outside the platform's allowed paths" in resultdata["errormsg"]
    assert head(root / "B") == commits_b[1], "B's repository was checked out"


def test_daemon_refuses_what_an_older_queue_let_through(farm, sqlite_queue):
    """An older queue checks nothing: the daemon alone stands between A and B."""
    live, config, root, _, commits_b = farm
    jobid = live.send({"taskPath": "$ROOT_PATH/A"}, taskrevision="HEAD~1")
    # What an unchecking queue would have stored for `$ROOT_PATH/../B` and `--orphan=x`.
    with sqlite_queue.db.transaction() as session:
        job = session.get(Job, jobid)
        data = json.loads(job.jobdata)
        data["taskPath"] = "$ROOT_PATH/A/../B"
        job.jobdata = json.dumps(data)
    assert live.graderserver("-c", str(config), "--once").returncode == 0
    resultdata = json.loads(live.row(jobid)["resultdata"])
    assert resultdata["errorcode"] == 1 and "outside" in resultdata["errormsg"]
    assert head(root / "B") == commits_b[1]

    jobid = live.send({"taskPath": "$ROOT_PATH/A"}, taskrevision="HEAD")
    with sqlite_queue.db.transaction() as session:
        session.get(Job, jobid).taskrevision = "--orphan=x"
    assert live.graderserver("-c", str(config), "--once").returncode == 0
    resultdata = json.loads(live.row(jobid)["resultdata"])
    assert resultdata["errorcode"] == 1
    assert "does not look like a revision" in resultdata["errormsg"]
    assert git("branch", "--show-current", cwd=root / "A") == "main"
    assert git("rev-list", "--count", "HEAD", cwd=root / "A") == "2"


def test_daemon_checks_out_a_legitimate_job(farm):
    live, config, root, commits_a, commits_b = farm
    jobid = live.send({"taskPath": "$ROOT_PATH/A"}, taskrevision=commits_a[0])
    assert live.graderserver("-c", str(config), "--once").returncode == 0
    resultdata = json.loads(live.row(jobid)["resultdata"])
    assert resultdata["errorcode"] == 0, resultdata
    assert resultdata["jobdata"]["taskPath"] == str(root / "A")
    assert head(root / "A") == commits_a[0]
    assert head(root / "B") == commits_b[1]


def test_daemon_path_rule_resolves_symlinks(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "b").symlink_to(tmp_path / "B")
    allowed = [str(tmp_path / "A")]
    problem = daemon_taskpaths.path_problem
    assert problem({"taskPath": str(tmp_path / "A")}, allowed) is None
    assert problem({"taskPath": str(tmp_path / "A" / "b")}, allowed) is not None
    assert problem({"taskPath": str(tmp_path / "A" / ".." / "B")}, allowed) is not None
    assert problem({"taskPath": "relative"}, allowed) is not None
    assert problem({"extraParams": {"solutionPath": str(tmp_path / "B")}}, allowed) is not None
    # An unrestricted platform's jobs are not confined here.
    assert problem({"taskPath": str(tmp_path / "B")}, []) is None


def test_daemon_refuses_a_symlink_that_the_checkout_itself_creates(farm):
    """The revision adds `sol -> B/version`: checked before the checkout, the
    path did not exist yet; checked again after it, before the program runs."""
    live, config, root, _, _ = farm
    repo = root / "A"
    (repo / "sol").symlink_to(root / "B" / "version")
    git("add", "sol", cwd=repo)
    git("commit", "-q", "-m", "link", cwd=repo)
    linked = git("rev-parse", "HEAD", cwd=repo)
    git("rm", "-q", "sol", cwd=repo)
    git("commit", "-q", "-m", "unlink", cwd=repo)
    assert not (repo / "sol").exists()

    job = {"taskPath": "$ROOT_PATH/A", "extraParams": {"solutionPath": "$ROOT_PATH/A/sol"}}
    jobid = live.send(job, taskrevision=linked)
    assert live.graderserver("-c", str(config), "--once").returncode == 0
    resultdata = json.loads(live.row(jobid)["resultdata"])
    assert resultdata["errorcode"] == 1, resultdata
    assert "outside the platform's allowed paths" in resultdata["errormsg"]
    assert "jobdata" not in resultdata, "the program ran"


def test_daemon_refuses_when_a_platform_path_expands_to_nothing(tmp_path):
    problem = daemon_taskpaths.path_problem
    # `$ROOT_PATH` on a server without a root, an unknown variable, a relative path.
    for roots in ([""], ["$CONTEST/x"], ["tasks/A"]):
        assert problem({"taskPath": str(tmp_path)}, roots) is not None, roots
