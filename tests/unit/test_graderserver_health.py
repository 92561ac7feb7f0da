"""Health parsing and thresholds, on sample /proc files."""

from __future__ import annotations

from pathlib import Path

from graderserver.health import (
    CpuSample,
    HealthChecker,
    available_memory_mib,
    parse_meminfo,
    parse_proc_stat,
    steal_percent,
)

STAT = """cpu  1000 10 500 8000 100 0 20 {steal} 50 0
cpu0 500 5 250 4000 50 0 10 0 25 0
intr 12345
"""

MEMINFO = """MemTotal:       16000000 kB
MemFree:          800000 kB
MemAvailable:    2048000 kB
Buffers:          100000 kB
"""


def test_proc_stat_steal_and_total_exclude_guest_time():
    sample = parse_proc_stat(STAT.format(steal=70))
    assert sample == CpuSample(steal=70, total=1000 + 10 + 500 + 8000 + 100 + 0 + 20 + 70)


def test_proc_stat_without_steal_column_or_garbage():
    assert parse_proc_stat("cpu 1 2 3 4\n") == CpuSample(steal=0, total=10)
    assert parse_proc_stat("cpu a b c\n") is None
    assert parse_proc_stat("nothing here\n") is None


def test_steal_percent_needs_a_long_enough_window():
    assert steal_percent(CpuSample(0, 1000), CpuSample(50, 1200)) == 25.0
    assert steal_percent(CpuSample(0, 1000), CpuSample(5, 1010)) is None


def test_meminfo_prefers_memavailable():
    info = parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 16000000
    assert available_memory_mib(info) == 2000.0
    assert available_memory_mib({"MemFree": 1024}) == 1.0
    assert available_memory_mib({}) is None


def make_proc(tmp_path: Path, steal: int, total_extra: int = 0) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(f"cpu  {1000 + total_extra} 0 0 0 0 0 0 {steal} 0 0\n")
    (proc / "meminfo").write_text(MEMINFO)
    return proc


def test_checker_reports_steal_between_checks(tmp_path):
    proc = make_proc(tmp_path, steal=0)
    checker = HealthChecker(max_steal_percent=30, proc_root=str(proc))
    assert checker.check() == (True, [])
    # 1000 more ticks, 500 of them stolen: 50% steal.
    make_proc(tmp_path, steal=500, total_extra=500)
    healthy, reasons = checker.check()
    assert not healthy
    assert "CPU steal 50.0%" in reasons[0]


def test_checker_memory_and_disk_thresholds(tmp_path):
    proc = make_proc(tmp_path, steal=0)
    ok = HealthChecker(
        min_free_memory_mib=1000, min_free_disk_mib=1, disk_path=str(tmp_path), proc_root=str(proc)
    )
    assert ok.check() == (True, [])
    bad = HealthChecker(
        min_free_memory_mib=4000,
        min_free_disk_mib=10**12,
        disk_path=str(tmp_path),
        proc_root=str(proc),
    )
    healthy, reasons = bad.check()
    assert not healthy
    assert any("free memory 2000 MiB < 4000 MiB" in r for r in reasons)
    assert any("free disk" in r for r in reasons)


def test_unreadable_values_count_as_healthy(tmp_path):
    checker = HealthChecker(
        min_free_memory_mib=10**9,
        min_free_disk_mib=10**9,
        disk_path=str(tmp_path / "missing"),
        proc_root=str(tmp_path / "no-proc"),
    )
    assert checker.check() == (True, [])


def test_checker_on_this_machine_is_healthy_with_default_thresholds():
    assert HealthChecker().check()[0]
