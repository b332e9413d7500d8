"""Shared helpers for the telemetry tests."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from htfl.device.telemetry.probes import SysReader, build_probes, default_opener
from htfl.device.telemetry.sampler import Sampler, Snapshot


def values(snap: Snapshot, name: str, key: str | None = None) -> dict:
    """``{label value of *key*: value}`` (or ``{(): value}`` without *key*)."""
    out = {}
    for labels, value in snap.values(name).items():
        d = dict(labels)
        out[d[key] if key else ()] = value
    return out


def denying_opener(root: Path, denied: Iterable[str]):
    """An opener raising PermissionError (EACCES) for *denied* files under *root*.

    Paths are compared after resolving symlinks, so denying the real file behind
    ``sys/class/thermal/thermal_zone1`` also denies the path through the link.
    """
    blocked = {os.path.realpath(root / rel) for rel in denied}
    calls: list[str] = []

    def opener(path: str) -> str:
        calls.append(path)
        if os.path.realpath(path) in blocked:
            raise PermissionError(13, "Permission denied", path)
        return default_opener(path)

    opener.calls = calls  # type: ignore[attr-defined]
    return opener


def sampler_for(root: Path, platform: str, opener=None, rate_hz: float = 1.0) -> Sampler:
    reader = SysReader(root, opener)
    return Sampler(build_probes(platform, reader), rate_hz)
