"""Platform probes: read /proc and /sys below a configurable root.

``build_probes(platform, reader)`` returns the probe set of a platform named by
:func:`detect_platform`:

==========  ===================================================================
platform    probes (``probe`` label values)
==========  ===================================================================
linux       cpu, cpufreq, memory, thermal, netdev
jetson      linux + jetson_gpu, jetson_emc, jetson_gpu_rail (jtop where
            jetson-stats is installed, sysfs otherwise)
rk3588      linux + rk3588_gpu, rk3588_npu
x86         linux + coretemp
(any)       + nvml_gpu on x86 and linux where nvidia-ml-py imports (an optional
            dependency: absent, no NVML probe and no series from it)
android     cpu (Android variant: denied /proc/stat is "not available"),
            cpufreq, memory, thermal, netdev
==========  ===================================================================

The worker-process probe (``process``) is added by the sampler for every
platform.
"""

from __future__ import annotations

from .android import AndroidCpuProbe
from .base import Opener, Probe, ProbeUnavailable, Series, SysReader, default_opener
from .detect import PLATFORMS, detect_platform, explain_platform
from .jetson import JetsonGpuProbe
from .jetson_emc import JetsonEmcProbe, JetsonGpuRailProbe, jtop_source
from .linux import CpuFreqProbe, MemInfoProbe, NetDevProbe, ProcStatProbe, ThermalZoneProbe
from .nvml import NvmlGpuProbe, nvml_module
from .process import WorkerProcessProbe
from .rk3588 import Rk3588GpuProbe, Rk3588NpuProbe
from .x86 import CoretempProbe

__all__ = [
    "PLATFORMS",
    "AndroidCpuProbe",
    "CoretempProbe",
    "CpuFreqProbe",
    "JetsonEmcProbe",
    "JetsonGpuProbe",
    "JetsonGpuRailProbe",
    "MemInfoProbe",
    "NetDevProbe",
    "NvmlGpuProbe",
    "Opener",
    "Probe",
    "ProbeUnavailable",
    "ProcStatProbe",
    "Rk3588GpuProbe",
    "Rk3588NpuProbe",
    "Series",
    "SysReader",
    "ThermalZoneProbe",
    "WorkerProcessProbe",
    "build_probes",
    "default_opener",
    "detect_platform",
    "explain_platform",
]


def _generic(reader: SysReader) -> list[Probe]:
    return [
        ProcStatProbe(reader),
        CpuFreqProbe(reader),
        MemInfoProbe(reader),
        ThermalZoneProbe(reader),
        NetDevProbe(reader),
    ]


def build_probes(platform: str, reader: SysReader) -> list[Probe]:
    """The sysfs/procfs probes for *platform* (one of :data:`PLATFORMS`)."""
    if platform in ("linux", "x86") and nvml_module() is not None:
        return [*_sysfs_probes(platform, reader), NvmlGpuProbe(reader)]
    return _sysfs_probes(platform, reader)


def _sysfs_probes(platform: str, reader: SysReader) -> list[Probe]:
    """The sysfs/procfs probes alone."""
    if platform == "linux":
        return _generic(reader)
    if platform == "jetson":
        jtop = jtop_source()  # one client for both probes; None without jetson-stats
        return [
            *_generic(reader),
            JetsonGpuProbe(reader),
            JetsonEmcProbe(reader, jtop),
            JetsonGpuRailProbe(reader, jtop),
        ]
    if platform == "rk3588":
        return [*_generic(reader), Rk3588GpuProbe(reader), Rk3588NpuProbe(reader)]
    if platform == "x86":
        return [*_generic(reader), CoretempProbe(reader)]
    if platform == "android":
        return [
            AndroidCpuProbe(reader),
            CpuFreqProbe(reader),
            MemInfoProbe(reader),
            ThermalZoneProbe(reader),
            NetDevProbe(reader),
        ]
    raise ValueError(f"unknown platform {platform!r}; expected one of {PLATFORMS}")
