"""NVIDIA Jetson (Nano/TX2/Xavier on JetPack 4, Orin on JetPack 5 and 6).

GPU load
    The integrated GPU's driver exposes a ``load`` attribute in per-mille
    (0..1000) of the last sampling window.  Its sysfs location changed across
    JetPack releases, so :data:`GPU_LOAD_CANDIDATES` is probed in order and the
    first readable path is remembered (and re-probed if it stops working).

GPU frequency
    The GPU's devfreq device (``cur_freq`` in Hz) is looked up next to the load
    file (``<gpu dir>/devfreq/*/cur_freq``) or under ``/sys/class/devfreq``.
    A missing frequency does not make the probe fail.

GPU memory
    Jetson GPUs have no dedicated memory: the GPU allocates from the same LPDDR
    as the CPU, so GPU memory use is already part of
    ``htfl_device_memory_total_bytes``/``htfl_device_memory_available_bytes`` and
    no separate GPU memory metric is exported (``htfl_device_info`` carries
    ``gpu_memory="shared"``).

Temperatures (``CPU-therm``, ``GPU-therm``, ``tj-thermal``...) come from the
generic thermal-zone probe.
"""

from __future__ import annotations

import os

from .base import Probe, ProbeUnavailable, Series, first_readable

__all__ = ["GPU_FREQ_CANDIDATES", "GPU_LOAD_CANDIDATES", "JetsonGpuProbe"]

GPU_UTIL = "htfl_device_gpu_utilisation_ratio"
GPU_FREQ = "htfl_device_gpu_frequency_hertz"

GPU_LOAD_CANDIDATES: tuple[str, ...] = (
    "sys/devices/gpu.0/load",  # Nano / TX2 / Xavier, JetPack 4
    "sys/devices/platform/gpu.0/load",
    "sys/devices/17000000.ga10b/load",  # Orin, JetPack 5
    "sys/devices/platform/17000000.ga10b/load",
    "sys/devices/platform/17000000.gpu/load",
    "sys/devices/platform/bus@0/17000000.gpu/load",  # Orin, JetPack 6
    "sys/devices/17000000.gv11b/load",  # Xavier
    "sys/devices/platform/17000000.gv11b/load",
    "sys/devices/57000000.gpu/load",  # Nano, some L4T builds
)

GPU_FREQ_CANDIDATES: tuple[str, ...] = (
    "sys/class/devfreq/57000000.gpu/cur_freq",
    "sys/class/devfreq/17000000.gv11b/cur_freq",
    "sys/class/devfreq/17000000.ga10b/cur_freq",
    "sys/class/devfreq/17000000.gpu/cur_freq",
)


class JetsonGpuProbe(Probe):
    """GPU utilisation (per-mille -> ratio) and frequency of a Jetson."""

    name = "jetson_gpu"

    def __init__(
        self,
        reader,
        load_candidates: tuple[str, ...] = GPU_LOAD_CANDIDATES,
        freq_candidates: tuple[str, ...] = GPU_FREQ_CANDIDATES,
    ) -> None:
        super().__init__(reader)
        self.load_candidates = tuple(load_candidates)
        self.freq_candidates = tuple(freq_candidates)
        self._load_path: str | None = None
        self._freq_path: str | None = None

    def _read_load(self) -> int:
        if self._load_path is not None:
            try:
                return int(self.reader.read_line(self._load_path))
            except OSError:
                self._load_path = None  # re-probe the whole list below
        rel, text = first_readable(self.reader, self.load_candidates)
        value = int(text.strip())
        self._load_path = rel
        return value

    def _freq_candidates(self) -> list[str]:
        local: list[str] = []
        if self._load_path is not None:
            gpu_dir = os.path.dirname(self._load_path)
            local = self.discover(f"{gpu_dir}/devfreq/*/cur_freq")
        return [*local, *self.freq_candidates]

    def _read_freq(self) -> int | None:
        try:
            if self._freq_path is not None:
                return self.reader.read_int(self._freq_path)
            rel, text = first_readable(self.reader, self._freq_candidates())
            value = int(text.strip())
            self._freq_path = rel
            return value
        except (OSError, ValueError, ProbeUnavailable):
            self._freq_path = None
            return None

    def read(self) -> list[Series]:
        try:
            permille = self._read_load()
        except ProbeUnavailable:
            raise ProbeUnavailable("no Jetson GPU load file among the candidates") from None
        if not 0 <= permille <= 1000:
            raise ValueError(f"GPU load {permille} outside 0..1000 per-mille")
        out = [Series.of(GPU_UTIL, permille / 1000.0, gpu="0")]
        freq = self._read_freq()
        if freq is not None and freq >= 0:
            out.append(Series.of(GPU_FREQ, freq, gpu="0"))
        return out
