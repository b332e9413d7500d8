"""Android phones running the agent inside Termux (no root).

What an app may read differs from a Linux board:

* ``/proc/stat`` is denied by SELinux to apps since Android 8 (EACCES).  The
  ``cpu`` probe then reports ``htfl_device_probe_up{probe="cpu"} 0`` and the
  device-wide and per-core utilisation series are omitted: there is no honest
  way to estimate them.  The worker's *own* CPU time and utilisation are still
  exported: the worker-process probe falls back from psutil (which needs
  ``/proc/stat`` for the boot time) to ``/proc/<pid>/stat`` and finally to
  ``os.times()`` (see :mod:`.process`).
* ``/sys/class/thermal`` is often partly restricted: unreadable zones are
  skipped, and the ``thermal`` probe is down only if no zone can be read.
  Some vendor zones do not follow the millidegree ABI; values are exported as
  read (divided by 1000), so check a phone's zones before trusting them.
* ``cpufreq``, ``/proc/meminfo`` and ``/proc/net/dev`` are normally readable;
  they use the generic probes and degrade the same way if a vendor locks them.
"""

from __future__ import annotations

from .base import ProbeUnavailable, Series
from .linux import ProcStatProbe

__all__ = ["AndroidCpuProbe"]


class AndroidCpuProbe(ProcStatProbe):
    """/proc/stat utilisation when readable; "not available" when denied."""

    name = "cpu"

    def read(self) -> list[Series]:
        try:
            return super().read()
        except PermissionError:
            raise ProbeUnavailable(
                "/proc/stat is not readable (Android 8+ SELinux policy): device-wide CPU "
                "utilisation not available; the worker's own CPU time is still exported"
            ) from None
