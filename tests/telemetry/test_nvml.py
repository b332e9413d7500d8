"""The NVML probe: optional (absent package → no probe), and what it reads per GPU.

No NVIDIA GPU or NVML library is here, so ``FakeNvml`` stands in for the ``pynvml`` module:
the calls and structures of NVML's API reference (``nvmlDeviceGetUtilizationRates`` → ``.gpu``
percent, ``nvmlDeviceGetMemoryInfo`` → ``.used``/``.total`` bytes, ``nvmlDeviceGetClockInfo``
in MHz), not this probe's code.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from htfl.device.telemetry.probes import NvmlGpuProbe, ProbeUnavailable, SysReader, build_probes
from htfl.device.telemetry.probes.nvml import nvml_module


class FakeNvml:
    NVML_CLOCK_GRAPHICS = 0

    def __init__(self, gpus: int = 2, fail_init: bool = False) -> None:
        self.gpus, self.fail_init, self.inits = gpus, fail_init, 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int):
        return SimpleNamespace(gpu=40 + h, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: int):
        return SimpleNamespace(total=80 * 2**30, used=(h + 1) * 2**30, free=0)

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        assert kind == self.NVML_CLOCK_GRAPHICS
        return 1980


def test_every_gpu_reports_utilisation_clock_and_memory() -> None:
    fake = FakeNvml(gpus=2)
    series = NvmlGpuProbe(SysReader("/"), nvml=fake).read()
    got = {(s.name, dict(s.labels)["gpu"]): s.value for s in series}
    assert got[("htfl_device_gpu_utilisation_ratio", "1")] == pytest.approx(0.41)
    assert got[("htfl_device_gpu_frequency_hertz", "0")] == 1980e6
    assert got[("htfl_device_gpu_memory_used_bytes", "1")] == 2 * 2**30
    assert got[("htfl_device_gpu_memory_total_bytes", "0")] == 80 * 2**30
    assert len(series) == 8


def test_without_nvml_the_probe_is_unavailable_not_an_error() -> None:
    with pytest.raises(ProbeUnavailable, match="NVML: NVML Shared Library Not Found"):
        NvmlGpuProbe(SysReader("/"), nvml=FakeNvml(fail_init=True)).read()
    with pytest.raises(ProbeUnavailable, match="no GPU"):
        NvmlGpuProbe(SysReader("/"), nvml=FakeNvml(gpus=0)).read()


def test_build_probes_adds_nvml_only_where_pynvml_imports() -> None:
    names = [p.name for p in build_probes("x86", SysReader("/"))]
    assert ("nvml_gpu" in names) == (nvml_module() is not None)
    assert "nvml_gpu" not in [p.name for p in build_probes("jetson", SysReader("/"))]
