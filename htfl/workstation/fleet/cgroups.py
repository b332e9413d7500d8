"""CPU quota and memory cap for a local process: one cgroup per simulated device.

Both cgroup versions, chosen by detection: v2 (``cpu.max``, ``memory.max``, one tree) where the
unified hierarchy has the cpu and memory controllers, else v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` in the cpu hierarchy, ``memory.limit_in_bytes`` in the memory one; a
"hybrid" host such as Debian's with systemd in legacy mode has v1 controllers and an empty
cgroup2 tree). Writing cgroups needs root (or a delegated subtree). No library: the job is a
handful of file writes, and the known Python cgroup packages are v1-only or unmaintained.

A process joins its group before it runs anything: :meth:`DeviceCgroup.wrap` prefixes its
command with a shell that writes its own pid into the group, then execs it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
#: The fleet's CPU weight against everything else (default 1024 in v1, 100 in v2); within it,
#: each device's weight is proportional to its quota, so contention keeps the ratios too.
PARENT_SHARES_V1 = 262_144  # the maximum
PARENT_WEIGHT_V2 = 10_000  # the maximum


class CgroupError(RuntimeError):
    pass


def detect(root: Path = ROOT) -> str | None:
    """``"v2"``, ``"v1"``, or None when neither has both the cpu and memory controllers."""
    controllers = root / "cgroup.controllers"
    if controllers.exists() and {"cpu", "memory"} <= set(controllers.read_text().split()):
        return "v2"
    if (root / "cpu" / "cpu.cfs_quota_us").exists() and (
        root / "memory" / "memory.limit_in_bytes"
    ).exists():
        return "v1"
    return None


def unavailable_reason(root: Path = ROOT) -> str | None:
    """Why this process cannot make cgroups here (None: it can)."""
    version = detect(root)
    if version is None:
        return f"no cgroup v1 or v2 with the cpu and memory controllers under {root}"
    base = root if version == "v2" else root / "cpu"
    if not os.access(base, os.W_OK):
        return f"{base} is not writable (cgroup limits need root)"
    return None


@dataclass
class DeviceCgroup:
    name: str
    version: str
    dirs: list[Path]  # v2: one; v1: the cpu and the memory group

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started inside this group: ``sh`` moves itself in, then execs ``argv``."""
        moves = " && ".join(f"echo $$ > {shlex.quote(str(p))}" for p in self.procs_files)
        return ["/bin/sh", "-c", f'{moves} && exec "$@"', "htfl-cgroup", *argv]

    def _memory_dir(self) -> Path:
        return self.dirs[-1]

    def oom_kills(self) -> int:
        """How many processes of this group the kernel's OOM killer has killed."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self._memory_dir() / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def memory_failures(self) -> int:
        """v1's count of allocations that hit the cap (v2: ``max`` events)."""
        with contextlib.suppress(OSError, ValueError):
            if self.version == "v1":
                return int((self._memory_dir() / "memory.failcnt").read_text())
            for line in (self._memory_dir() / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        return 0


@dataclass
class CgroupTree:
    """The groups of one fleet, under ``htfl/<fleet id>``; :meth:`remove` deletes them all."""

    root: Path = ROOT
    version: str | None = None
    fleet_id: str = field(default_factory=lambda: f"fleet-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    groups: dict[str, DeviceCgroup] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (why := unavailable_reason(self.root)) is not None:
            raise CgroupError(why)
        self.version = self.version or detect(self.root)

    def _parents(self) -> list[Path]:
        if self.version == "v2":
            return [self.root / "htfl" / self.fleet_id]
        return [self.root / c / "htfl" / self.fleet_id for c in ("cpu", "memory")]

    def add(
        self, name: str, cpu_quota_us: int, cpu_period_us: int, memory_bytes: int
    ) -> DeviceCgroup:
        """A group for device ``name`` with its quota and cap; raises :class:`CgroupError`
        naming the device and the file when the kernel refuses a value."""
        cores = cpu_quota_us / cpu_period_us
        try:
            self._make_parents()
            if self.version == "v2":
                d = self._parents()[0] / name
                d.mkdir(parents=True, exist_ok=True)
                _write(d / "cpu.max", f"{cpu_quota_us} {cpu_period_us}")
                _write(d / "cpu.weight", str(min(10_000, max(1, round(100 * cores)))))
                _write(d / "memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):  # no swap to spill into: the cap is the cap
                    _write(d / "memory.swap.max", "0")
                dirs = [d]
            else:
                cpu, mem = (p / name for p in self._parents())
                cpu.mkdir(parents=True, exist_ok=True)
                mem.mkdir(parents=True, exist_ok=True)
                _write(cpu / "cpu.cfs_period_us", str(cpu_period_us))
                _write(cpu / "cpu.cfs_quota_us", str(cpu_quota_us))
                _write(cpu / "cpu.shares", str(max(2, round(1024 * cores))))
                _write(mem / "memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
                dirs = [cpu, mem]
        except OSError as err:
            self.remove()
            raise CgroupError(f"device {name}: cannot set its cgroup limits: {err}") from None
        group = DeviceCgroup(name, self.version or "", dirs)
        self.groups[name] = group
        return group

    def add_service(self, name: str) -> DeviceCgroup:
        """A group with no quota and no cap but the fleet's high CPU weight, for what stands in
        for the network (the link relay): a busy host must not slow the links down."""
        try:
            self._make_parents()
            if self.version == "v2":
                d = self._parents()[0] / name
                d.mkdir(exist_ok=True)
                _write(d / "cpu.weight", str(PARENT_WEIGHT_V2))
                dirs = [d]
            else:
                cpu, mem = (p / name for p in self._parents())
                cpu.mkdir(exist_ok=True)
                mem.mkdir(exist_ok=True)
                _write(cpu / "cpu.shares", str(PARENT_SHARES_V1))
                dirs = [cpu, mem]
        except OSError as err:
            self.remove()
            raise CgroupError(f"{name}: cannot make its cgroup: {err}") from None
        group = DeviceCgroup(name, self.version or "", dirs)
        self.groups[name] = group
        return group

    def _make_parents(self) -> None:
        """``htfl/<fleet>`` with a high CPU weight: under load from outside the fleet, a device
        still gets its quota (the quotas cap what the fleet takes in all). v2: cpu and memory
        delegated down to the fleet's parent, which v2 limits need."""
        for top in self._parents():
            if top.exists():
                continue
            if self.version == "v2":
                path = self.root
                for part in ("htfl", self.fleet_id):
                    _write(path / "cgroup.subtree_control", "+cpu +memory")
                    path = path / part
                    path.mkdir(exist_ok=True)
                    _write(path / "cpu.weight", str(PARENT_WEIGHT_V2))
                _write(path / "cgroup.subtree_control", "+cpu +memory")
            else:
                top.mkdir(parents=True, exist_ok=True)
                if top.parent.parent.name == "cpu":
                    for d in (top.parent, top):
                        _write(d / "cpu.shares", str(PARENT_SHARES_V1))

    def remove(self, timeout: float = 5.0) -> None:
        """Delete every group of the fleet (their processes must have exited; a just-killed
        one may take a moment to leave, hence the retries), then the fleet's parents."""
        dirs = [d for g in self.groups.values() for d in g.dirs] + self._parents()
        end = time.monotonic() + timeout
        for d in dirs:
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > end:
                        break
                    time.sleep(0.05)
        for parent in {d.parent for d in self._parents()}:  # htfl/, unless another fleet uses it
            with contextlib.suppress(OSError):
                parent.rmdir()
        self.groups.clear()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)
