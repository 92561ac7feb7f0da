"""The hooks in examples/autoscale/ do what their documentation says.

systemd, kubectl and aws are not run: each hook takes the command it calls
as an option, and a stand-in here keeps what a real one would do (the
units that are active) or what it was asked (the arguments).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from graderqueue.queue import control
from harness.processes import run_cli
from tests.integration.test_autoscale_cli import submit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "autoscale"

# Active units in a JSON file; list-units, start and stop as systemctl does them.
FAKE_SYSTEMCTL = """\
import fnmatch, json, sys
from pathlib import Path

state = Path(sys.argv[1])
args = sys.argv[2:]
active = set(json.loads(state.read_text())) if state.exists() else set()
if args[0] == "list-units":
    for unit in sorted(active):
        if fnmatch.fnmatch(unit, args[-1]):
            print(f"{unit} loaded active running grading server")
elif args[0] in ("start", "stop"):
    assert args[1] == "--no-block", args
    units = set(args[2:])
    active = active | units if args[0] == "start" else active - units
    state.write_text(json.dumps(sorted(active)))
else:
    sys.exit(f"unexpected: {args}")
"""

# Records its arguments, one JSON list a line.
RECORDER = """\
import json, sys
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
"""


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def units(state: Path) -> list[str]:
    return json.loads(state.read_text()) if state.exists() else []


def test_systemd_fleet_starts_and_stops_template_instances(queue, tmp_path):
    state = tmp_path / "active.json"
    systemctl = f"{sys.executable} {script(tmp_path, 'systemctl.py', FAKE_SYSTEMCTL)} {state}"
    hook = f"{sys.executable} {EXAMPLES / 'systemd-fleet.py'} --type t-java --max 3"
    hook += f" --systemctl '{systemctl}'"
    env = {
        **queue.env,
        "GRADERQUEUE_AUTOSCALE_TARGET_WAIT_SEC": "60",
        "GRADERQUEUE_AUTOSCALE_DEFAULT_JOB_SEC": "30",
        "GRADERQUEUE_AUTOSCALE_SCALE_DOWN_DELAY_SEC": "0",
    }
    # 8 jobs want 4 servers; the machine takes 3.
    jobs = submit(queue, 8)
    result = run_cli(["autoscale", "--hook", hook], env=env)
    assert "t-java: 0 running, 3 wanted: start graderserver@1.service" in result.stderr
    assert units(state) == [f"graderserver@{n}.service" for n in (1, 2, 3)]
    run_cli(["autoscale", "--hook", hook], env=env)
    assert len(units(state)) == 3, "as wanted: nothing started twice"

    # 2 jobs left: 1 server; the highest numbers stop.
    with queue.db.transaction() as session:
        control.act_many(session, jobs[2:], "cancel", actor="test")
    state.write_text(json.dumps(["graderserver@2.service", "graderserver@7.service"]))
    result = run_cli(["autoscale", "--hook", hook], env=env)
    assert "stop graderserver@7.service" in result.stderr
    assert units(state) == ["graderserver@2.service"]


def run_hook(name: str, args: list[str], answer: dict) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        input=json.dumps(answer),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


ANSWER = {"types": {"general": {"wanted": 5}, "gpu": {"wanted": 0}}}


def test_kubectl_scale_sets_each_deployments_replicas(tmp_path):
    log = tmp_path / "kubectl.log"
    kubectl = f"{sys.executable} {script(tmp_path, 'rec.py', RECORDER)} {log}"
    mappings = ["--deployment", "general=gs-general", "--deployment", "gpu=gs-gpu"]
    done = run_hook("kubectl-scale.py", [*mappings, "-n", "grading", "--kubectl", kubectl], ANSWER)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["scale", "deployment/gs-general", "--replicas=5", "--namespace", "grading"],
        ["scale", "deployment/gs-gpu", "--replicas=0", "--namespace", "grading"],
    ]
    unknown = run_hook("kubectl-scale.py", ["--deployment", "cpu=x", "--dry-run"], ANSWER)
    assert unknown.returncode == 1 and "no server type 'cpu'" in unknown.stderr


def test_aws_asg_sets_each_groups_desired_capacity(tmp_path):
    log = tmp_path / "aws.log"
    aws = f"{sys.executable} {script(tmp_path, 'rec.py', RECORDER)} {log}"
    done = run_hook("aws-asg.py", ["--group", "general=graders", "--aws", aws], ANSWER)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        [
            "autoscaling",
            "set-desired-capacity",
            "--auto-scaling-group-name",
            "graders",
            "--desired-capacity",
            "5",
        ]
    ]
    dry = run_hook("aws-asg.py", ["--group", "gpu=g", "--aws", aws, "--dry-run"], ANSWER)
    assert dry.returncode == 0 and "--desired-capacity 0" in dry.stdout
    assert len(log.read_text().splitlines()) == 1, "a dry run calls nothing"
