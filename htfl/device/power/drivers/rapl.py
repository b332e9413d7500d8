"""Intel RAPL energy counters through the Linux powercap interface (LattePanda boards).

.. warning::
   RAPL's ``package`` domain (``intel-rapl:0``) covers the **CPU package only** (cores,
   integrated GPU, uncore/memory controller): not the board, RAM chips, eMMC/SSD, Wi-Fi, USB
   devices, fans or voltage-regulator losses. Board power is typically several watts higher.
   Use a USB/mains meter for whole-device energy and RAPL to split out the SoC's share.

Files, relative to ``root``::

    sys/class/powercap/intel-rapl:0/name                  "package-0"
    sys/class/powercap/intel-rapl:0/energy_uj             cumulative energy, microjoules
    sys/class/powercap/intel-rapl:0/max_energy_range_uj   the counter wraps to 0 past this

Power is the counter delta over the elapsed (monotonic) time between two reads, so a sample
is the *average* power over that window and is timestamped at the window's middle. A delta
that goes negative is a wrap-around: ``delta = now + (max_range - before)``. On kernels since
5.10 ``energy_uj`` is readable by root only (CVE-2020-8694); reading it as a user raises
``PermissionError``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from htfl.device.power.meter import Clock, Meter, PowerSample


def _read_int(path: str) -> int:
    with open(path) as fh:
        return int(fh.read().strip())


def counter_delta(before: int, now: int, max_range: int) -> int:
    """Energy increase between two readings of a counter that wraps past ``max_range``."""
    if now >= before:
        return now - before
    return now + (max_range - before)


def list_domains(root: str = "/") -> dict[str, str]:
    """Powercap RAPL domains under ``root``: directory name -> domain name."""
    base = os.path.join(root, "sys/class/powercap")
    out: dict[str, str] = {}
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for entry in entries:
        if not entry.startswith("intel-rapl:"):
            continue
        try:
            with open(os.path.join(base, entry, "name")) as fh:
                out[entry] = fh.read().strip()
        except OSError:
            out[entry] = "?"
    return out


class RaplMeter(Meter):
    """Average power of one RAPL domain (default the CPU package, ``intel-rapl:0``).

    The first :meth:`read` after :meth:`open` waits until ``min_interval`` has passed since the
    baseline reading, as does any read that comes sooner than that after the previous one
    (very short windows quantise badly: the counter advances in steps of ~15-60 uJ and is
    refreshed about every millisecond).
    """

    driver = "rapl"

    def __init__(
        self,
        *,
        domain: str = "intel-rapl:0",
        root: str = "/",
        min_interval: float = 0.05,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(device=device, source=source, clock=clock)
        self.domain = domain
        self.root = root
        self.min_interval = float(min_interval)
        self.directory = os.path.join(root, "sys/class/powercap", domain)
        self.domain_name: str | None = None
        self.max_range = 0
        self.wraps = 0
        self.energy_joules = 0.0  # counted since open, from the counter itself
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_energy = 0
        self._last_mono = 0.0
        self._last_wall = 0.0

    def open(self) -> None:
        self.max_range = _read_int(os.path.join(self.directory, "max_energy_range_uj"))
        try:
            with open(os.path.join(self.directory, "name")) as fh:
                self.domain_name = fh.read().strip()
        except OSError:
            self.domain_name = None
        self._last_energy = _read_int(os.path.join(self.directory, "energy_uj"))
        self._last_mono = self._monotonic()
        self._last_wall = self._clock()
        self._is_open = True

    def read(self) -> PowerSample:
        if not self._is_open:
            raise FileNotFoundError(f"{self.directory}: not open")
        wait = self.min_interval - (self._monotonic() - self._last_mono)
        if wait > 0:
            self._sleep(wait)
        energy = _read_int(os.path.join(self.directory, "energy_uj"))
        mono = self._monotonic()
        wall = self._clock()
        if energy < self._last_energy:
            self.wraps += 1
        delta_uj = counter_delta(self._last_energy, energy, self.max_range)
        dt = mono - self._last_mono
        t_mid = (self._last_wall + wall) / 2
        self._last_energy, self._last_mono, self._last_wall = energy, mono, wall
        self.energy_joules += delta_uj / 1e6
        watts = delta_uj / 1e6 / dt if dt > 0 else 0.0
        return PowerSample(t_mid, watts, None, None, self.source)

    def close(self) -> None:
        self._is_open = False
