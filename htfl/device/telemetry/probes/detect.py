"""Pick the probe set for the device under *root*.

Rules, applied in this order; the first that matches wins (paths are relative
to *root*, strings are compared case-insensitively):

1. ``android`` -- the environment has ``ANDROID_ROOT``, ``ANDROID_DATA`` or
   ``TERMUX_VERSION``, or ``system/build.prop`` exists.  Checked first because
   Android also runs on Tegra and Rockchip SoCs, and what an app may read there
   is what matters.
2. ``jetson`` -- ``etc/nv_tegra_release`` exists, or the device-tree ``model``
   contains ``jetson``, or its ``compatible`` list contains ``nvidia,tegra``.
3. ``rk3588`` -- the device-tree ``compatible`` list contains
   ``rockchip,rk3588`` (this also matches ``rockchip,rk3588s``), or ``model``
   contains ``rk3588`` or ``orange pi 5``.
4. ``x86`` -- ``proc/cpuinfo`` has a ``vendor_id`` line (``GenuineIntel``,
   ``AuthenticAMD``...; ARM kernels print ``CPU implementer`` instead), or the
   DMI ``sys/class/dmi/id/board_vendor`` or ``sys_vendor`` is readable on a
   machine without a device tree (LattePanda boards report ``LattePanda`` /
   ``DFRobot`` there).
5. ``linux`` -- anything else: the generic probes only.

The device tree is read from ``proc/device-tree/`` or, failing that,
``sys/firmware/devicetree/base/``; its strings are NUL-separated.  Unreadable or
missing files simply do not match.  The environment is only consulted when
*root* is ``/``: a fixture tree describes another device than the one running
the code (pass *environ* explicitly to override).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .base import Opener, SysReader

__all__ = ["PLATFORMS", "detect_platform", "explain_platform"]

PLATFORMS = ("android", "jetson", "rk3588", "x86", "linux")

_ANDROID_ENV = ("ANDROID_ROOT", "ANDROID_DATA", "TERMUX_VERSION")
_DT_DIRS = ("proc/device-tree", "sys/firmware/devicetree/base")


def _read(reader: SysReader, rel: str) -> str | None:
    try:
        return reader.read_text(rel)
    except (OSError, ValueError):
        return None


def _device_tree(reader: SysReader, name: str) -> str | None:
    for base in _DT_DIRS:
        text = _read(reader, f"{base}/{name}")
        if text is not None:
            return text.replace("\x00", "\n").strip().casefold()
    return None


def _has_device_tree(reader: SysReader) -> bool:
    return any(reader.exists(base) for base in _DT_DIRS)


def explain_platform(
    root: str | os.PathLike[str] = "/",
    environ: Mapping[str, str] | None = None,
    opener: Opener | None = None,
) -> tuple[str, str]:
    """``(platform, reason)``; see the module docstring for the rules."""
    reader = SysReader(root, opener)
    if environ is None:
        environ = os.environ if os.path.realpath(reader.root) == "/" else {}

    for var in _ANDROID_ENV:
        if environ.get(var):
            return "android", f"environment variable {var} is set"
    if reader.exists("system/build.prop"):
        return "android", "system/build.prop exists"

    model = _device_tree(reader, "model") or ""
    compatible = _device_tree(reader, "compatible") or ""
    if reader.exists("etc/nv_tegra_release"):
        return "jetson", "etc/nv_tegra_release exists"
    if "jetson" in model:
        return "jetson", f"device-tree model {model!r}"
    if "nvidia,tegra" in compatible:
        return "jetson", "device-tree compatible lists nvidia,tegra*"

    if "rockchip,rk3588" in compatible:
        return "rk3588", "device-tree compatible lists rockchip,rk3588*"
    if "rk3588" in model or "orange pi 5" in model:
        return "rk3588", f"device-tree model {model!r}"

    cpuinfo = _read(reader, "proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "vendor_id" and value.strip():
            return "x86", f"proc/cpuinfo vendor_id {value.strip()!r}"
    if not _has_device_tree(reader):
        for name in ("board_vendor", "sys_vendor"):
            vendor = _read(reader, f"sys/class/dmi/id/{name}")
            if vendor and vendor.strip():
                return "x86", f"DMI {name} {vendor.strip()!r}"

    return "linux", "no platform-specific marker found"


def detect_platform(
    root: str | os.PathLike[str] = "/",
    environ: Mapping[str, str] | None = None,
    opener: Opener | None = None,
) -> str:
    """One of :data:`PLATFORMS` for the device whose filesystem is at *root*."""
    return explain_platform(root, environ, opener)[0]
