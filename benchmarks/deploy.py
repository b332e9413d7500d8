"""Deploy benchmark: wall time of `htfl deploy` provision (first, second run) and start.

Run (as root, with Debian's openssh-server and python3-venv; see tests/deploy/README):
``.venv/bin/python -m benchmarks.deploy [--sizes 2 8]`` (from the repository root)

For each fleet size N, N local devices reachable over real SSH (tests.support.sshfleet: one
sshd per loopback address, its own prefix and service account) are provisioned twice from
scratch with one prebuilt htfl wheel, then their agents are started against a real local
SuperLink and stopped. Timed: the whole `htfl deploy ...` command as a user runs it (inventory
read, runner start-up, ansible-playbook); "ansible s" is ansible-runner's share of it.

The devices share the torch/flwr of this venv through a read-only site directory (installing
torch per device would measure pip, not deployment), so a first provision here costs venv
creation + the htfl wheel and its dependency check, not downloads. Ansible settings are
deploy/ansible.cfg's (forks 50, pipelining, ControlPersist).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from htfl.ports import free_port
from htfl.workstation.deploy.wheel import build_wheel
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group
from tests.support.sshfleet import SshFleet, missing_requirements

REPO = Path(__file__).resolve().parents[1]


class DeployFailed(RuntimeError):
    """``htfl deploy`` failed; the message carries the failed tasks' own output."""


def deploy(
    action: str, inventory: Path, work: Path, *extra: str, timeout: float = 3600
) -> tuple[float, dict]:
    """Run ``htfl deploy ACTION`` as a user would; its wall time and its ``--json`` outcome."""
    out = work / f"{action}.json"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", "deploy", action, "--inventory", str(inventory)]
        + ["--artifacts", str(work / "artifacts"), "--json", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        artifacts = json.loads(out.read_text())["artifacts"] if out.exists() else ""
        raise DeployFailed(
            f"htfl deploy {action} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
            + (failed_output(Path(artifacts)) if artifacts else "")
        )
    return wall, json.loads(out.read_text())


def job_events(artifacts: Path) -> list[dict]:
    """ansible-runner's job events of one playbook run, in order."""
    paths = (artifacts / "job_events").glob("*.json")
    return [
        json.loads(p.read_text()) for p in sorted(paths, key=lambda p: int(p.name.split("-")[0]))
    ]


def failed_output(artifacts: Path) -> str:
    """The output of the tasks that failed (htfl deploy shows their message only)."""
    text = ""
    for ev in job_events(artifacts):
        data = ev.get("event_data") or {}
        if ev.get("event") == "runner_on_failed" and not data.get("ignore_errors"):
            res = data.get("res") or {}
            for key in ("stdout", "stderr", "module_stderr"):
                if res.get(key):
                    text += f"\n--- {data.get('task')}: {key}\n{str(res[key])[-3000:]}"
    return text


def measure(size: int, wheel: Path) -> dict[str, float]:
    port = free_port()
    fleet = SshFleet(size, superlink=f"127.0.0.1:{port}")
    superlink = None
    try:
        fleet.start()
        inventory = fleet.write_inventory()
        work = fleet.base / "bench"  # removed with the fleet
        row: dict[str, float] = {}
        for key in ("provision_1", "provision_2"):
            row[key], outcome = deploy("provision", inventory, work, "--wheel", str(wheel))
            row[key + "_ansible"] = outcome["seconds"]
            changed = sum(h["changed"] for h in outcome["hosts"].values())
            row[key + "_changed"] = changed
        home = work / "superlink"
        superlink = start_superlink(port, home / "superlink.log", flower_env(home / "flwr-home"))
        row["start"], outcome = deploy("start", inventory, work)
        row["start_ansible"] = outcome["seconds"]
        row["stop"], _ = deploy("stop", inventory, work)
        return row
    finally:
        if superlink is not None:
            stop_process_group(superlink)
        fleet.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8])
    args = parser.parse_args()
    missing = missing_requirements()
    if missing:
        print("cannot run: " + "; ".join(missing), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp)).path
        rows = {n: measure(n, wheel) for n in args.sizes}
    load = os.getloadavg()[0]
    print(
        f"htfl deploy wall time, s ({os.cpu_count()} cores, load {load:.1f}; "
        "ansible-runner's share in brackets)"
    )
    print(
        f"{'hosts':>5} {'provision 1st':>16} {'provision 2nd':>16} {'2nd changed':>12}"
        f" {'start':>14} {'stop':>7}"
    )
    for n, r in rows.items():
        print(
            f"{n:>5} {r['provision_1']:>7.1f} ({r['provision_1_ansible']:>5.1f})"
            f" {r['provision_2']:>7.1f} ({r['provision_2_ansible']:>5.1f})"
            f" {int(r['provision_2_changed']):>12}"
            f" {r['start']:>5.1f} ({r['start_ansible']:>5.1f}) {r['stop']:>7.1f}"
        )
    if len(rows) > 1:
        (a, ra), (b, rb) = list(rows.items())[0], list(rows.items())[-1]
        print(
            f"deploy_provision2_growth_per_host_s="
            f"{(rb['provision_2'] - ra['provision_2']) / (b - a):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
