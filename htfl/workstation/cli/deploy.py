"""`htfl deploy ACTION`: provision and run the device agents with deploy/'s Ansible playbooks.

Each action is one playbook (deploy/<action>.yml) run through ansible-runner against the
inventory: progress per host while it runs, then a table of hosts ok / changed / unreachable /
failed. A device that fails or does not answer never stops the others; the exit status is 1
when any did, 2 when the run itself could not happen (bad inventory, limit, wheel).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from htfl.cli import LazyConsole, add_group, integer
from htfl.workstation.deploy.paths import PLAYBOOKS

if TYPE_CHECKING:
    from rich.table import Table

# Not a terminal (CI, a log file): wide enough that the tables do not wrap.
console = LazyConsole(
    stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160
)

ACTION_HELP = {
    "provision": "install or update everything a device needs (idempotent)",
    "start": "start the agents",
    "stop": "stop the agents (and check that none is left)",
    "status": "agent state, pid, uptime, restarts and build per device",
    "logs": "fetch each agent's log to the workstation",
    "update": "roll a new htfl build out a few devices at a time",
    "facts": "check each device is what the inventory says (arch, memory, Python, torch, clock)",
}
#: The actions that install an htfl build (and so take --wheel).
INSTALLING = ("provision", "update")


def _common_options() -> argparse.ArgumentParser:
    """Options every action takes (a parent parser, so each action's help lists them)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--limit",
        default=None,
        metavar="HOSTS",
        help="device classes (jetson-nano), host names or groups, comma-separated "
        "(default: every device of the inventory)",
    )
    common.add_argument(
        "--inventory",
        type=Path,
        default=None,
        metavar="PATH",
        help="inventory file or directory (default: deploy/inventory/testbed.yml)",
    )
    common.add_argument(
        "--forks",
        type=integer(1),
        default=None,
        metavar="N",
        help="devices worked on at once (default: deploy/ansible.cfg's forks)",
    )
    common.add_argument(
        "-e",
        "--extra-var",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="an Ansible variable for this run, VALUE read as YAML; repeatable (default: none)",
    )
    common.add_argument(
        "--artifacts",
        type=Path,
        default=Path("results/deploy"),
        metavar="DIR",
        help="where ansible-runner keeps each run's events and output",
    )
    common.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the outcome per host (and status/facts records) as JSON (default: none)",
    )
    common.add_argument(
        "--pki",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the lab's CA, SuperLink certificate and device keys are kept when the "
        "inventory sets htfl_secure (default: $HTFL_PKI_DIR, else ~/.config/htfl/pki)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="more Ansible output (-vvv: most)"
    )
    return common


def register(subparsers: argparse._SubParsersAction) -> None:
    actions = add_group(
        subparsers,
        "deploy",
        help="provision and run the agents on real devices (Ansible)",
        description="Each action runs one playbook of deploy/ (deploy/<action>.yml) against "
        "the inventory through ansible-runner: progress per host, then a table of hosts ok, "
        "changed, unreachable, failed. Exit status 1 when a device failed or did not answer, "
        "2 when the run itself could not happen (deploy/README.md).",
    )
    common = _common_options()
    for action in PLAYBOOKS:
        p = actions.add_parser(
            action,
            parents=[common],
            help=ACTION_HELP[action],
            description=f"htfl deploy {action}: {ACTION_HELP[action]}.",
        )
        if action in INSTALLING:
            p.add_argument(
                "--wheel",
                type=Path,
                default=None,
                metavar="FILE",
                help="install this htfl wheel (default: build one from this checkout)",
            )
        if action == "provision":
            p.add_argument(
                "--datasets",
                type=Path,
                default=None,
                metavar="DIR",
                help="deliver DIR/common and DIR/<host> into each device's data directory, "
                "as laid out by `htfl data stage` (default: no datasets)",
            )
        if action == "logs":
            p.add_argument(
                "--dest",
                type=Path,
                default=None,
                metavar="DIR",
                help="where to put them (default: results/device-logs/<time>/)",
            )
        p.set_defaults(func=run, action=action)


def _limit(raw: str | None, inventory: Any) -> str | None:
    """Class names become their group names (jetson-nano -> jetson_nano); the rest stays."""
    if not raw:
        return None
    from htfl.devices import DEVICE_CLASSES

    parts = []
    for token in (t.strip() for t in raw.split(",")):
        if not token:
            continue
        if token in DEVICE_CLASSES:
            if not inventory.of_class(token):
                raise ValueError(f"--limit {token}: no device of that class in the inventory")
            parts.append(token.replace("-", "_"))
        else:
            parts.append(token)
    return ",".join(parts)


def _extra_vars(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"-e {pair!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


class Progress:
    """Per-host progress: a live table on a terminal, otherwise one line per change."""

    def __init__(self, live: bool) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.live = None
        if live:
            from rich.live import Live

            self.live = Live(self._table(), console=console.get(), refresh_per_second=4)

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in ("host", "tasks", "changed", "state", "task"):
            table.add_column(col)
        for host, row in sorted(self.rows.items()):
            table.add_row(host, str(row["tasks"]), str(row["changed"]), row["state"], row["task"])
        return table

    def __enter__(self) -> Progress:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event", "")
        data = ev.get("event_data", {}) or {}
        if kind == "playbook_on_play_start" and not self.live:
            console.print(f"[bold]{data.get('play', '')}[/bold]")
            return
        host = data.get("host")
        if not host or not kind.startswith("runner_on_") or kind == "runner_on_start":
            return
        row = self.rows.setdefault(host, {"tasks": 0, "changed": 0, "state": "ok", "task": ""})
        row["task"] = data.get("task", "")
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            row["tasks"] += 1
            if res.get("changed"):
                row["changed"] += 1
                self._line(host, "changed", row["task"], "yellow")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            row["tasks"] += 1
            row["state"] = "failed"
            self._line(host, "failed", f"{row['task']}: {res.get('msg', '')}", "red")
        elif kind == "runner_on_unreachable":
            row["state"] = "unreachable"
            self._line(host, "unreachable", res.get("msg", ""), "red")
        elif kind == "runner_on_skipped":
            row["tasks"] += 1
        if self.live:
            self.live.update(self._table())

    def _line(self, host: str, what: str, text: str, colour: str) -> None:
        text = " ".join(str(text).split())
        if len(text) > 160:
            text = text[:157] + "..."
        console.print(f"  [{colour}]{what:<11}[/{colour}] {host:<18} {text}", markup=True)


def recap_table(result: Any, classes: dict[str, str]) -> Table:
    from rich.table import Table

    table = Table(title=f"htfl deploy {result.playbook}: {result.seconds:.1f} s")
    for col in ("host", "class", "ok", "changed", "unreachable", "failed", "skipped", "result"):
        table.add_column(col, justify="right" if col in ("ok", "changed", "skipped") else "left")
    colours = {"unreachable": "red", "failed": "red", "changed": "yellow", "ok": "green"}
    for name in sorted(result.hosts):
        h = result.hosts[name]
        if name not in classes and h.outcome == "skipped":
            continue  # not a device (the workstation) and nothing was done there
        colour = colours.get(h.outcome, "white")
        table.add_row(
            name,
            classes.get(name, "-"),
            str(h.ok),
            str(h.changed),
            str(h.unreachable),
            str(h.failed),
            str(h.skipped),
            f"[{colour}]{h.outcome}[/{colour}]",
        )
    return table


def _since(epoch: Any) -> str:
    try:
        value = int(epoch)
    except (TypeError, ValueError):
        return "-"
    if value <= 0:
        return "-"
    age = max(0, int(time.time()) - value)
    return f"{time.strftime('%H:%M:%S', time.localtime(value))} ({age // 60}m{age % 60:02d}s)"


def status_table(published: dict[str, dict[str, Any]], current_build: str | None) -> Table:
    from rich.table import Table

    table = Table(title="agents")
    for col in ("host", "class", "manager", "state", "pid", "up since", "restarts", "build"):
        table.add_column(col)
    for host in sorted(published):
        st = published[host].get("htfl_agent_status")
        if not st:
            continue
        build = (st.get("build") or "-")[:12]
        if current_build and st.get("build"):
            build += " (current)" if st["build"] == current_build else " (OLD)"
        state = st.get("state", "?")
        colour = "green" if state == "running" else "red" if state == "failed" else "yellow"
        table.add_row(
            host,
            st.get("class", "-"),
            st.get("manager", "-"),
            f"[{colour}]{state}[/{colour}]",
            str(st.get("pid") or "-"),
            _since(st.get("since")),
            str(st.get("restarts", "-")),
            build,
        )
    return table


def cuda_cell(facts: dict[str, Any]) -> str:
    """The facts table's "cuda" cell: "yes (GPU name)" when a tiny forward/backward ran on the
    board's GPU, "no" on a CPU board, else what failed."""
    cuda = str(facts.get("cuda", "-"))
    name = facts.get("accelerator")
    return f"{cuda} ({name})" if name and cuda == "yes" else cuda


def facts_table(published: dict[str, dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="device facts")
    cols = ("host", "class", "arch", "MiB", "os", "python", "torch", "cuda", "flwr", "clock ms")
    for col in cols:
        table.add_column(col)
    for host in sorted(published):
        f = published[host].get("htfl_device_facts")
        if not f:
            continue
        clock = f"{f.get('clock_offset_ms', 0):+.1f} ±{f.get('clock_uncertainty_ms', 0):.1f}"
        table.add_row(
            host,
            str(f.get("class", "-")),
            str(f.get("arch", "-")),
            str(f.get("memory_mb", "-")),
            str(f.get("os", "-")),
            str(f.get("python", "-")),
            str(f.get("torch") or "-"),
            cuda_cell(f),
            str(f.get("flwr") or "-"),
            clock,
        )
    return table


def _current_build(tree: Path) -> str | None:
    from htfl.workstation.deploy.wheel import sha256_of

    wheels = sorted((tree / ".build").glob("htfl*.whl"), key=lambda p: p.stat().st_mtime)
    return sha256_of(wheels[-1]) if wheels else None


def _write_json(path: Path, result: Any, classes: dict[str, str]) -> None:
    import json
    from dataclasses import asdict

    doc = {
        "playbook": result.playbook,
        "status": result.status,
        "rc": result.rc,
        "seconds": round(result.seconds, 3),
        "error": result.error,
        "artifacts": str(result.artifacts),
        "hosts": {
            name: {**asdict(h), "outcome": h.outcome, "class": classes.get(name)}
            for name, h in sorted(result.hosts.items())
        },
        "published": result.published,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


def _lab_keys(args: argparse.Namespace, inventory: Any, extravars: dict[str, Any]) -> str | None:
    """TLS and SuperNode authentication: make (or keep) the lab's CA, the SuperLink's
    certificate and every device's key pair outside the checkout, hand their directory to the
    playbook (``htfl_pki_dir``: provision copies each device its key and the CA), and before
    agents start, register the devices' public keys with the SuperLink. An error line, or None."""
    from htfl.workstation.deploy.pki import (
        default_pki_dir,
        make_lab_files,
        public_key_pem,
        superlink_tls_argv,
    )
    from htfl.workstation.server.submit import register_nodes

    directory = (args.pki or default_pki_dir()).expanduser().resolve()
    host = inventory.superlink.rpartition(":")[0].strip("[]")
    try:
        files = make_lab_files(directory, host, [h.name for h in inventory.hosts])
    except OSError as err:
        return f"--pki {directory}: {err}"
    extravars.setdefault("htfl_pki_dir", str(directory))
    console.print(
        f"TLS and SuperNode authentication: keys in {directory}; the SuperLink runs with "
        + " ".join(superlink_tls_argv(files.server))
    )
    if args.action == "provision":
        return None
    try:
        register_nodes(
            inventory.superlink,
            str(files.server.ca_cert),
            {name: public_key_pem(keys) for name, keys in files.nodes.items()},
        )
    except Exception as err:  # noqa: BLE001 - any failure means the agents would be refused
        return (
            f"cannot register the devices' keys with the SuperLink at {inventory.superlink} "
            f"({type(err).__name__}: {err}); start it with the options above first"
        )
    return None


def run(args: argparse.Namespace) -> int:
    from htfl.workstation.deploy.paths import DeployTreeError, default_inventory, deploy_dir
    from htfl.workstation.deploy.runner import RunnerMissingError, run_playbook
    from htfl.workstation.deploy.wheel import WheelBuildError, build_wheel, existing_wheel
    from htfl.workstation.inventory import InventoryError, load_inventory

    # ansible-core installs ansible-inventory and ansible-playbook beside this interpreter;
    # htfl.workstation.inventory finds the former on PATH (a venv is often used without
    # activating it).
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    try:
        tree = deploy_dir()
        inventory_path = (args.inventory or default_inventory()).resolve()
        inventory = load_inventory(inventory_path)
        limit = _limit(args.limit, inventory)
        extravars = _extra_vars(args.extra_var or [])
    except (DeployTreeError, InventoryError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    if not inventory.superlink and args.action in ("provision", "start", "update"):
        console.print(f"[red]error:[/red] {inventory_path}: all.vars.htfl_superlink is not set")
        return 2

    if args.action in ("provision", "update"):
        try:
            wheel = existing_wheel(args.wheel) if args.wheel else build_wheel(tree / ".build")
        except WheelBuildError as err:
            console.print(f"[red]error:[/red] {err}")
            return 2
        extravars.setdefault("htfl_wheel", str(wheel.path))
        console.print(f"htfl build: {wheel.path.name} sha256 {wheel.sha256[:12]}")
    secure = inventory.secure or str(extravars.get("htfl_secure")).lower() == "true"
    if secure and args.action in ("provision", "start", "update"):
        problem = _lab_keys(args, inventory, extravars)
        if problem is not None:
            console.print(f"[red]error:[/red] {problem}")
            return 2
    if args.action == "provision" and args.datasets:
        if not args.datasets.is_dir():
            console.print(f"[red]error:[/red] --datasets {args.datasets}: not a directory")
            return 2
        extravars.setdefault("htfl_datasets_src", str(args.datasets.resolve()))
    logs_dest = None
    if args.action == "logs":
        logs_dest = (
            args.dest or Path("results/device-logs") / time.strftime("%Y%m%d-%H%M%S")
        ).resolve()
        extravars.setdefault("htfl_logs_dest", str(logs_dest))

    classes = {h.name: h.device_class for h in inventory.hosts}
    console.print(
        f"htfl deploy {args.action}: inventory {inventory_path}"
        + (f", limit {limit}" if limit else "")
        + f" ({len(inventory.hosts)} devices in the inventory)"
    )
    try:
        with Progress(live=console.is_terminal) as progress:
            result = run_playbook(
                args.action,
                inventory_path,
                limit=limit,
                extravars=extravars,
                forks=args.forks,
                artifacts_dir=args.artifacts.resolve(),
                on_event=progress.event,
                verbosity=args.verbose,
            )
    except RunnerMissingError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2

    if args.json:
        _write_json(args.json, result, classes)
    console.print(recap_table(result, classes))
    for name in result.bad_hosts:
        for msg in result.hosts[name].messages[-3:]:
            console.print(f"[red]{name}[/red]: {msg}", markup=True)
    if args.action in ("status", "start", "update") and result.published:
        console.print(status_table(result.published, _current_build(tree)))
    if args.action == "facts" and result.published:
        console.print(facts_table(result.published))
    if logs_dest is not None:
        console.print(f"logs in {logs_dest}/<host>/agent.log")
    if result.error:
        console.print(f"[red]ansible-playbook failed[/red] (rc {result.rc}):\n{result.error}")
        console.print(f"events and output: {result.artifacts}")
        return 2
    if result.bad_hosts:
        console.print(
            f"[red]{len(result.bad_hosts)} host(s) failed or unreachable[/red]; "
            f"events and output: {result.artifacts}"
        )
        return 1
    return 0
