"""Link bandwidth paced by the kernel: one htb class per device port and direction (``tc``).

Why: the relay (``htfl.workstation.fleet.relay``) is a Python process, and it paces bytes only
as well as it is scheduled; on a busy host a 1 Gbit/s link (8 ms per MB) came out 24-31 % slow
through it. The kernel's htb qdisc paces in the network stack instead. The test machines'
kernel has htb and tbf but no netem, so the relay keeps what htb cannot give (latency, jitter,
loss) and stops pacing where htb shapes (its spec's ``pace: false``).

Where: every device of a fleet reaches the SuperLink through its own relay port, so on the
interface that carries that port's traffic a device's upload is the traffic *to* the port
(``dport``) and its download the traffic *from* it (``sport``): two htb classes per device,
chosen by u32 filters on the port. Traffic no filter picks goes by htb's direct queue, unshaped.

* Local processes (:class:`LoopbackShaper`): the host's ``lo``. Its root qdisc is one per host,
  so fleets share it: each fleet has its own filter priority and classes, a lock serialises
  changes, and the last fleet to leave deletes the root qdisc (``lo`` is back to ``noqueue``).
  Each fleet's share is in a file under :data:`STATE_DIR` naming its process, so a fleet killed
  before it could clean up is cleaned up by the next one that starts or stops.
* Containers (:func:`shape_link_container`): the ``link`` container (the relay) has interfaces
  of its own: downloads leave its ``eth0`` (set in its namespace with ``nsenter``), uploads
  leave the host's end of its veth pair towards it. Both go when the container does.

Needs root and ``tc`` (iproute2); :func:`unavailable_reason` says why not, and the caller then
leaves the pacing to the relay and records why.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/htfl/htb-lo")
LOOPBACK = "lo"
ROOT_HANDLE = "1:"
#: htb hands a class at most this many bytes per turn; set so tc does not warn at 1 Gbit/s
QUANTUM = 65_536
#: The bucket holds this much of the line's time: htb dequeues on a timer, and a busy host runs
#: it late; tokens kept for 0.5 ms make up for a late dequeue (with tc's default, ~1.4 kB,
#: 1 MB at 1 Gbit/s through the relay took 25-40 % long on the loaded test machine; with
#: 0.5 ms, 10-20 %).
#: The price: a transfer's first 0.5 ms of data goes at once (62 kB at 1 Gbit/s).
BURST_SECONDS = 0.0005
MIN_BURST_BYTES = 1600
FIRST_PREF = 100  # filter priorities of fleets (one each), from here up


class ShapingError(RuntimeError):
    """``tc`` refused a command (the message names it and what tc said)."""


def unavailable_reason() -> str | None:
    """Why this process cannot shape with tc here (None: it can try)."""
    if os.geteuid() != 0:
        return "tc qdiscs need root"
    if shutil.which("tc") is None:
        return "no tc (install iproute2)"
    return None


def shape_loopback(rates: Mapping[int, float]) -> tuple[LoopbackShaper | None, str]:
    """Pace each relay port on ``lo`` at its bandwidth (``{port: bit_s}``) where root and tc
    allow: the shaper (None: the relay must pace) and a line saying who paces, and why."""
    if (why := unavailable_reason()) is not None:
        return None, f"paced by the relay ({why})"
    shaper = LoopbackShaper()
    try:
        shaper.shape(rates)
    except (ShapingError, OSError) as err:
        log.warning("link bandwidth left to the relay: %s", err)
        return None, f"paced by the relay (tc htb failed: {err})"
    return shaper, "kernel htb classes on lo, one per relay port and direction"


def tc(*args: str, netns_pid: int | None = None, check: bool = True) -> str:
    """Run ``tc args`` (in process ``netns_pid``'s network namespace when given)."""
    argv = ["tc", *args]
    if netns_pid is not None:
        argv = ["nsenter", "-t", str(netns_pid), "-n", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise ShapingError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def rate(bit_s: float) -> str:
    return f"{max(8, round(bit_s))}bit"


def class_args(dev: str, minor: int, bit_s: float) -> list[str]:
    """An htb class ``1:<minor>`` pacing at ``bit_s`` (no borrowing: ceil = rate)."""
    r, b = rate(bit_s), str(max(MIN_BURST_BYTES, round(bit_s / 8 * BURST_SECONDS)))
    return ["class", "replace", "dev", dev, "parent", ROOT_HANDLE, "classid", f"1:{minor:x}",
            "htb", "rate", r, "ceil", r, "burst", b, "cburst", b,
            "quantum", str(QUANTUM)]  # fmt: skip


def filter_args(dev: str, pref: int, direction: str, port: int, minor: int) -> list[str]:
    """A u32 filter sending TCP segments to (``dport``) or from (``sport``) ``port`` to
    class ``1:<minor>``."""
    return ["filter", "add", "dev", dev, "parent", ROOT_HANDLE, "protocol", "ip", "pref",
            str(pref), "u32", "match", "ip", direction, str(port), "0xffff",
            "flowid", f"1:{minor:x}"]  # fmt: skip


def class_minors(dev: str, netns_pid: int | None = None) -> set[int]:
    """The minor ids of the htb classes under ``1:`` on ``dev``."""
    out = tc("class", "show", "dev", dev, netns_pid=netns_pid, check=False)
    return {int(m, 16) for m in re.findall(r"^class htb 1:([0-9a-f]+) ", out, re.M)}


def root_is_htb(dev: str, netns_pid: int | None = None) -> bool:
    out = tc("qdisc", "show", "dev", dev, netns_pid=netns_pid, check=False)
    return bool(re.search(r"^qdisc htb 1: root", out, re.M))


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class LoopbackShaper:
    """One fleet's share of ``lo``'s htb: its filter priority and its classes."""

    state_dir: Path = STATE_DIR
    dev: str = LOOPBACK
    owner: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    pref: int | None = None
    minors: list[int] = field(default_factory=list)

    @property
    def _state(self) -> Path:
        return self.state_dir / f"{self.owner}.json"

    def shape(self, ports: Mapping[int, float]) -> None:
        """Pace each port's two directions at its bandwidth (bit/s): ``{port: bit_s}``.
        Raises :class:`ShapingError` (having undone its part) when tc refuses."""
        with _locked(self.state_dir):
            _collect_stale(self.state_dir, self.dev)
            taken = {s["pref"] for s in _shares(self.state_dir)}
            self.pref = next(p for p in range(FIRST_PREF, 65_000) if p not in taken)
            # written first: if this process dies half way, the next fleet undoes what was done
            self._save()
            try:
                if not root_is_htb(self.dev):
                    tc("qdisc", "replace", "dev", self.dev, "root", "handle", ROOT_HANDLE, "htb")
                used = class_minors(self.dev)
                free = (m for m in range(0x10, 0xFFFF) if m not in used)
                for port, bit_s in ports.items():
                    for direction in ("dport", "sport"):
                        minor = next(free)
                        self.minors.append(minor)
                        self._save()
                        tc(*class_args(self.dev, minor, bit_s))
                        tc(*filter_args(self.dev, self.pref, direction, port, minor))
            except ShapingError:
                _undo(self.dev, self._share())
                self._state.unlink(missing_ok=True)
                raise

    def remove(self) -> None:
        """Take this fleet's filters and classes off ``lo`` (and the root qdisc, when no other
        fleet shapes there); also clean up after fleets that died without doing so."""
        if self.pref is None:
            return
        with _locked(self.state_dir):
            _undo(self.dev, self._share())
            self._state.unlink(missing_ok=True)
            _collect_stale(self.state_dir, self.dev)
            _drop_root_if_unused(self.state_dir, self.dev)
        self.pref, self.minors = None, []

    def _share(self) -> dict:
        return {"pid": os.getpid(), "pref": self.pref, "minors": self.minors, "dev": self.dev}

    def _save(self) -> None:
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._share()))
        tmp.replace(self._state)


def _shares(state_dir: Path) -> list[dict]:
    out = []
    for path in sorted(state_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append({**json.loads(path.read_text()), "path": str(path)})
    return out


def _undo(dev: str, share: dict) -> None:
    if share.get("pref") is not None:
        tc("filter", "del", "dev", dev, "parent", ROOT_HANDLE, "protocol", "ip", "pref",
           str(share["pref"]), check=False)  # fmt: skip
    for minor in share.get("minors", []):
        tc("class", "del", "dev", dev, "classid", f"1:{minor:x}", check=False)


def _collect_stale(state_dir: Path, dev: str) -> None:
    """Undo the shares of fleets whose process has gone (killed before they cleaned up)."""
    for share in _shares(state_dir):
        if share.get("dev") == dev and not psutil.pid_exists(int(share.get("pid", 0))):
            _undo(dev, share)
            Path(share["path"]).unlink(missing_ok=True)
    _drop_root_if_unused(state_dir, dev)


def _drop_root_if_unused(state_dir: Path, dev: str) -> None:
    if any(s.get("dev") == dev for s in _shares(state_dir)) or not root_is_htb(dev):
        return
    if not class_minors(dev):  # classes of someone else's: not ours to delete
        tc("qdisc", "del", "dev", dev, "root", check=False)


def shape_link_container(pid: int, host_peer: str, ports: Mapping[int, float]) -> None:
    """Pace each relay port of the ``link`` container (process ``pid``) at its bandwidth:
    downloads leave the container's ``eth0`` from the port, uploads leave the host's end of
    its veth pair (``host_peer``) to it. Both interfaces are the container's alone, so the
    root qdisc is replaced outright; they go with the container."""
    for dev, netns, direction in (("eth0", pid, "sport"), (host_peer, None, "dport")):
        tc("qdisc", "replace", "dev", dev, "root", "handle", ROOT_HANDLE, "htb", netns_pid=netns)
        for minor, (port, bit_s) in enumerate(ports.items(), start=0x10):
            tc(*class_args(dev, minor, bit_s), netns_pid=netns)
            tc(*filter_args(dev, FIRST_PREF, direction, port, minor), netns_pid=netns)
