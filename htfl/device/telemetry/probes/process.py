"""The FL worker process's own resource use (RSS, CPU time, CPU utilisation).

Three strategies, tried in this order and remembered once one works:

1. ``psutil.Process(pid)`` -- the normal case.
2. Direct ``/proc/<pid>/stat`` + ``/proc/<pid>/statm`` reads.  psutil needs the
   boot time from ``/proc/stat`` to build a ``Process``; on Android 8+ that file
   is denied to apps (Termux), so psutil raises while the process's own procfs
   entries are still readable.
3. ``os.times()`` (only when *pid* is this process): CPU time without RSS.

Utilisation is CPU seconds (user + system, children excluded) per wall second,
divided by the number of CPUs, i.e. the share of the whole device's CPU
capacity, comparable with ``htfl_device_cpu_utilisation_ratio``.  It is exported
from the second sample on.

This probe always reads the real ``/proc`` of the running kernel (the worker is
a real process), not the fixture root given to the sysfs probes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .base import ProbeUnavailable, Series

try:  # psutil is a dependency, but the fallbacks below must work without it.
    import psutil
except ImportError:  # pragma: no cover - exercised only on broken installs
    psutil = None

__all__ = ["WorkerProcessProbe"]

RSS = "htfl_device_worker_resident_memory_bytes"
CPU_SECONDS = "htfl_device_worker_cpu_seconds_total"
CPU_UTIL = "htfl_device_worker_cpu_utilisation_ratio"


class WorkerProcessProbe:
    """Resource use of the process *pid* (default: this process)."""

    name = "process"

    def __init__(
        self,
        pid: int | None = None,
        *,
        proc_root: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
        cpu_count: int | None = None,
    ) -> None:
        self.pid = os.getpid() if pid is None else int(pid)
        self.proc_root = proc_root
        self.clock = clock
        self.cpu_count = max(1, cpu_count or os.cpu_count() or 1)
        self.strategy: str | None = None  # "psutil", "procfs" or "os.times"
        self._process: psutil.Process | None = None
        self._prev: tuple[float, float] | None = None  # (wall, cpu seconds)
        self._clk_tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    # -- strategies: each returns (cpu_seconds, rss_bytes or None) ----------------
    def _via_psutil(self) -> tuple[float, int | None]:
        if psutil is None:
            raise OSError("psutil not installed")
        try:
            if self._process is None:
                self._process = psutil.Process(self.pid)
            with self._process.oneshot():
                cpu = self._process.cpu_times()
                rss = self._process.memory_info().rss
        except psutil.NoSuchProcess:
            raise ProbeUnavailable(f"worker process {self.pid} does not exist") from None
        except psutil.Error as exc:  # AccessDenied, ZombieProcess...
            raise OSError(f"psutil: {exc}") from exc
        return cpu.user + cpu.system, rss

    def _via_procfs(self) -> tuple[float, int | None]:
        base = os.path.join(self.proc_root, str(self.pid))
        try:
            with open(os.path.join(base, "stat"), "rb") as fh:
                stat = fh.read().decode("ascii", errors="replace")
        except FileNotFoundError:
            raise ProbeUnavailable(f"worker process {self.pid} does not exist") from None
        # The command name (field 2) may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._clk_tck  # utime, stime
        rss: int | None
        try:
            with open(os.path.join(base, "statm"), "rb") as fh:
                rss = int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            rss = None
        return cpu, rss

    def _via_os_times(self) -> tuple[float, int | None]:
        if self.pid != os.getpid():
            raise OSError("os.times() only measures the calling process")
        t = os.times()
        return t.user + t.system, None

    _STRATEGIES = (
        ("psutil", "_via_psutil"),
        ("procfs", "_via_procfs"),
        ("os.times", "_via_os_times"),
    )

    def _measure(self) -> tuple[float, int | None]:
        errors: list[str] = []
        for name, method in self._STRATEGIES:
            if self.strategy is not None and name != self.strategy:
                continue
            try:
                result = getattr(self, method)()
            except ProbeUnavailable:
                raise
            except (OSError, ValueError, IndexError) as exc:
                if self.strategy is not None:
                    # The remembered strategy broke: start over next time.
                    self.strategy = None
                    raise
                errors.append(f"{name}: {exc}")
                continue
            self.strategy = name
            return result
        raise OSError("; ".join(errors) or "no strategy available")

    def read(self) -> list[Series]:
        cpu, rss = self._measure()
        now = self.clock()
        out = [Series.of(CPU_SECONDS, cpu)]
        if rss is not None:
            out.append(Series.of(RSS, rss))
        if self._prev is not None:
            d_wall = now - self._prev[0]
            d_cpu = cpu - self._prev[1]
            if d_wall > 0 and d_cpu >= 0:
                ratio = d_cpu / (d_wall * self.cpu_count)
                out.append(Series.of(CPU_UTIL, min(1.0, ratio)))
        self._prev = (now, cpu)
        return out
