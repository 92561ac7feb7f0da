"""examples/prometheus/ through promtool (Debian's prometheus package, installed by
scripts/setup-system): the scrape config and the rules are valid, the alert rules
pass their unit tests, and every metric they name is one the app exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import ROOT

EXAMPLES = ROOT / "examples" / "prometheus"
RULES = EXAMPLES / "graderqueue.rules.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "graderqueue.json"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: scripts/setup-system installs it (Debian package prometheus)"
        )
    return found


def run(promtool: str, *args: str | Path) -> str:
    result = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"promtool {args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_the_scrape_config_is_valid(promtool, tmp_path):
    # promtool also checks that the token file the config names exists: give it one.
    for path in EXAMPLES.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "graderqueue-metrics.token").write_text("a-token\n")
    out = run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert "1 rule files found" in out


def test_the_rules_are_valid(promtool):
    out = run(promtool, "check", "rules", RULES)
    assert re.search(r"SUCCESS: \d+ rules found", out)


def test_the_alert_rules_pass_their_unit_tests(promtool):
    out = run(promtool, "test", "rules", EXAMPLES / "graderqueue.rules.test.yml")
    assert "SUCCESS" in out


def test_a_broken_rule_fails_its_unit_test(promtool, tmp_path):
    """The unit tests can fail: summing the nodes' copies of a gauge doubles it."""
    for path in EXAMPLES.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    rules = tmp_path / RULES.name
    rules.write_text(
        rules.read_text().replace(
            "expr: max by (type) (graderqueue_jobs_waiting)",
            "expr: sum by (type) (graderqueue_jobs_waiting)",
        )
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "graderqueue.rules.test.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "graderqueue:jobs_waiting" in result.stdout + result.stderr


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(queries) > 20
    return queries


def test_the_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """Each panel's query, Grafana's variables given values, as a rule promtool checks."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{n}",
                        "expr": q.replace("$__rate_interval", "5m").replace("$type", ".*"),
                    }
                    for n, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    run(promtool, "check", "rules", path)


def exported_names(queue) -> set[str]:  # type: ignore[no-untyped-def]
    """Every series name the real app's /metrics announces (HELP and TYPE lines)."""
    answer = queue.app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert answer.status_code == 200
    names = set()
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_rules_and_the_dashboard_name_only_exported_metrics(sqlite_queue):
    exported = exported_names(sqlite_queue)
    assert "graderqueue_jobs_received_total" in exported
    for path in (RULES, EXAMPLES / "graderqueue.rules.test.yml", DASHBOARD):
        used = set(re.findall(r"\bgraderqueue_[a-z_]+", path.read_text()))
        assert used, path
        assert used <= exported, f"{path.name}: {sorted(used - exported)}"
