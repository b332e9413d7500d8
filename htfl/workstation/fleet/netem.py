"""The kernel's own link shaping, ``tc netem``, where the kernel has it.

netem shapes an interface: bandwidth (``rate``), delay with jitter, and loss of packets (real
packet loss, recovered by the kernel's TCP). It suits a device with an interface of its own,
such as a container's ``eth0`` (set from inside its network namespace, which needs
CAP_NET_ADMIN). Local processes share the loopback interface, so the processes engine always
uses the relay (``htfl.workstation.fleet.relay``); and kernels without the ``sch_netem``
module (this project's test machines: ``tc`` there has tbf and htb only) use the relay for
containers too. :func:`netem_available` says which applies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from htfl.workstation.fleet.profiles import LinkShape


def netem_available() -> bool:
    """Whether this kernel accepts a netem qdisc: tried on the loopback of a throwaway network
    namespace (root and iproute2 needed; False without them), which is then deleted."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        return False
    ns = f"htfl-netem-probe-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        return False
    try:
        probe = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem"]
        return subprocess.run([*probe, "delay", "1ms"], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def netem_command(link: LinkShape, device: str = "eth0") -> list[str]:
    """The ``tc`` command that gives ``device`` this link, one way (egress; apply it on both
    ends, or on the device's side only for what it sends)."""
    return [
        "tc",
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "netem",
        "rate",
        f"{link.bandwidth_bit_s / 1e3:.0f}kbit",
        "delay",
        f"{link.latency_s * 1e3:.3f}ms",
        f"{link.jitter_s * 1e3:.3f}ms",
        "loss",
        f"{link.loss * 100:.4f}%",
    ]


def peer_interface(pid: int, device: str = "eth0") -> str:
    """The host's end of the veth pair whose other end is ``device`` in process ``pid``'s
    network namespace (a container on a bridge network): ``ip`` there names the peer's index
    (``eth0@if12``; /sys would show the host's namespace, not the container's)."""
    done = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    index = peer_index(done.stdout)
    for path in Path("/sys/class/net").iterdir():
        with contextlib.suppress(OSError):
            if (path / "ifindex").read_text().strip() == str(index):
                return path.name
    raise RuntimeError(f"no host interface with index {index} (the peer of pid {pid}'s {device})")


def peer_index(ip_link_line: str) -> int:
    """The peer's interface index in ``ip -o link`` output (``3: eth0@if12: <...>``)."""
    name = ip_link_line.split(":", 2)[1].strip()
    _, at, index = name.partition("@if")
    if not at or not index.isdigit():
        raise RuntimeError(f"not one end of a veth pair: {ip_link_line.strip()!r}")
    return int(index)


def shape_container(pid: int, link: LinkShape, device: str = "eth0") -> list[list[str]]:
    """Give a container's link both ways: netem on its ``device`` (what it sends) and on the
    host's end of its veth pair (what it receives). Returns the commands run."""
    up = ["nsenter", "-t", str(pid), "-n", *netem_command(link, device)]
    down = netem_command(link, peer_interface(pid, device))
    for argv in (up, down):
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    return [up, down]
