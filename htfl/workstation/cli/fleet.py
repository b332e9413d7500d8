"""`htfl fleet up|down|status`: a simulated lab from an inventory, as containers or processes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from htfl.cli import add_group, integer

if TYPE_CHECKING:
    from htfl.workstation.fleet.containers import ComposeFleet
    from htfl.workstation.fleet.profiles import FleetPlan
    from htfl.workstation.inventory import Host

DEFAULT_INVENTORY = Path("deploy/inventory/sim-lab.yml")
WORKDIR = Path("build/fleet")


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(
        subparsers,
        "fleet",
        help="a simulated lab from an inventory: containers or local processes",
        description="Start, inspect and stop a simulated lab: a SuperLink and one simulated "
        "device per inventory host, each under its class's profile (CPU quota, memory cap). "
        "`htfl run EXPERIMENT.toml` then runs against it unchanged (the experiment's "
        "[superlink] address is the one `up` prints).",
    )
    for action, text in (
        ("up", "start the lab (compose: detached; processes: until Ctrl-C or `fleet down`)"),
        ("down", "stop the lab; no container, network or volume is left"),
        ("status", "the lab's devices and their state"),
    ):
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument(
            "--engine",
            choices=("compose", "processes"),
            default="compose",
            help="containers (podman-compose or Docker Compose) or local processes",
        )
        p.add_argument(
            "--project",
            default="htfl",
            metavar="NAME",
            help=f"the lab's name: its containers are NAME-<device>, its files {WORKDIR}/NAME/",
        )
        if action == "up":
            p.add_argument(
                "--inventory",
                type=Path,
                default=DEFAULT_INVENTORY,
                metavar="FILE",
                help="the simulated lab's inventory (same format as the real lab's)",
            )
            p.add_argument(
                "--limit",
                default=None,
                metavar="CLASS|N",
                help="only these devices: a count N (classes in turn), or device classes "
                "and names, comma-separated (default: every device)",
            )
            p.add_argument(
                "--port",
                type=integer(1, 65535),
                default=None,
                metavar="PORT",
                help="the SuperLink's port on 127.0.0.1 (default: the inventory's "
                "htfl_superlink port, else 8000)",
            )
            p.add_argument(
                "--results",
                type=Path,
                default=Path("results"),
                metavar="DIR",
                help="where htfl run writes results (mounted into the SuperLink's container)",
            )
            p.add_argument(
                "--monitoring",
                action="store_true",
                help="also start Prometheus and Grafana (compose; their images must be "
                "pullable or present)",
            )
            p.add_argument(
                "--timeout",
                type=float,
                default=600.0,
                metavar="SECONDS",
                help="how long to wait for every device to run",
            )
        p.set_defaults(func={"up": up, "down": down, "status": status}[action])


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"htfl fleet {args.fleet_action}: error: {message}", file=sys.stderr)
    return 2


def _port(args: argparse.Namespace, superlink: str | None) -> int:
    if args.port:
        return int(args.port)
    if superlink and ":" in superlink:
        return int(superlink.rsplit(":", 1)[1])
    return 8000


def up(args: argparse.Namespace) -> int:
    from htfl.workstation.fleet.base_image import ContainerToolMissing
    from htfl.workstation.fleet.compose import LimitError, select_hosts
    from htfl.workstation.fleet.profiles import ProfileError, inventory_profiles, plan_fleet
    from htfl.workstation.inventory import InventoryError, load_inventory

    try:
        inventory = load_inventory(args.inventory)
        hosts = select_hosts(inventory, args.limit)
        # a class calibrated on a real board (profiles/<class>.yml beside the inventory)
        # follows its measured profile, the others their shipped one
        calibrated = inventory_profiles(args.inventory)
        plan = plan_fleet([(h.name, h.device_class) for h in hosts], profiles=calibrated)
    except (InventoryError, LimitError, ProfileError) as err:
        return _fail(args, str(err))
    port = _port(args, inventory.superlink)
    try:
        if args.engine == "processes":
            return _up_processes(args, hosts, plan, port)
        return _up_compose(args, hosts, plan, port)
    except ContainerToolMissing as err:
        return _fail(args, str(err))


def _compose_fleet(args: argparse.Namespace, **opts: Any) -> ComposeFleet:
    from htfl.workstation.fleet.compose import ComposeOptions
    from htfl.workstation.fleet.containers import ComposeFleet

    options = ComposeOptions(project=args.project, **opts)
    return ComposeFleet(WORKDIR.resolve() / args.project, options)


def _up_compose(args: argparse.Namespace, hosts: list[Host], plan: FleetPlan, port: int) -> int:
    from htfl.workstation.fleet import htb
    from htfl.workstation.fleet.containers import FleetError
    from htfl.workstation.fleet.emulation import plan_record, write_lab
    from htfl.workstation.fleet.netem import netem_available

    repo = Path(__file__).resolve().parents[3]
    # the kernel's netem where it has it, else the relay (a `link` service), its bandwidth paced
    # by the kernel's htb where root and tc allow
    link = "netem" if netem_available() else "relay"
    no_htb = htb.unavailable_reason()
    bandwidth = "htb" if link == "relay" and no_htb is None else "relay"
    fleet = _compose_fleet(
        args,
        port=port,
        results_dir=str(args.results.resolve()),
        repo=str(repo),
        config_dir=str(WORKDIR.resolve() / args.project),
        monitoring="on" if args.monitoring else "off",
        link=link,
        bandwidth=bandwidth,
    )
    start = time.monotonic()
    try:
        fleet.up(hosts, plan, timeout=args.timeout)
    except FleetError as err:
        return _fail(args, str(err))
    paced = (
        "kernel htb classes on the link container's ports"
        if bandwidth == "htb"
        else f"paced by the relay ({no_htb})"
    )
    applied = {
        "cpu": "compose cpus (the container's CFS quota)"
        + (", period per device (podman update)" if fleet.engine == "podman" else ""),
        "memory": "compose mem_limit (the container's memory cap)",
        "link": "netem on each container's interface and its host end"
        if link == "netem"
        else "relay (the lab's link service, htfl.workstation.fleet.relay; "
        f"this kernel has no netem qdisc); bandwidth: {paced}",
    }
    record = {"engine": "compose", **plan_record(plan, applied)}
    write_lab(fleet.workdir, "compose", f"127.0.0.1:{port}", record)
    print(
        f"{len(hosts)} devices up in {time.monotonic() - start:.0f} s ({fleet.engine}); "
        f"SuperLink at 127.0.0.1:{port}; time dilation {plan.time_dilation:.3g}; "
        f"links: {link}{', bandwidth: kernel htb' if bandwidth == 'htb' else ''}; "
        f"compose file {fleet.compose_file}"
    )
    return 0


def _state_file(args: argparse.Namespace) -> Path:
    return WORKDIR / args.project / "processes.json"


def _up_processes(args: argparse.Namespace, hosts: list[Host], plan: FleetPlan, port: int) -> int:
    from dataclasses import replace

    from htfl.workstation.fleet.emulation import LAB_FILE, Emulation, write_lab
    from htfl.workstation.local_fleet import LocalFleet, interrupt_on_signals

    state = _state_file(args)
    if state.exists() and _alive(json.loads(state.read_text())["pid"]):
        return _fail(args, f"lab {args.project} already runs (pid in {state})")
    devices = [replace(h, address="127.0.0.1", exporter_port=0) for h in hosts]
    # each agent under its class's profile: cgroup quota and cap, link relay (as --local-fleet)
    emulation = Emulation(plan)
    fleet = LocalFleet(
        devices, WORKDIR.resolve() / args.project / "logs", port=port, emulation=emulation
    )
    interrupt_on_signals()
    state.parent.mkdir(parents=True, exist_ok=True)
    try:
        fleet.start(timeout=args.timeout)
        state.write_text(
            json.dumps({"pid": os.getpid(), "port": port, "devices": [h.name for h in hosts]})
        )
        write_lab(
            state.parent, "processes", fleet.address, {"engine": "processes", **emulation.record()}
        )
        print(f"{len(hosts)} devices up as processes; SuperLink at {fleet.address}; Ctrl-C stops")
        while not (report := fleet.exit_report()):
            time.sleep(1.0)
        return _fail(args, report)
    except KeyboardInterrupt:
        return 0
    finally:
        fleet.stop()
        state.unlink(missing_ok=True)
        (state.parent / LAB_FILE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped by its parent, does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def down(args: argparse.Namespace) -> int:
    from htfl.workstation.fleet.base_image import ContainerToolMissing
    from htfl.workstation.fleet.containers import FleetError

    if args.engine == "processes":
        state = _state_file(args)
        if not state.exists():
            print(f"lab {args.project}: not running")
            return 0
        pid = json.loads(state.read_text())["pid"]
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + 60
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.2)
            if _alive(pid):
                return _fail(args, f"htfl fleet up (pid {pid}) did not stop within 60 s")
        state.unlink(missing_ok=True)
        print(f"lab {args.project}: stopped")
        return 0
    try:
        fleet = _compose_fleet(args)
        removed = fleet.down()
    except (ContainerToolMissing, FleetError) as err:
        return _fail(args, str(err))
    from htfl.workstation.fleet.emulation import LAB_FILE

    (fleet.workdir / LAB_FILE).unlink(missing_ok=True)
    n = len(removed["containers"])
    print(
        f"lab {args.project}: down ({n} containers left by compose removed)"
        if n
        else f"lab {args.project}: down"
    )
    return 0


def status(args: argparse.Namespace) -> int:
    from htfl.workstation.fleet.base_image import ContainerToolMissing

    if args.engine == "processes":
        state = _state_file(args)
        if not state.exists() or not _alive(json.loads(state.read_text())["pid"]):
            print(f"lab {args.project}: not running")
            return 0
        data = json.loads(state.read_text())
        print(f"lab {args.project}: {len(data['devices'])} devices, SuperLink port {data['port']}")
        for name in data["devices"]:
            print(f"  {name}")
        return 0
    try:
        fleet = _compose_fleet(args)
        containers = fleet.containers()
    except ContainerToolMissing as err:
        return _fail(args, str(err))
    if not containers:
        print(f"lab {args.project}: not running")
        return 0
    for c in containers:
        print(f"{c.name:32} {c.device or '-':20} {c.state}")
    return 0 if all(c.state == "running" for c in containers) else 1
