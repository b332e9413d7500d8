"""NVIDIA discrete GPUs through NVML, read with ``nvidia-ml-py`` (``import pynvml``).

An optional import: a device without the package, without the driver's ``libnvidia-ml``, or
without a GPU has no ``nvml_gpu`` probe and exports no GPU series from it (``build_probes``
adds the probe only where ``pynvml`` imports). Jetsons have no NVML (their GPU is read from
sysfs by :mod:`.jetson`).

Per GPU (``gpu`` = NVML index), from NVML's documented calls:
``nvmlDeviceGetUtilizationRates(h).gpu`` (percent of the last sample period a kernel ran),
``nvmlDeviceGetClockInfo(h, NVML_CLOCK_GRAPHICS)`` (MHz), ``nvmlDeviceGetMemoryInfo(h)``
(``used`` / ``total`` bytes of the GPU's own memory).
"""

from __future__ import annotations

from typing import Any

from .base import Probe, ProbeUnavailable, Series, SysReader

__all__ = ["NvmlGpuProbe", "nvml_module"]

GPU_UTIL = "htfl_device_gpu_utilisation_ratio"
GPU_FREQ = "htfl_device_gpu_frequency_hertz"
GPU_MEM_USED = "htfl_device_gpu_memory_used_bytes"
GPU_MEM_TOTAL = "htfl_device_gpu_memory_total_bytes"


def nvml_module() -> Any | None:
    """``pynvml`` where nvidia-ml-py is installed, else None."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    return pynvml


class NvmlGpuProbe(Probe):
    """Utilisation, graphics clock and memory of every NVIDIA GPU NVML sees."""

    name = "nvml_gpu"

    def __init__(self, reader: SysReader, nvml: Any | None = None) -> None:
        super().__init__(reader)
        self.nvml: Any = nvml if nvml is not None else nvml_module()
        self._initialised = False

    def _handles(self) -> list[Any]:
        nvml = self.nvml
        if nvml is None:
            raise ProbeUnavailable("nvidia-ml-py (pynvml) is not installed")
        try:
            if not self._initialised:
                nvml.nvmlInit()
                self._initialised = True
            count = nvml.nvmlDeviceGetCount()
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as err:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            self._initialised = False
            raise ProbeUnavailable(f"NVML: {err}") from None

    def read(self) -> list[Series]:
        handles = self._handles()
        if not handles:
            raise ProbeUnavailable("NVML sees no GPU")
        nvml = self.nvml
        out: list[Series] = []
        for index, handle in enumerate(handles):
            gpu = str(index)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            mhz = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_GRAPHICS)
            out += [
                Series.of(GPU_UTIL, float(util.gpu) / 100.0, gpu=gpu),
                Series.of(GPU_FREQ, float(mhz) * 1e6, gpu=gpu),
                Series.of(GPU_MEM_USED, float(memory.used), gpu=gpu),
                Series.of(GPU_MEM_TOTAL, float(memory.total), gpu=gpu),
            ]
        return out
