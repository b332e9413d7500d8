"""aarch64 under QEMU: an emulated arm64 board provisioned by deploy/ completes a round.

Run (as root, with the apt packages of deploy/ci-requirements.apt):
``.venv/bin/python -m benchmarks.aarch64_qemu [--results DIR] [--json PATH]``

One Debian 12 arm64 root filesystem (tests.support.arm64_rootfs: debootstrap, its second stage
under qemu-user-static; cached) runs as a podman container with sshd on a loopback address:
the "board", class orange-pi-5b (recipe debian-arm64). `htfl deploy provision` installs it with
the real playbook over ssh (apt packages, the venv, PyPI's aarch64 torch, the device wheel
built from this checkout and its requirements), `htfl deploy start` starts its agent against a
real SuperLink on this machine, and `htfl run` runs one round of FedAvg (cnn4 on a slice of
digits) on it. Every arm64 instruction on the device runs under QEMU's user-mode emulation, so
the times say what emulation costs, not what a board takes.

Prints one table: wall seconds per phase, and the slowest provisioning tasks (from
ansible-runner's events). With --results the run's results directory is kept there (the CI
test reads devices.json and the rows from it).
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

from benchmarks.deploy import DeployFailed, job_events
from benchmarks.deploy import deploy as deploy_timed
from htfl.ports import free_port
from htfl.workstation.deploy.wheel import build_wheel
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group
from htfl.workstation.server.results import read_rows
from tests.support.arm64_rootfs import (
    DEVICE_CLASS,
    Arm64Device,
    build_rootfs,
    cache_dir,
    ensure_image,
    missing_requirements,
    rootfs_tar,
)
from tests.support.experiments import cnn4_experiment

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT_ID = "aarch64-qemu"
#: provisioning tasks reported on their own rows (ansible task names in deploy/roles)
TASKS = {
    "Install missing packages with apt": "provision: apt packages",
    "Check the Python, create or repair the venv, extra site directories": "provision: venv",
    "PyTorch with pip": "provision: pip install torch",
    "Install what the build requires and the venv lacks": "provision: htfl requirements",
}


class PhaseFailed(RuntimeError):
    pass


def deploy(action: str, inventory: Path, work: Path, *extra: str) -> dict:
    """``htfl deploy ACTION``'s outcome (its time is taken by the phase around it)."""
    return deploy_timed(action, inventory, work, *extra)[1]


def task_seconds(artifacts: Path) -> dict[str, float]:
    """Seconds per task of one playbook run, from ansible-runner's job events."""
    found: dict[str, float] = {}
    for ev in job_events(artifacts):
        data = ev.get("event_data") or {}
        if data.get("task") in TASKS and "duration" in data:
            found[TASKS[data["task"]]] = float(data["duration"])
    return found


def measure(results: Path, fraction: float) -> tuple[list[tuple[str, float, str]], dict]:
    rows: list[tuple[str, float, str]] = []

    def phase(name: str, started: float, note: str = "") -> None:
        rows.append((name, time.monotonic() - started, note))

    t = time.monotonic()
    tar, built = build_rootfs(log=cache_dir() / "arm64-rootfs-build.log")
    phase("rootfs", t, "built: debootstrap + 2nd stage" if built else f"cached {tar.name}")
    t = time.monotonic()
    imported = ensure_image(tar)
    phase("image import", t, "podman import" if imported else "image present")
    port = free_port()
    device = Arm64Device(superlink=f"127.0.0.1:{port}")
    superlink = None
    outcome: dict = {}
    try:
        t = time.monotonic()
        device.start()
        phase("device up", t, "container + sshd")
        assert device.base is not None
        work = device.base / "bench"
        work.mkdir()
        inventory = device.write_inventory()
        t = time.monotonic()
        wheel = build_wheel(work / "wheel").path
        phase("device wheel", t, wheel.name)
        t = time.monotonic()
        outcome["provision"] = deploy("provision", inventory, work, "--wheel", str(wheel))
        phase("provision", t, "htfl deploy provision")
        tasks = task_seconds(Path(outcome["provision"]["artifacts"]))
        rows.extend((name, sec, "ansible task") for name, sec in tasks.items())
        home = work / "superlink"
        superlink = start_superlink(port, home / "superlink.log", flower_env(home / "flwr-home"))
        t = time.monotonic()
        outcome["start"] = deploy("start", inventory, work)
        phase("agent start", t, "htfl deploy start")
        exp = work / "exp.toml"
        exp.write_text(
            cnn4_experiment(
                EXPERIMENT_ID,
                {DEVICE_CLASS: 1},
                rounds=1,
                train_fraction=fraction,
                deadline_seconds=900,
                superlink_port=port,
            )
        )
        t = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "htfl", "run", str(exp), "--results", str(results)]
            + ["--timeout", "1500"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=1800,
        )
        if run.returncode != 0:
            # the whole agent log is kept beside the results (the container goes with stop)
            log = device.exec("cat", "/opt/htfl/log/agent.log").stdout
            (results / "agent.log").write_text(log)
            errors = [ln for ln in log.splitlines() if "Error" in ln or "Traceback" in ln]
            raise PhaseFailed(
                f"htfl run failed:\n{run.stderr[-4000:]}\nagent log ({results / 'agent.log'}),"
                f" its error lines:\n" + "\n".join(errors[-40:])
            )
        phase("round", t, "htfl run: 1 round FedAvg, cnn4")
        out = results / EXPERIMENT_ID
        summary = json.loads((out / "summary.json").read_text())
        served = summary["finished"] - summary["started"]
        rows.append(("  server app", served, "summary.json: devices, setup, round, eval"))
        for row in read_rows(out):
            for key in ("round_trip_seconds", "train_seconds"):
                if row.get(key):
                    rows.append((f"  round {row['round']} {key[:-8]}", float(row[key]), "rows"))
        t = time.monotonic()
        outcome["stop"] = deploy("stop", inventory, work)
        phase("agent stop", t, "htfl deploy stop")
        outcome["processes"] = device.exec("ps", "-eo", "args").stdout
        return rows, outcome
    finally:
        if superlink is not None:
            stop_process_group(superlink)
        device.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="keep the run's results directory here")
    parser.add_argument("--json", type=Path, help="write the phases and deploy outcomes here")
    parser.add_argument(
        "--train-fraction", type=float, default=0.1, help="share of digits the device trains on"
    )
    args = parser.parse_args(argv)
    missing = missing_requirements()
    if missing:
        print("cannot run: " + "; ".join(missing), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="htfl-aarch64-") as tmp:
        results = args.results or Path(tmp) / "results"
        results.mkdir(parents=True, exist_ok=True)
        try:
            rows, outcome = measure(results, args.train_fraction)
        except (PhaseFailed, DeployFailed) as err:
            print(f"aarch64_qemu: {err}", file=sys.stderr)
            return 1
    load = os.getloadavg()
    print(
        f"emulated aarch64 device (qemu-user-static), wall s; {os.cpu_count()} cores, "
        f"load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; rootfs {rootfs_tar()}"
    )
    print(f"{'phase':<34} {'seconds':>8}  note")
    for name, sec, note in rows:
        print(f"{name:<34} {sec:>8.1f}  {note}")
    total = sum(sec for name, sec, note in rows if note != "ansible task" and name[0] != " ")
    print(f"{'total':<34} {total:>8.1f}")
    if args.json:
        doc = {"phases": [{"phase": n, "seconds": s, "note": x} for n, s, x in rows], **outcome}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
