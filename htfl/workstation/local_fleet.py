"""A SuperLink and N device agents as real processes on loopback: the simulated fleet.

Every child runs in its own process group under this one's supervision; :meth:`stop` (also run
on Ctrl-C and at interpreter exit) terminates the groups and waits, so nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from htfl.devices import device_class
from htfl.ports import free_port, free_ports, wait_for_port
from htfl.workstation.deploy.pki import (
    ServerFiles,
    make_node_keys,
    make_server_files,
    public_key_pem,
    superlink_tls_argv,
)
from htfl.workstation.fleet.emulation import EMULATION_FILE, Emulation
from htfl.workstation.inventory import Host, write_local_inventory

#: Seconds between the simulated meter's samples. Its samples are window means taken at each
#: message's start and end as well (``Meter.window_means``), so a message's energy is exact at
#: any interval; 4 Hz keeps the trace's spacing regular enough for gap detection at a fifth of
#: the 20 Hz it had (each of 20 agents sampling at 20 Hz cost a tenth of a core in all).
SIMULATED_METER_INTERVAL = 0.25


def simulated_meter(cls: str) -> dict:
    """The simulated power meter of a device class: its profile's idle and busy watts."""
    profile = device_class(cls).profile
    return {
        "driver": "simulated",
        "idle_watts": profile.idle_watts,
        "busy_watts": profile.busy_watts,
        "interval": SIMULATED_METER_INTERVAL,
    }


def expand_selection(classes: dict[str, int], count: int | None = None) -> list[Host]:
    """Local hosts for a fleet, named like lab hosts: ``<class>-01``, ``<class>-02``...

    Each gets the simulated meter of its class; ports are chosen when the fleet starts.
    """
    names = [(f"{cls}-{i:02d}", cls) for cls, n in classes.items() for i in range(1, n + 1)]
    if count is not None:
        if not names:
            raise ValueError("a local fleet needs at least one device class")
        while len(names) < count:  # cycle through classes to reach the requested size
            cls = names[len(names) % len(classes)][1]
            n = sum(c == cls for _, c in names) + 1
            names.append((f"{cls}-{n:02d}", cls))
        names = names[:count]
    return [Host(name, cls, "127.0.0.1", simulated_meter(cls), free_port()) for name, cls in names]


def flower_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of Flower's processes: their own ``FLWR_HOME``, and this interpreter's
    bin directory first on PATH (Flower starts flower-superexec and flwr-serverapp by name)."""
    env = dict(os.environ if base is None else base)
    env["FLWR_HOME"] = str(flwr_home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_superlink(
    port: int,
    log: Path,
    env: Mapping[str, str],
    timeout: float = 60.0,
    tls: ServerFiles | None = None,
) -> subprocess.Popen:
    """A real Flower SuperLink (insecure, in-memory state) on loopback ``port``, in a process group
    of its own, logging to ``log``; returns once it listens (the one launcher the local fleet, the
    SSH test fleet and the benchmarks share). Stop it with :func:`stop_process_group`.
    With ``tls``: TLS on every API, and only SuperNodes whose keys were registered admitted."""
    security = ["--insecure"] if tls is None else superlink_tls_argv(tls)
    argv = [
        str(Path(sys.executable).parent / "flower-superlink"),
        *security,
        "--disable-runtime-dependency-installation",
        "--port",
        str(port),
        "--database",
        ":flwr-in-memory:",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True
        )
    try:
        wait_for_port(port, timeout, proc, log, what="SuperLink")
    except RuntimeError:
        stop_process_group(proc)
        raise
    return proc


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL it if still there after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class LocalFleet:
    devices: list[Host]
    log_dir: Path
    port: int = 0
    torch_threads: int = 1
    #: seconds between an agent's SuperLink polls while active (None: the agent's default)
    poll_seconds: float | None = None
    #: class profiles applied to the agents (cgroups, link relays); None: not applied
    emulation: Emulation | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: TLS between agents and SuperLink, and only the fleet's registered device keys admitted
    #: (CA, certificate and keys under ``log_dir/pki``)
    secure: bool = False
    #: the CA certificate to trust, once a secure fleet has started
    root_certificates: str | None = None
    #: what Flower detached (flwr-serverapp, in a session of its own), noted while its parent
    #: lived: once the SuperLink dies it is re-parented and no longer found below it
    detached: list[psutil.Process] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if self.secure and "agent" in argv and name in self._keys:
            argv = [*argv, "--root-certificates", str(self.root_certificates)]
            argv += ["--auth-private-key", str(self._keys[name])]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start(self, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(len(self.devices) + 1)
        self.port = self.port or ports[0]
        self.devices = [
            replace(d, exporter_port=d.exporter_port or port)
            for d, port in zip(self.devices, ports[1:], strict=True)
        ]
        atexit.register(self.stop)
        env = flower_env(self.log_dir / "flwr-home")
        tls = None
        if self.secure:
            tls = make_server_files((self.log_dir / "pki").resolve(), ["127.0.0.1", "localhost"])
            self.root_certificates = str(tls.ca_cert.resolve())
        self.procs["superlink"] = start_superlink(
            self.port, self.log_dir / "superlink.log", env, timeout, tls=tls
        )
        if self.secure:
            self._register_devices()
        self._start_emulation(env, timeout)
        for device in self.devices:
            self._spawn(
                device.name,
                self._limited(
                    device.name,
                    [
                        sys.executable,
                        "-m",
                        "htfl",
                        "agent",
                        "--superlink",
                        self._dial(device.name),
                        "--device-class",
                        device.device_class,
                        "--name",
                        device.name,
                        "--torch-threads",
                        str(self.torch_threads),
                        "--metrics-host",
                        "127.0.0.1",
                        "--metrics-port",
                        str(device.exporter_port),
                        # no meter of its own: none, or one the workstation reads ([power])
                        *(["--meter", json.dumps(device.meter)] if device.meter else []),
                        # each device its own data dir, unless HTFL_DATA_DIR names a shared one
                        "--data-dir",
                        env.get("HTFL_DATA_DIR") or str(self.log_dir / device.name / "data"),
                        *(["--poll-interval", str(self.poll_seconds)] if self.poll_seconds else []),
                    ],
                ),
                env,
            )
        write_local_inventory(self.inventory_path, self.devices, self.address)

    def _start_emulation(self, env: dict[str, str], timeout: float) -> None:
        """Each device's cgroup, and the relay that shapes its link (``self.procs["relay"]``)."""
        if self.emulation is None:
            return
        self.emulation.prepare()
        (self.log_dir / EMULATION_FILE).write_text(json.dumps(self.emulation.record(), indent=2))
        argv = self.emulation.relay_argv(self.address, self.log_dir)
        if argv is not None:
            proc = self._spawn("relay", argv, env)
            for port in self.emulation.relay_ports.values():
                wait_for_port(port, timeout, proc, self.log_dir / "relay.log", what="link relay")

    def _dial(self, name: str) -> str:
        """The SuperLink address device ``name`` dials (its link relay, when shaped)."""
        return self.emulation.superlink_for(name, self.address) if self.emulation else self.address

    def _limited(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run inside device ``name``'s cgroup, when it has one."""
        return self.emulation.wrap(name, argv) if self.emulation else argv

    @property
    def _keys(self) -> dict[str, Path]:
        return {d.name: self.log_dir / "pki" / f"{d.name}.key" for d in self.devices}

    def _register_devices(self) -> None:
        """Make each device's key pair and register its public key with the SuperLink."""
        from htfl.workstation.server.submit import register_nodes

        keys = {d.name: make_node_keys(self.log_dir / "pki", d.name) for d in self.devices}
        register_nodes(
            self.address,
            str(self.root_certificates),
            {name: public_key_pem(k) for name, k in keys.items()},
        )

    @property
    def inventory_path(self) -> Path:
        """The simulated fleet's inventory: the same contract as a lab's, all hosts local."""
        return self.log_dir / "inventory.yml"

    def check_alive(self) -> list[str]:
        """Names of fleet processes that have exited (a crashed agent is worth reporting)."""
        self.note_descendants()
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def note_descendants(self) -> None:
        """Remember every descendant alive now, so :meth:`stop` finds it even if its parent
        (the SuperLink) is killed first."""
        known = {p.pid for p in self.detached}
        live = _descendants([p.pid for p in self.procs.values() if p.poll() is None])
        self.detached.extend(p for p in live if p.pid not in known)

    def log_tails(self, names: list[str], lines: int = 15) -> str:
        """The last ``lines`` of the named processes' logs, headed by each log's path."""
        out = []
        for name in names:
            log = self.log_dir / f"{name}.log"
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            cause = self.emulation.exit_cause(name) if self.emulation else None
            out.append(f"--- {log}\n" + (f"{cause}\n" if cause else "") + "\n".join(tail))
        return "\n".join(out)

    def exit_report(self) -> str:
        """Empty while every fleet process runs; else which exited, with their log tails."""
        dead = self.check_alive()
        return f"fleet processes exited: {dead}\n{self.log_tails(dead)}" if dead else ""

    def wait_for_run(self, results_dir: Path, timeout: float, poll: float = 0.5) -> dict:
        """The run's ``summary.json`` once it has ended; a failed summary instead if a fleet
        process exits first (naming it, with its log) or ``timeout`` seconds pass; then
        ``cause`` says which (``fleet_exited`` or ``timeout``)."""
        summary = results_dir / "summary.json"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if summary.exists():
                data = json.loads(summary.read_text())
                if data.get("status") != "running":
                    return data
            if report := self.exit_report():
                return {"status": "failed", "error": report, "cause": "fleet_exited"}
            time.sleep(poll)
        return {"status": "failed", "error": f"timed out after {timeout:.0f} s", "cause": "timeout"}

    def stop(self, timeout: float = 10.0) -> None:
        # Flower starts flwr-serverapp in a session of its own, outside the SuperLink's process
        # group; note every descendant now, before their parents exit and they are re-parented.
        self.note_descendants()
        descendants = list(self.detached)
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Then what Flower detached, with a deadline of its own: the ServerApp writes its
        # summary as it stops, once the SuperLink is gone, and must not be SIGKILLed because
        # the agents were slow to stop. (Stopped before the SuperLink, it waits on it instead.)
        _terminate(descendants, timeout)
        self.procs.clear()
        if self.emulation is not None:
            self.emulation.stop()  # the cgroups, now that their processes are gone
        self.detached.clear()

    def __enter__(self) -> LocalFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so whoever runs a fleet stops it.

    A shell starts background jobs with SIGINT ignored, and Python then never raises
    KeyboardInterrupt; a service manager or CI timeout sends SIGTERM.
    """
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _descendants(pids: list[int]) -> list[psutil.Process]:
    """Every descendant of ``pids``, from one pass over the process table (asking each of a
    20-agent fleet's processes for its children read the whole table 21 times, every 0.5 s
    of a run: a tenth of a core on a 2-core machine)."""
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc)
    found: list[psutil.Process] = []
    todo = list(pids)
    while todo:
        kids = children.pop(todo.pop(), [])
        found.extend(kids)
        todo.extend(k.pid for k in kids)
    return found


def _terminate(procs: list[psutil.Process], timeout: float) -> None:
    """SIGTERM what is still alive of ``procs``, then SIGKILL what outlives ``timeout``."""
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
            alive.append(proc)
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=5)
