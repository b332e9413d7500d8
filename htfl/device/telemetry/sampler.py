"""Background sampling of the device into an immutable latest-values snapshot.

The sampler thread wakes up on a fixed grid (``1 / rate_hz`` seconds apart,
1 Hz by default, at most 10 Hz), runs every probe and publishes a new
:class:`Snapshot` by swapping one reference.  Scrapes only read that reference,
so ``/metrics`` never touches sysfs and never waits for a probe.

Rates are computed by the probes from the deltas between two consecutive
samples (``/proc/stat`` ticks, the worker's CPU seconds), so they appear from
the second sample on and always cover exactly one sampling period (or longer,
see :class:`~.probes.linux.ProcStatProbe`).

A probe that raises is reported as down for that sample (its series omitted);
the thread itself never dies from a probe error.  If sampling overruns its
period, missed ticks are skipped rather than run back to back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .probes.base import ProbeUnavailable, Series
from .probes.process import WorkerProcessProbe

__all__ = ["DEFAULT_RATE_HZ", "MAX_RATE_HZ", "Sampler", "Snapshot"]

log = logging.getLogger(__name__)

DEFAULT_RATE_HZ = 1.0
MAX_RATE_HZ = 10.0


@dataclass(frozen=True)
class Snapshot:
    """Latest values of every probe (immutable; replaced whole on each sample)."""

    seq: int = 0
    timestamp: float = 0.0  # Unix time at which the sample completed
    duration_seconds: float = 0.0  # wall time the sample took
    series: tuple[Series, ...] = ()
    probes: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    telemetry_cpu_seconds: float = 0.0  # cumulative CPU time spent sampling

    def values(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """``{labels: value}`` of every series called *name* (test/debug helper)."""
        return {s.labels: s.value for s in self.series if s.name == name}


class Sampler:
    """Samples *probes* plus the worker process at *rate_hz* in a daemon thread."""

    def __init__(
        self,
        probes: Sequence,
        rate_hz: float = DEFAULT_RATE_HZ,
        *,
        worker_pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        rate_hz = float(rate_hz)
        if not 0.0 < rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be in (0, {MAX_RATE_HZ:g}], got {rate_hz!r}")
        self.rate_hz = rate_hz
        self.period = 1.0 / rate_hz
        self.worker = WorkerProcessProbe(os.getpid() if worker_pid is None else worker_pid)
        self.probes = [*probes, self.worker]
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}")
        self._clock = clock
        self._wall = wall_clock
        self._latest = Snapshot()
        self._sample_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: dict[str, bool] = {}
        self._cpu_seconds = 0.0
        self._seq = 0
        self.overruns = 0  # ticks skipped because sampling took longer than a period

    # -- public API ---------------------------------------------------------------
    @property
    def latest(self) -> Snapshot:
        return self._latest

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def cpu_seconds(self) -> float:
        """Thread CPU time spent inside :meth:`sample_once` so far."""
        return self._cpu_seconds

    def sample_once(self) -> Snapshot:
        """Run every probe now, publish and return the new snapshot."""
        with self._sample_lock:
            cpu0 = time.thread_time()
            t0 = self._clock()
            series: list[Series] = []
            seen: set[tuple[str, tuple]] = set()
            up: dict[str, bool] = {}
            errors: dict[str, str] = {}
            for probe in self.probes:
                try:
                    values = probe.read()
                except Exception as exc:  # noqa: BLE001 - any probe failure = "not available"
                    up[probe.name] = False
                    errors[probe.name] = f"{type(exc).__name__}: {exc}"
                    self._log_transition(probe.name, False, exc)
                    continue
                up[probe.name] = True
                self._log_transition(probe.name, True, None)
                for s in values:
                    key = (s.name, s.labels)
                    if key in seen:
                        log.debug("probe %s: duplicate series %s%s dropped", probe.name, *key)
                        continue
                    seen.add(key)
                    series.append(s)
            duration = self._clock() - t0
            self._cpu_seconds += time.thread_time() - cpu0
            self._seq += 1
            snap = Snapshot(
                seq=self._seq,
                timestamp=self._wall(),
                duration_seconds=duration,
                series=tuple(series),
                probes=MappingProxyType(up),
                errors=MappingProxyType(errors),
                telemetry_cpu_seconds=self._cpu_seconds,
            )
            self._latest = snap
            return snap

    def start(self, *, initial_sample: bool = True) -> None:
        """Start the sampling thread (after one synchronous sample by default)."""
        if self.running:
            raise RuntimeError("sampler already running")
        self._stop = threading.Event()
        if initial_sample:
            self.sample_once()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._stop, not initial_sample),
            name="htfl-telemetry-sampler",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; returns ``True`` once it has exited.  Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - only if a probe blocks for > timeout
            log.warning("sampler thread did not stop within %.1f s", timeout)
            self._thread = thread
            return False
        return True

    # -- internals ----------------------------------------------------------------
    def _run(self, stop: threading.Event, sample_first: bool) -> None:
        next_tick = self._clock() + (0.0 if sample_first else self.period)
        while True:
            delay = next_tick - self._clock()
            if delay > 0 and stop.wait(delay):
                return
            if stop.is_set():
                return
            try:
                self.sample_once()
            except Exception:  # pragma: no cover - sample_once already isolates probes
                log.exception("telemetry sample failed")
            next_tick += self.period
            now = self._clock()
            if next_tick < now:
                skipped = int((now - next_tick) / self.period) + 1
                self.overruns += skipped
                next_tick += skipped * self.period

    def _log_transition(self, name: str, up: bool, exc: BaseException | None) -> None:
        previous = self._state.get(name)
        if previous == up:
            return
        self._state[name] = up
        if up:
            if previous is False:
                log.info("telemetry probe %s is available again", name)
        elif isinstance(exc, ProbeUnavailable):
            log.info("telemetry probe %s not available: %s", name, exc)
        else:
            log.warning("telemetry probe %s not available: %s: %s", name, type(exc).__name__, exc)
