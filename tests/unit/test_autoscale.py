"""The autoscaling decision from figures: burst, long, backlog, bounds, the scale-down delay."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from graderqueue.config import load_settings
from graderqueue.errors import ConfigError
from graderqueue.maintenance.autoscale import Figures, Memory, Policy, decide, policy_for

NOW = datetime(2026, 12, 7, 9, 0, 0)
POLICY = Policy(
    target_wait_sec=60,
    burst_ratio=1.3,
    long_ratio=1.6,
    default_job_sec=30,
    scale_down_delay_sec=1800,
    min_servers=0,
    max_servers=20,
)


def figures(**kw) -> Figures:  # type: ignore[no-untyped-def]
    return Figures(type_id=1, name="general", **kw)


def test_nothing_to_do_wants_the_minimum():
    d = decide(figures(), POLICY, None, NOW)
    assert (d.wanted, d.reason) == (0, "no demand")
    d = decide(figures(), replace(POLICY, min_servers=2), None, NOW)
    assert d.wanted == 2
    assert "bounded to [2, 20]" in d.reason


def test_backlog_wants_the_waiting_jobs_done_within_the_target_wait():
    # 2 running + 40 waiting x 30 s / 60 s = 22 slots.
    d = decide(figures(waiting=40, running=2), POLICY, None, NOW)
    assert d.demand["backlog"] == pytest.approx(22)
    assert d.wanted == 20, "bounded by max_servers"
    assert d.reason.startswith("backlog: 2 running + 40 waiting x 30 s / 60 s target wait")
    assert "22 bounded to [0, 20]" in d.reason
    # The measured mean job duration comes before the default one.
    d = decide(figures(waiting=40, running=2, job_sec=6), POLICY, None, NOW)
    assert d.wanted == 6  # 2 + 40 x 6 / 60
    # Servers that run 4 jobs at once: a quarter as many.
    d = decide(figures(waiting=40, running=2, job_sec=6, slots_per_server=4), POLICY, None, NOW)
    assert d.wanted == 2


def test_a_single_waiting_job_wants_a_server_and_noise_no_more():
    d = decide(figures(waiting=1), POLICY, None, NOW)
    assert d.wanted == 1
    # Jobs of a few milliseconds: 1.00003 slots is one server, not two.
    d = decide(figures(waiting=2, running=1, job_sec=0.002), POLICY, None, NOW)
    assert d.wanted == 1
    d = decide(figures(waiting=1, job_sec=0.002), POLICY, None, NOW)
    assert d.wanted == 1
    assert decide(figures(running=3), POLICY, None, NOW).wanted == 3


def test_burst_ratio_over_the_last_minute():
    # 3 slots busy on average over the burst window, x 1.3 = 3.9 -> 4 servers.
    d = decide(figures(usage=(3.0, 1.0, 1.0)), POLICY, None, NOW)
    assert d.wanted == 4
    assert d.reason == "burst: 3.00 slots busy over 60 s x 1.3"
    d = decide(figures(usage=(3.0, 1.0, 1.0)), replace(POLICY, burst_ratio=2.0), None, NOW)
    assert d.wanted == 6


def test_long_ratio_takes_the_busier_of_the_medium_and_long_windows():
    # max(2.5, 1.0) x 1.6 = 4.000000000000001: rounding keeps it 4 servers, not 5.
    d = decide(figures(usage=(1.0, 2.5, 1.0)), POLICY, None, NOW)
    assert d.wanted == 4
    assert d.reason == "long: 2.50 slots busy over 300 s x 1.6"
    d = decide(figures(usage=(1.0, 1.0, 2.0)), POLICY, None, NOW)
    assert d.reason == "long: 2.00 slots busy over 900 s x 1.6"
    assert d.wanted == 4  # 3.2 -> 4


def test_the_largest_demand_wins():
    d = decide(figures(usage=(3.0, 2.0, 2.0), waiting=1, job_sec=6), POLICY, None, NOW)
    assert max(d.demand, key=d.demand.__getitem__) == "burst"
    assert d.wanted == 4


def test_scaling_up_is_at_once_even_right_after_a_change():
    last = Memory(wanted=1, changed_at=NOW - timedelta(seconds=5))
    d = decide(figures(waiting=10, serving=1), POLICY, last, NOW)
    assert (d.previous, d.wanted) == (1, 5)


def test_scaling_down_waits_for_the_delay_since_the_last_change():
    last = Memory(wanted=5, changed_at=NOW - timedelta(seconds=100))
    d = decide(figures(waiting=2, serving=5), POLICY, last, NOW)
    assert d.wanted == 5
    assert "scale-down from 5 waits 1700 s more (delay)" in d.reason
    later = Memory(wanted=5, changed_at=NOW - timedelta(seconds=1801))
    d = decide(figures(waiting=2, serving=5), POLICY, later, NOW)
    assert d.wanted == 1
    assert "delay" not in d.reason


def test_first_run_counts_the_servers_serving_now_and_starts_the_delay():
    d = decide(figures(serving=3, alive=4), POLICY, None, NOW)
    assert (d.previous, d.wanted) == (3, 3)
    assert "waits 1800 s more" in d.reason
    d = decide(figures(serving=3), replace(POLICY, scale_down_delay_sec=0), None, NOW)
    assert d.wanted == 0


def test_bounds_hold_even_while_a_scale_down_waits():
    last = Memory(wanted=8, changed_at=NOW)
    d = decide(figures(), replace(POLICY, max_servers=5), last, NOW)
    assert d.wanted == 5, "a lowered max applies at once"
    last = Memory(wanted=1, changed_at=NOW)
    d = decide(figures(), replace(POLICY, min_servers=3), last, NOW)
    assert d.wanted == 3


def test_a_paused_type_keeps_what_it_had():
    last = Memory(wanted=4, changed_at=NOW - timedelta(days=1))
    d = decide(figures(paused=True, waiting=100), POLICY, last, NOW)
    assert (d.wanted, d.reason) == (4, "dispatch paused: kept as it was")
    d = decide(figures(paused=True, serving=2), POLICY, None, NOW)
    assert d.wanted == 2


def test_policy_from_settings_defaults_are_the_originals():
    settings = load_settings({}, environ={})
    policy = policy_for(settings, "general")
    assert (policy.burst_ratio, policy.long_ratio) == (1.3, 1.6)
    assert policy.scale_down_delay_sec == 30 * 60
    assert policy.windows_sec == (60, 300, 900)


def test_type_limits_override_the_default_bounds():
    settings = load_settings(
        {"autoscale_max_servers": 6, "autoscale_type_limits": {"gpu": "1-2"}}, environ={}
    )
    assert (policy_for(settings, "gpu").min_servers, policy_for(settings, "gpu").max_servers) == (
        1,
        2,
    )
    assert (policy_for(settings, "cpu").min_servers, policy_for(settings, "cpu").max_servers) == (
        0,
        6,
    )
    # As an environment variable (JSON), the way the tests' subprocesses get it.
    from_env = load_settings(environ={"GRADERQUEUE_AUTOSCALE_TYPE_LIMITS": '{"gpu": "0-4"}'})
    assert policy_for(from_env, "gpu").max_servers == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"autoscale_type_limits": {"gpu": "four"}}, "is not MIN-MAX"),
        ({"autoscale_type_limits": {"gpu": "4-1"}}, "need 0 <= min <= max"),
        ({"autoscale_min_servers": 3, "autoscale_max_servers": 2}, "need 0 <= min <= max"),
        ({"autoscale_target_wait_sec": 0}, "must be positive"),
        ({"autoscale_burst_window_sec": 0}, "must be positive"),
        ({"autoscale_long_ratio": -1}, "ratios not negative"),
    ],
)
def test_bad_settings_are_refused_with_their_name(overrides, message):
    settings = load_settings(overrides, environ={})
    with pytest.raises(ConfigError, match=message):
        policy_for(settings, "gpu")
