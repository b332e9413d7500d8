"""The compose engine: a simulated lab as containers, run by podman-compose or Docker Compose.

``up`` writes the lab's compose file and monitoring files under
``build/fleet/<project>/``, builds the image when it is missing, starts the stack detached and
returns once the SuperLink answers on the host and every device container runs; a container
that exits is an error naming the device, with its last log lines, and the stack is taken down.
``down`` removes the stack, then checks by label and name that no container, network or
volume of the project is left (podman-compose 1.0.3 does not always remove them) and removes
what is.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from htfl.workstation.fleet.base_image import ContainerToolMissing, podman_env
from htfl.workstation.fleet.compose import ComposeOptions, monitoring_files, write_compose
from htfl.workstation.fleet.profiles import FleetPlan
from htfl.workstation.inventory import Host

INSTALL_HINT = (
    "install podman and podman-compose (`apt-get install podman podman-compose runc`) "
    "or Docker with its compose plugin"
)


class FleetError(RuntimeError):
    """The lab could not be brought up (or down); the message names the device."""


def compose_tool() -> tuple[list[str], str]:
    """``(compose command, container command)``: podman-compose with podman, else Docker
    Compose with docker; :class:`ContainerToolMissing` says what to install."""
    if shutil.which("podman-compose") and shutil.which("podman"):
        return ["podman-compose"], "podman"
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return ["docker", "compose"], "docker"
    missing = [p for p in ("podman", "podman-compose") if not shutil.which(p)]
    raise ContainerToolMissing(f"no compose engine: {', '.join(missing)} missing; {INSTALL_HINT}")


@dataclass(frozen=True)
class Container:
    name: str
    device: str  # "" for the SuperLink and monitoring
    state: str  # running, exited, created, ...


@dataclass
class ComposeFleet:
    """One project's stack. ``workdir`` holds its compose file; ``opts.project`` names it."""

    workdir: Path
    opts: ComposeOptions
    tool: list[str] = field(default_factory=list)
    engine: str = ""

    def __post_init__(self) -> None:
        if not self.tool:
            self.tool, self.engine = compose_tool()

    @property
    def compose_file(self) -> Path:
        return self.workdir / "compose.yml"

    def _env(self) -> dict[str, str]:
        return podman_env() if self.engine == "podman" else dict(os.environ)

    def _compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        argv = [*self.tool, "-f", str(self.compose_file), "-p", self.opts.project, *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=self._env(), timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            if check:
                raise FleetError(
                    f"{' '.join(argv[:1] + list(args))}: no end after {timeout:.0f} s"
                ) from None
            return ""  # the caller checks the outcome itself (down: what is left)
        if check and done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise FleetError(f"{' '.join(argv[:1] + list(args))} failed:\n{tail}")
        return done.stdout

    def _engine(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.engine, *args],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
            check=False,
        )

    def write(self, hosts: list[Host], plan: FleetPlan) -> Path:
        monitoring_files(hosts, self.workdir)
        Path(self.opts.results_dir).mkdir(parents=True, exist_ok=True)
        return write_compose(self.compose_file, hosts, plan, self.opts)

    def image_present(self) -> bool:
        return self._engine("image", "inspect", self.opts.image).returncode == 0

    def up(self, hosts: list[Host], plan: FleetPlan, timeout: float = 300) -> None:
        self.write(hosts, plan)
        if not self.image_present():
            if self.engine != "podman":
                self._compose("build", "superlink", timeout=3600)
            else:
                from htfl.workstation.fleet.image import build_image

                build_image(self.opts.image, self.opts.base_image)
        self._compose("up", "-d", timeout=timeout)
        try:
            self.wait_ready([h.name for h in hosts], timeout)
            if self.opts.link == "netem":
                self.shape_links(plan)
            if self.opts.link == "relay" and self.opts.bandwidth == "htb":
                self.shape_bandwidth(plan)
            if self.engine == "podman":
                self.set_cpu_periods(plan)
        except BaseException:
            self.down()
            raise

    def _pid(self, container: str) -> int:
        done = self._engine("inspect", "--format", "{{.State.Pid}}", container)
        return int(done.stdout.strip())

    def shape_bandwidth(self, plan: FleetPlan) -> None:
        """htb classes pacing each device's port of the ``link`` container, both ways
        (``bandwidth="htb"``; the relay there then adds latency, jitter and loss only). They go
        with the container's interfaces at ``down``."""
        from htfl.workstation.fleet import htb
        from htfl.workstation.fleet.compose import link_ports
        from htfl.workstation.fleet.netem import peer_interface

        ports = link_ports(plan)
        try:
            pid = self._pid(f"{self.opts.project}-link")
            rates = {ports[d.name]: d.link.bandwidth_bit_s for d in plan.devices}
            htb.shape_link_container(pid, peer_interface(pid), rates)
        except (ValueError, RuntimeError, subprocess.SubprocessError) as err:
            raise FleetError(
                f"link: cannot pace the devices' bandwidth with tc htb: {err}"
            ) from None

    def set_cpu_periods(self, plan: FleetPlan) -> None:
        """Each device container's CFS period and quota as the plan has them (compose's
        ``cpus`` gives every container the default 100 ms period; see
        ``htfl.workstation.fleet.profiles.CPU_BURST_US`` for why the period follows the quota).
        podman only: Docker refuses a period beside ``cpus``."""
        for d in plan.devices:
            done = self._engine(
                "update",
                "--cpu-period",
                str(d.cpu_period_us),
                "--cpu-quota",
                str(d.cpu_quota_us),
                f"{self.opts.project}-{d.name}",
            )
            if done.returncode != 0:
                raise FleetError(
                    f"device {d.name}: cannot set its CPU period and quota: "
                    f"{(done.stderr or done.stdout).strip()}"
                )

    def shape_links(self, plan: FleetPlan) -> None:
        """netem on every device container's interface and its host end (``link="netem"``,
        chosen where the kernel has netem); a failure names the device."""
        from htfl.workstation.fleet.netem import shape_container

        for d in plan.devices:
            try:
                shape_container(self._pid(f"{self.opts.project}-{d.name}"), d.link)
            except (ValueError, RuntimeError, subprocess.SubprocessError) as err:
                detail = getattr(err, "stderr", "") or ""
                raise FleetError(
                    f"device {d.name}: cannot shape its link with netem: {err} {detail}"
                ) from None

    def containers(self) -> list[Container]:
        """This project's containers (by its label), whatever their state."""
        label = f"label=htfl.fleet={self.opts.project}"
        rows: list[tuple[str, str]] = []
        if self.engine == "podman":  # podman 4.3's {{.State}} is a sentence; its JSON is not
            done = self._engine("ps", "-a", "--filter", label, "--format", "json")
            for item in json.loads(done.stdout or "[]"):
                names = item.get("Names") or [""]
                rows.append((names[0] if isinstance(names, list) else names, item["State"]))
        else:
            done = self._engine("ps", "-a", "--filter", label, "--format", "{{.Names}}\t{{.State}}")
            for line in done.stdout.splitlines():
                name, tab, state = line.partition("\t")
                if tab:
                    rows.append((name, state))
        found = []
        prefix = f"{self.opts.project}-"
        for name, state in rows:
            device = name[len(prefix) :] if name.startswith(prefix) else name
            if device in ("superlink", "link", "prometheus", "grafana"):
                device = ""
            found.append(Container(name, device, state.strip().lower()))
        return found

    def logs(self, container: str, lines: int = 15) -> str:
        done = self._engine("logs", "--tail", str(lines), container)
        return (done.stdout + done.stderr).strip()

    def exited(self) -> list[Container]:
        return [c for c in self.containers() if c.state not in ("running", "created")]

    def wait_ready(self, devices: list[str], timeout: float, settle: float = 3.0) -> None:
        """Until the SuperLink answers on the host and every device's container runs (and
        still runs ``settle`` seconds later); :class:`FleetError` names an exited device."""
        end = time.monotonic() + timeout
        while True:
            if dead := self.exited():
                raise FleetError(self.exit_report(dead))
            running = {c.device or c.name for c in self.containers() if c.state == "running"}
            link = self._port_open()
            if (
                link
                and all(d in running for d in devices)
                and f"{self.opts.project}-superlink" in running
            ):
                break
            if time.monotonic() > end:
                missing = [d for d in devices if d not in running]
                raise FleetError(
                    f"the lab was not up within {timeout:.0f} s: "
                    + (
                        f"SuperLink not answering on 127.0.0.1:{self.opts.port}; "
                        if not link
                        else ""
                    )
                    + (f"not running: {', '.join(missing)}" if missing else "")
                )
            time.sleep(0.5)
        time.sleep(settle)
        if dead := self.exited():
            raise FleetError(self.exit_report(dead))

    def exit_report(self, dead: list[Container]) -> str:
        parts = []
        for c in dead:
            who = f"device {c.device}" if c.device else c.name
            parts.append(f"{who}: container {c.name} {c.state}\n{self.logs(c.name)}")
        return "\n".join(parts)

    def _port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex(("127.0.0.1", self.opts.port)) == 0

    def leftovers(self) -> dict[str, list[str]]:
        """What of this project still exists: containers, networks, volumes."""
        project = self.opts.project
        containers = [c.name for c in self.containers()]
        nets = self._engine("network", "ls", "--format", "{{.Name}}").stdout.split()
        vols = self._engine("volume", "ls", "--format", "{{.Name}}").stdout.split()
        return {
            "containers": containers,
            "networks": [n for n in nets if n.startswith(f"{project}_")],
            "volumes": [v for v in vols if v.startswith(f"{project}_")],
        }

    def down(self, timeout: float | None = None) -> dict[str, list[str]]:
        """Stop and remove the stack and its volumes; returns what compose left and was
        removed here. Compose stops containers one by one, so its time is bounded by their
        number; past it, or where compose fails, what is left is removed by force."""
        if timeout is None:
            timeout = 60 + 5 * len(self.containers())
        if self.compose_file.exists():
            # Docker Compose stops profiled services only when the profile is named;
            # podman-compose 1.0.3 knows no profiles (and no such option)
            profile = ["--profile", "monitoring"] if self.engine == "docker" else []
            self._compose(*profile, "down", "-v", timeout=timeout, check=False)
        left = self.leftovers()
        if left["containers"]:
            self._engine("rm", "-f", "-v", *left["containers"])
        for net in left["networks"]:
            self._engine("network", "rm", "-f", net)
        for vol in left["volumes"]:
            self._engine("volume", "rm", "-f", vol)
        still = self.leftovers()
        if any(still.values()):
            raise FleetError(f"could not remove {self.opts.project}'s {still}")
        return left


def read_plan(compose_file: Path) -> dict:
    """The ``x-htfl`` record of a written compose file (dilation, host cores, devices)."""
    import yaml

    doc = yaml.safe_load(compose_file.read_text()) or {}
    return doc.get("x-htfl", {})
