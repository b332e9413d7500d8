"""A simulated meter: a linear power model driven by real CPU activity.

``watts = idle_watts + (busy_watts - idle_watts) * utilisation`` where ``utilisation`` in
``[0, 1]`` is the CPU time consumed by a process tree (the process ``pid`` and all its live
descendants, plus descendants it has already reaped) between two reads, divided by the
elapsed wall time and by ``cpu_count`` (the number of cores of the device being modelled).
Optional Gaussian noise (``noise_watts``, reproducible with ``seed``) is added and the result
is clamped at zero. Use it for emulated devices in the simulator, where there is no meter.
"""

from __future__ import annotations

import os
import random
import time

import psutil

from htfl.device.power.meter import Clock, Meter, PowerSample


class ProcessTree:
    """CPU time of a process and its descendants, cheap enough to read at 20 Hz.

    Listing descendants means reading ``/proc/*/stat`` of every process on the machine, which at
    20 Hz in each of 20 simulated agents cost more CPU than the agents' own work; the list is
    therefore refreshed at most every ``relist_seconds``. A child born and gone between two
    refreshes is still counted once its parent in the tree reaps it (``children_*`` times).
    """

    def __init__(self, root: psutil.Process, relist_seconds: float = 1.0) -> None:
        self.root = root
        self.relist_seconds = relist_seconds
        self._children: list[psutil.Process] = []
        self._listed_at = -float("inf")

    def cpu_seconds(self) -> float:
        times = self.root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        now = time.monotonic()
        if now - self._listed_at >= self.relist_seconds:
            try:
                self._children = self.root.children(recursive=True)
            except psutil.Error:
                self._children = []
            self._listed_at = now
        for child in self._children:
            try:
                ct = child.cpu_times()
            except psutil.Error:
                continue  # exited since it was listed
            total += ct.user + ct.system
        return total


class SimulatedMeter(Meter):
    """Power model of a device class, driven by the CPU utilisation of a process tree."""

    driver = "simulated"
    window_means = True  # utilisation is measured over the window since the last read

    def __init__(
        self,
        *,
        idle_watts: float,
        busy_watts: float,
        pid: int | None = None,
        cpu_count: int | None = None,
        noise_watts: float = 0.0,
        seed: int | None = None,
        volts: float = 5.0,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(device=device, source=source, clock=clock)
        if busy_watts < idle_watts:
            raise ValueError("busy_watts must be >= idle_watts")
        self.idle_watts = float(idle_watts)
        self.busy_watts = float(busy_watts)
        self.pid = pid if pid is not None else os.getpid()
        self.cpu_count = cpu_count or psutil.cpu_count() or 1
        self.noise_watts = float(noise_watts)
        self.volts = float(volts)
        self.utilisation = 0.0
        self.window_cpu_seconds = 0.0  # CPU time the tree used between the last two reads
        self.window_seconds = 0.0
        self._rng = random.Random(seed)
        self._tree: ProcessTree | None = None
        self._last_cpu = 0.0
        self._last_mono = 0.0

    def open(self) -> None:
        try:
            self._tree = ProcessTree(psutil.Process(self.pid))
            self._last_cpu = self._tree.cpu_seconds()
        except psutil.NoSuchProcess as err:
            raise ProcessLookupError(f"no process {self.pid}") from err
        self._last_mono = time.monotonic()
        self._is_open = True

    def close(self) -> None:
        self._tree = None
        self._is_open = False

    def power_at(self, utilisation: float) -> float:
        """Model power for a utilisation in ``[0, 1]`` (without noise)."""
        u = min(max(utilisation, 0.0), 1.0)
        return self.idle_watts + (self.busy_watts - self.idle_watts) * u

    def read(self) -> PowerSample:
        if self._tree is None:
            raise ProcessLookupError("simulated meter is not open")
        try:
            cpu = self._tree.cpu_seconds()
        except psutil.NoSuchProcess as err:
            raise ProcessLookupError(f"process {self.pid} exited") from err
        mono = time.monotonic()
        elapsed = mono - self._last_mono
        if elapsed > 0:
            used = max(cpu - self._last_cpu, 0.0)  # reaped-late children can make it dip
            self.window_cpu_seconds, self.window_seconds = used, elapsed
            self.utilisation = min(used / (elapsed * self.cpu_count), 1.0)
        self._last_cpu, self._last_mono = cpu, mono
        watts = self.power_at(self.utilisation)
        if self.noise_watts > 0:
            watts = max(0.0, watts + self._rng.gauss(0.0, self.noise_watts))
        return PowerSample(self._clock(), watts, self.volts, watts / self.volts, self.source)
