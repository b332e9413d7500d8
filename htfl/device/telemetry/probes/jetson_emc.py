"""Jetson memory (EMC) load and the GPU rail's power: through jtop where installed, sysfs otherwise.

EMC (external memory controller: the LPDDR that CPU and GPU share)
    Frequency: the BPMP clock debugfs NVIDIA documents for JetPack 5/6 (Jetson Linux Developer
    Guide, "Clocks": ``/sys/kernel/debug/bpmp/debug/clk/<clock>/rate``, Hz, here ``emc``), or
    the JetPack 4 clock debugfs ``/sys/kernel/debug/clk/emc/clk_rate``. Load: the activity
    monitor's average memory-controller activity, ``/sys/kernel/actmon_avg_activity/mc_all``
    (kHz of the EMC clock that was busy), divided by the EMC rate in kHz — what tegrastats
    prints as ``EMC_FREQ x%`` and jetson-stats' jtop as ``memory['EMC']['val']``. debugfs is
    root-only: an agent running as its own user gets these from jtop's root service, or not at
    all (the probe is then "not available", no series).

GPU rail power
    The INA3221 rail that feeds the GPU, read with the power drivers' own rail discovery
    (:mod:`htfl.device.power.drivers.ina3221`: the JetPack 4 ``ina3221x`` IIO and JetPack 5+
    hwmon layouts). The rail's name differs per module (:data:`GPU_RAILS`); on the Orin Nano,
    Orin NX and Xavier NX the GPU shares its rail with the CPU and CV engines
    (``VDD_CPU_GPU_CV``), so the series is labelled with the rail it read.

jtop (``pip install jetson-stats``, its service running) is used first where it imports: its
``jtop.memory['EMC']`` (``cur`` kHz, ``val`` percent) and ``jtop.power['rail']`` (``power``
mW per rail), per jetson-stats' documented Python API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from htfl.device.power.drivers.ina3221 import discover_rails

from .base import Probe, ProbeUnavailable, Series, SysReader, first_readable

__all__ = ["GPU_RAILS", "JetsonEmcProbe", "JetsonGpuRailProbe", "JtopSource", "jtop_source"]

EMC_UTIL = "htfl_device_emc_utilisation_ratio"
EMC_FREQ = "htfl_device_emc_frequency_hertz"
GPU_RAIL_POWER = "htfl_device_gpu_rail_power_watts"

EMC_RATE_CANDIDATES: tuple[str, ...] = (
    "sys/kernel/debug/bpmp/debug/clk/emc/rate",  # JetPack 5/6 (BPMP clocks), Hz
    "sys/kernel/debug/clk/emc/clk_rate",  # JetPack 4, Hz
)
EMC_ACTIVITY_CANDIDATES: tuple[str, ...] = (
    "sys/kernel/actmon_avg_activity/mc_all",  # kHz of busy EMC clock
)

#: The INA3221 rail that carries the GPU, by the name the module's device tree gives it.
GPU_RAILS: tuple[str, ...] = (
    "VDD_GPU_SOC",  # AGX Orin (GPU + SoC)
    "GPU",  # AGX Xavier
    "POM_5V_GPU",  # Nano (JetPack 4)
    "VDD_CPU_GPU_CV",  # Orin Nano / Orin NX / Xavier NX (shared with CPU and CV)
)


class JtopSource:
    """One long-lived jtop client (its service reads debugfs as root), shared by the probes."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self._jtop: Any = None

    def get(self) -> Any:
        if self._jtop is None:
            client = self.factory()
            client.start()  # raises when the jtop service is not running
            self._jtop = client
        if not self._jtop.ok():
            self._jtop = None
            raise ProbeUnavailable("jtop stopped answering")
        return self._jtop


def jtop_source() -> JtopSource | None:
    """A jtop source where jetson-stats is installed, else None."""
    try:
        from jtop import jtop  # type: ignore[import-not-found]
    except ImportError:
        return None
    return JtopSource(jtop)


class _JtopFirstProbe(Probe):
    """A probe that reads jetson-stats' jtop service where it runs, sysfs otherwise."""

    def __init__(self, reader: SysReader, jtop: JtopSource | None = None) -> None:
        super().__init__(reader)
        self.jtop = jtop

    def _jtop_section(self, *keys: str) -> Any:
        """``jtop.<keys[0]>[keys[1]]...``, or None where jtop is absent, not running or lacks it."""
        if self.jtop is None:
            return None
        try:
            value: Any = getattr(self.jtop.get(), keys[0])
            for key in keys[1:]:
                value = value[key]
        except Exception:  # not running, no such entry: fall back to sysfs
            return None
        return value

    def _from_jtop(self) -> list[Series] | None:
        """The series from jtop, or None to read sysfs."""
        raise NotImplementedError

    def _from_sysfs(self) -> list[Series]:
        raise NotImplementedError

    def read(self) -> list[Series]:
        via_jtop = self._from_jtop()
        return via_jtop if via_jtop is not None else self._from_sysfs()


class JetsonEmcProbe(_JtopFirstProbe):
    """EMC load (ratio) and frequency of a Jetson."""

    name = "jetson_emc"

    def _from_jtop(self) -> list[Series] | None:
        emc = self._jtop_section("memory", "EMC")
        if emc is None:
            return None
        return [
            Series.of(EMC_UTIL, float(emc["val"]) / 100.0),
            Series.of(EMC_FREQ, float(emc["cur"]) * 1000.0),
        ]

    def _from_sysfs(self) -> list[Series]:
        try:
            _, text = first_readable(self.reader, EMC_RATE_CANDIDATES)
        except (ProbeUnavailable, PermissionError):
            raise ProbeUnavailable("EMC rate not readable (debugfs: root or jtop)") from None
        hertz = int(text.strip())
        out = [Series.of(EMC_FREQ, hertz)]
        try:
            _, activity = first_readable(self.reader, EMC_ACTIVITY_CANDIDATES)
        except (ProbeUnavailable, PermissionError):
            return out  # frequency alone (no actmon on this module)
        if hertz > 0:
            ratio = int(activity.strip()) / (hertz / 1000.0)
            out.append(Series.of(EMC_UTIL, min(max(ratio, 0.0), 1.0)))
        return out


class JetsonGpuRailProbe(_JtopFirstProbe):
    """Power of the INA3221 rail that feeds the GPU, labelled with the rail's name."""

    name = "jetson_gpu_rail"

    def _from_jtop(self) -> list[Series] | None:
        rails = self._jtop_section("power", "rail")
        if rails is None:
            return None
        for name in GPU_RAILS:
            if name in rails:
                return [Series.of(GPU_RAIL_POWER, float(rails[name]["power"]) / 1000, rail=name)]
        return None

    def _from_sysfs(self) -> list[Series]:
        rails = discover_rails(self.reader.root)
        for name in GPU_RAILS:
            if name in rails:
                watts, _, _ = rails[name].read()
                return [Series.of(GPU_RAIL_POWER, watts, rail=name)]
        raise ProbeUnavailable(f"no INA3221 GPU rail ({', '.join(GPU_RAILS)})")
