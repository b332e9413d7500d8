"""Rockchip RK3588/RK3588S (Orange Pi 5B), Rockchip BSP kernel 5.10 / 6.1.

Mali-G610 GPU
    ``/sys/class/devfreq/fb000000.gpu/load`` reads ``"<percent>@<frequency>Hz"``,
    e.g. ``37@600000000Hz``: the devfreq governor's busy percentage of the last
    window and the current frequency.  Exported as a ratio and in hertz.

NPU (3 cores)
    ``/sys/kernel/debug/rknpu/load`` (debugfs, normally readable by root only;
    ``/proc/rknpu/load`` on kernels built with the rknpu procfs option) reads
    ``NPU load:  Core0: 25%, Core1:  0%, Core2:  7%,``.  The driver prints the
    percentage with ``%2.d``, which renders 0 as blanks (``Core1:   %``), so an
    empty number means 0.  A single-core layout (``NPU load:  25%,``) is
    reported as core ``0``.  If debugfs is not mounted or not readable the NPU
    probe is down; nothing else is affected.

Temperatures
    Thermal zones are named ``soc-thermal``, ``bigcore0-thermal``,
    ``bigcore1-thermal``, ``littlecore-thermal``, ``center-thermal``,
    ``gpu-thermal`` and ``npu-thermal``; the generic thermal probe exports them
    with ``sensor`` set to that name.

The GPU and NPU share the board's LPDDR4/5 with the CPU: their memory use is part
of ``htfl_device_memory_*``.
"""

from __future__ import annotations

import re

from .base import Probe, ProbeUnavailable, Series, first_readable

__all__ = [
    "GPU_LOAD_CANDIDATES",
    "NPU_LOAD_CANDIDATES",
    "Rk3588GpuProbe",
    "Rk3588NpuProbe",
    "parse_devfreq_load",
    "parse_npu_load",
]

GPU_UTIL = "htfl_device_gpu_utilisation_ratio"
GPU_FREQ = "htfl_device_gpu_frequency_hertz"
NPU_UTIL = "htfl_device_npu_utilisation_ratio"

GPU_LOAD_CANDIDATES: tuple[str, ...] = (
    "sys/class/devfreq/fb000000.gpu/load",
    "sys/devices/platform/fb000000.gpu/devfreq/fb000000.gpu/load",
)
NPU_LOAD_CANDIDATES: tuple[str, ...] = (
    "sys/kernel/debug/rknpu/load",
    "proc/rknpu/load",
)

_DEVFREQ_LOAD = re.compile(r"^\s*(\d+)\s*@\s*(\d+)\s*(?:Hz)?\s*$", re.IGNORECASE)
_NPU_CORE = re.compile(r"Core(\d+):\s*(\d*)\s*%")
_NPU_SINGLE = re.compile(r"NPU load:\s*(\d*)\s*%")


def parse_devfreq_load(text: str) -> tuple[float, int]:
    """``"37@600000000Hz"`` -> ``(0.37, 600000000)``."""
    match = _DEVFREQ_LOAD.match(text.strip())
    if not match:
        raise ValueError(f"devfreq load: unexpected {text.strip()[:40]!r}")
    percent, freq = int(match.group(1)), int(match.group(2))
    if percent > 100:
        raise ValueError(f"devfreq load: {percent}% > 100%")
    return percent / 100.0, freq


def parse_npu_load(text: str) -> dict[str, float]:
    """``{"0": 0.25, "1": 0.0, "2": 0.07}`` from the rknpu ``load`` file."""
    if "NPU load" not in text:
        raise ValueError(f"rknpu load: unexpected {text.strip()[:60]!r}")
    cores = {core: int(pct or 0) for core, pct in _NPU_CORE.findall(text)}
    if not cores:
        single = _NPU_SINGLE.search(text)
        if not single:
            raise ValueError(f"rknpu load: no percentage in {text.strip()[:60]!r}")
        cores = {"0": int(single.group(1) or 0)}
    if any(pct > 100 for pct in cores.values()):
        raise ValueError(f"rknpu load: percentage > 100 in {text.strip()[:60]!r}")
    return {core: pct / 100.0 for core, pct in cores.items()}


class Rk3588GpuProbe(Probe):
    """Mali GPU utilisation and frequency from its devfreq ``load`` attribute."""

    name = "rk3588_gpu"

    def __init__(self, reader, candidates: tuple[str, ...] = GPU_LOAD_CANDIDATES) -> None:
        super().__init__(reader)
        self.candidates = tuple(candidates)

    def read(self) -> list[Series]:
        try:
            _, text = first_readable(self.reader, self.candidates)
        except ProbeUnavailable:
            raise ProbeUnavailable("no fb000000.gpu devfreq load file") from None
        ratio, freq = parse_devfreq_load(text)
        return [
            Series.of(GPU_UTIL, ratio, gpu="0"),
            Series.of(GPU_FREQ, freq, gpu="0"),
        ]


class Rk3588NpuProbe(Probe):
    """Per-core NPU utilisation from the rknpu driver's ``load`` file."""

    name = "rk3588_npu"

    def __init__(self, reader, candidates: tuple[str, ...] = NPU_LOAD_CANDIDATES) -> None:
        super().__init__(reader)
        self.candidates = tuple(candidates)

    def read(self) -> list[Series]:
        try:
            _, text = first_readable(self.reader, self.candidates)
        except ProbeUnavailable:
            raise ProbeUnavailable("no rknpu load file (debugfs not mounted?)") from None
        return [
            Series.of(NPU_UTIL, ratio, core=core) for core, ratio in parse_npu_load(text).items()
        ]
