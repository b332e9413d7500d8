"""A local fleet's devices held to their class profiles: cgroups and link relays.

The processes engine (``htfl run --local-fleet N``, ``htfl.workstation.local_fleet``) hands
each agent to :class:`Emulation`: its command runs inside its own cgroup (CPU quota,
memory cap; :mod:`htfl.workstation.fleet.cgroups`), and it reaches the SuperLink through its own
relay port (latency, jitter, loss; :mod:`htfl.workstation.fleet.relay`), whose bandwidth the
kernel paces (htb classes on ``lo``, :mod:`htfl.workstation.fleet.htb`) where root and tc allow,
else the relay. Without root (or on a host without usable cgroups) the CPU and memory limits
are not applied, and the record says so and why: a figure from such a run describes the
workstation, not the class.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from htfl.ports import free_ports
from htfl.workstation.fleet import htb
from htfl.workstation.fleet.cgroups import ROOT, CgroupError, CgroupTree, DeviceCgroup
from htfl.workstation.fleet.netem import netem_available
from htfl.workstation.fleet.profiles import FleetPlan, plan_fleet

log = logging.getLogger(__name__)

EMULATION_FILE = "emulation.json"
RELAY_GROUP = "link-relay"  # the relay's cgroup, beside the devices' (named <class>-NN)


@dataclass
class Emulation:
    plan: FleetPlan
    #: link shaping by the relay (False: agents reach the SuperLink directly, unshaped)
    shape_links: bool = True
    cgroup_root: Path | None = None
    tree: CgroupTree | None = None
    groups: dict[str, DeviceCgroup] = field(default_factory=dict)
    relay_ports: dict[str, int] = field(default_factory=dict)
    #: per mechanism, how it was applied or why it was not
    applied: dict[str, str] = field(default_factory=dict)
    #: why a device died, when its limits killed it (kept when the cgroups are removed)
    causes: dict[str, str] = field(default_factory=dict)
    #: the link bandwidths' htb classes on lo (None: the relay paces them)
    shaper: htb.LoopbackShaper | None = None

    def prepare(self) -> None:
        """Make every device's cgroup (or record why not) and choose its relay port."""
        try:
            self.tree = CgroupTree(root=self.cgroup_root or ROOT)
        except CgroupError as err:
            log.warning("device CPU and memory limits not applied: %s", err)
            self.applied["cpu"] = self.applied["memory"] = f"not applied: {err}"
        else:
            for d in self.plan.devices:
                self.groups[d.name] = self.tree.add(
                    d.name, d.cpu_quota_us, d.cpu_period_us, d.memory_bytes
                )
            how = f"cgroup {self.tree.version}"
            self.applied["cpu"] = self.applied["memory"] = how
        if self.shape_links:
            ports = free_ports(len(self.plan.devices))
            self.relay_ports = {d.name: p for d, p in zip(self.plan.devices, ports, strict=True)}
            why = (
                "local processes share loopback"
                if netem_available()
                else "this kernel has no netem qdisc"
            )
            relay = f"relay (htfl.workstation.fleet.relay; {why})"
            self.applied["link"] = f"{relay}; bandwidth: {self._shape_bandwidth()}"
        else:
            self.applied["link"] = "not applied: link shaping turned off"

    def _shape_bandwidth(self) -> str:
        """Pace each relay port with htb classes on ``lo`` where root and tc allow (the relay
        then adds latency, jitter and loss only); else the relay paces. Says which, and why."""
        rates = {self.relay_ports[d.name]: d.link.bandwidth_bit_s for d in self.plan.devices}
        self.shaper, paced_by = htb.shape_loopback(rates)
        return paced_by

    def relay_argv(self, superlink: str, log_dir: Path, seed: int = 0) -> list[str] | None:
        """The relay process's command (None when links are not shaped); writes its spec."""
        if not self.relay_ports:
            return None
        spec = {
            "upstream": superlink,
            "seed": seed,
            "control": str(relay_control_path(log_dir)),  # fault injection: cut a link
            "devices": [
                {
                    "name": d.name,
                    "port": self.relay_ports[d.name],
                    "link": asdict(d.link),
                    "pace": self.shaper is None,  # htb paces where it shapes
                }
                for d in self.plan.devices
            ],
        }
        path = log_dir / "relay.json"
        path.write_text(json.dumps(spec, indent=2))
        argv = [sys.executable, "-m", "htfl.workstation.fleet.relay", str(path)]
        if self.tree is not None:  # the network must not wait for a busy host's CPU
            return self.tree.add_service(RELAY_GROUP).wrap(argv)
        return argv

    def superlink_for(self, name: str, superlink: str) -> str:
        """The address device ``name`` dials: its relay port, or the SuperLink itself."""
        port = self.relay_ports.get(name)
        return f"127.0.0.1:{port}" if port else superlink

    def wrap(self, name: str, argv: list[str]) -> list[str]:
        group = self.groups.get(name)
        return group.wrap(argv) if group else argv

    def exit_cause(self, name: str) -> str | None:
        """Why device ``name`` died, when its limits killed it (the OOM killer); else None."""
        if name in self.causes:
            return self.causes[name]
        group = self.groups.get(name)
        if group is None or group.oom_kills() == 0:
            return None
        d = self.plan.device(name)
        return (
            f"{name}: killed by the kernel's OOM killer: it exceeded its memory cap of "
            f"{d.memory_bytes / 2**20:.0f} MiB (device class {d.device_class})"
        )

    def record(self) -> dict[str, Any]:
        """The fleet's emulation as the results keep it (``emulation.json``, and merged into
        ``devices.json`` and ``summary.json`` by :func:`record_in_results`)."""
        causes = {d.name: c for d in self.plan.devices if (c := self.exit_cause(d.name))}
        return plan_record(self.plan, self.applied, causes)

    def stop(self) -> None:
        """Remove the cgroups (the fleet's processes have exited by now) and the htb classes."""
        for name in list(self.groups):
            if (cause := self.exit_cause(name)) is not None:
                self.causes[name] = cause
        if self.tree is not None:
            self.tree.remove()
        if self.shaper is not None:
            self.shaper.remove()
            self.shaper = None


def relay_control_path(log_dir: Path) -> Path:
    """The relay's control socket (``cut NAME SECONDS``): in the fleet's log directory, or
    under the temporary directory where that path is too long for a Unix socket (108 bytes)."""
    path = log_dir.resolve() / "relay.sock"
    if len(str(path).encode()) < 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"htfl-relay-{digest}.sock"


def plan_record(
    plan: FleetPlan, applied: dict[str, str], causes: dict[str, str] | None = None
) -> dict[str, Any]:
    """A fleet's emulation as the results keep it: the dilation, how each mechanism was
    applied, and each device's limits (with why its limits killed it, if they did)."""
    causes = causes or {}
    return {
        "time_dilation": plan.time_dilation,
        "host_cores": plan.host_cores,
        "applied": dict(applied),
        "devices": {
            d.name: {
                **plan.record(d.name, applied),
                **({"exit_cause": causes[d.name]} if d.name in causes else {}),
            }
            for d in plan.devices
        },
    }


# --- a lab `htfl fleet up` started: found by `htfl run` through its SuperLink address -------
LAB_FILE = "lab.json"
LABS = Path("build/fleet")  # `htfl fleet`'s working directory (relative to where it runs)


def write_lab(workdir: Path, engine: str, superlink: str, record: dict[str, Any]) -> Path:
    """``<workdir>/lab.json``: the lab's engine, SuperLink address and emulation record;
    ``htfl fleet down`` removes it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LAB_FILE
    tmp = path.with_suffix(".tmp")  # whole or not at all: `htfl run` may read it any time
    tmp.write_text(json.dumps({"engine": engine, "superlink": superlink, **record}, indent=2))
    tmp.replace(path)
    return path


def lab_for(superlink: str, labs: Path = LABS) -> dict[str, Any] | None:
    """The emulation record of the lab up under ``labs`` whose SuperLink is ``superlink``
    (an experiment's ``[superlink] address``), or None: a run against a lab's SuperLink
    records the lab's dilation and limits (``htfl run``)."""
    host, _, port = superlink.rpartition(":")
    local = {"127.0.0.1", "localhost", "0.0.0.0", "[::1]", "::1"}
    for path in sorted(labs.glob(f"*/{LAB_FILE}")) if labs.is_dir() else []:
        try:
            lab = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        lab_host, _, lab_port = str(lab.get("superlink", "")).rpartition(":")
        if lab_port == port and (lab_host == host or {lab_host, host} <= local):
            return lab
    return None


def local_emulation(classes: dict[str, int], count: int) -> Emulation:
    """The emulation of ``htfl run --local-fleet``: the class profiles of the devices it will
    start, on this host; :class:`~htfl.workstation.fleet.profiles.ProfileError` names a device
    whose quota this host cannot give."""
    from htfl.workstation.local_fleet import expand_selection

    hosts = expand_selection(classes, count)
    return Emulation(plan_fleet([(h.name, h.device_class) for h in hosts]))


def record_in_results(results_dir: Path, emulation: Emulation | dict[str, Any]) -> None:
    """Write ``emulation.json``, and add the time dilation to ``summary.json`` and each device's
    limits to its ``devices.json`` row, where the ServerApp wrote them. ``emulation`` is a
    local fleet's, or the record of a lab ``htfl fleet up`` started (:func:`lab_for`)."""
    from htfl.workstation.server.results import SUMMARY_FILE, write_json

    if not results_dir.is_dir():
        return
    if isinstance(emulation, Emulation):
        record, causes = emulation.record(), dict(emulation.causes)
    else:
        record = emulation
        causes = {n: d["exit_cause"] for n, d in record["devices"].items() if "exit_cause" in d}
    write_json(results_dir / EMULATION_FILE, record)
    summary_path = results_dir / SUMMARY_FILE
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        summary["time_dilation"] = record["time_dilation"]
        keys = ("time_dilation", "host_cores", "applied", "engine")
        summary["emulation"] = {k: record[k] for k in keys if k in record}
        if causes:  # devices the limits killed (the OOM killer), each with its cause
            summary["emulation"]["device_errors"] = causes
        write_json(summary_path, summary)
    devices_path = results_dir / "devices.json"
    if devices_path.exists():
        rows = json.loads(devices_path.read_text())
        for row in rows:
            if (limits := record["devices"].get(row.get("device"))) is not None:
                row["emulation"] = limits
        write_json(devices_path, rows)
