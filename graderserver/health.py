"""Is this machine fit to grade? CPU steal, free memory, free disk.

A grade measured on a starved machine (a noisy neighbour stealing CPU, memory
about to swap, a full disk) is wrong or fails for reasons that are not the
solution's, so the daemon checks before and after each job and refuses work
while any check fails. A value that cannot be read counts as healthy, as in
the original: a missing /proc must not stop grading.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

# Steal is measured over at least this many clock ticks (all CPUs summed,
# usually 100 per CPU-second): a shorter window gives noise, not a percentage.
MIN_TICKS_FOR_STEAL = 100


@dataclass(frozen=True)
class CpuSample:
    """Cumulative clock ticks from the `cpu` line of /proc/stat."""

    steal: int
    total: int


def parse_proc_stat(text: str) -> CpuSample | None:
    """The aggregate `cpu` line of /proc/stat, or None if absent or malformed."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                ticks = [int(v) for v in fields[1:]]
            except ValueError:
                return None
            # user nice system idle iowait irq softirq steal guest guest_nice;
            # guest time is already counted in user/nice, so leave it out.
            counted = ticks[:8]
            steal = counted[7] if len(counted) >= 8 else 0
            return CpuSample(steal=steal, total=sum(counted))
    return None


def steal_percent(before: CpuSample, after: CpuSample) -> float | None:
    """Share of CPU time stolen between two samples; None if too little time passed."""
    elapsed = after.total - before.total
    if elapsed < MIN_TICKS_FOR_STEAL:
        return None
    return 100.0 * max(0, after.steal - before.steal) / elapsed


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: KiB}; lines that do not parse are skipped."""
    info: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            try:
                info[name.strip()] = int(fields[0])
            except ValueError:
                continue
    return info


def available_memory_mib(meminfo: dict[str, int]) -> float | None:
    """MemAvailable (what can be used without swapping), else MemFree, in MiB."""
    for name in ("MemAvailable", "MemFree"):
        if name in meminfo:
            return meminfo[name] / 1024
    return None


def free_disk_mib(path: str) -> float | None:
    """Space an unprivileged process may still write at `path`, in MiB."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize / (1024 * 1024)


class HealthChecker:
    """Runs the three checks; keeps the last CPU sample to measure steal."""

    def __init__(
        self,
        max_steal_percent: float = 30.0,
        min_free_memory_mib: int = 0,
        min_free_disk_mib: int = 0,
        disk_path: str = "/",
        proc_root: str = "/proc",
    ) -> None:
        self.max_steal_percent = max_steal_percent
        self.min_free_memory_mib = min_free_memory_mib
        self.min_free_disk_mib = min_free_disk_mib
        self.disk_path = disk_path
        self.proc_root = proc_root
        # Worker threads check concurrently; the CPU baseline is shared.
        self._lock = threading.Lock()
        self._baseline = self._read_cpu()
        self._last_steal: float | None = None

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.proc_root, name), encoding="ascii") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError):
            return None

    def _read_cpu(self) -> CpuSample | None:
        text = self._read("stat")
        return parse_proc_stat(text) if text is not None else None

    def _steal(self) -> float | None:
        """Steal since the last check long enough to measure; else the last value."""
        with self._lock:
            current = self._read_cpu()
            if current is None or self._baseline is None:
                self._baseline = current
                return self._last_steal
            value = steal_percent(self._baseline, current)
            if value is not None:
                self._baseline = current
                self._last_steal = value
            return self._last_steal

    def check(self) -> tuple[bool, list[str]]:
        """(healthy, reasons it is not); reasons are for logs and result messages."""
        reasons: list[str] = []
        steal = self._steal()
        if steal is not None and steal > self.max_steal_percent:
            reasons.append(f"CPU steal {steal:.1f}% > {self.max_steal_percent:g}%")
        if self.min_free_memory_mib > 0:
            text = self._read("meminfo")
            free = available_memory_mib(parse_meminfo(text)) if text is not None else None
            if free is not None and free < self.min_free_memory_mib:
                reasons.append(f"free memory {free:.0f} MiB < {self.min_free_memory_mib} MiB")
        if self.min_free_disk_mib > 0:
            free = free_disk_mib(self.disk_path)
            if free is not None and free < self.min_free_disk_mib:
                reasons.append(
                    f"free disk on {self.disk_path} {free:.0f} MiB < {self.min_free_disk_mib} MiB"
                )
        return (not reasons, reasons)
