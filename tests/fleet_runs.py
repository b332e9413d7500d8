"""Running an experiment on a started :class:`LocalFleet` the way ``htfl run`` submits it."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from htfl.config.experiment import load_experiment
from htfl.server.submit import SuperLinkControl
from htfl.sim.local_fleet import LocalFleet


def log_tails(fleet: LocalFleet, names: list[str], lines: int = 15) -> str:
    """The last lines of the named fleet processes' logs, for an assertion message."""
    out = []
    for name in names:
        log = fleet.log_dir / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
        out.append(f"--- {name}.log\n" + "\n".join(tail))
    return "\n".join(out)


def run_on_fleet(fleet: LocalFleet, path: Path, results: Path, timeout: float = 300) -> dict:
    """Submit through Flower's Control API and wait for the ServerApp's summary.

    Fails at once, with the log tails, if a fleet process exits while the run is under way.
    """
    exp = load_experiment(path)
    exp = replace(exp, superlink=replace(exp.superlink, address=fleet.address, insecure=True))
    out = results / exp.id
    out.mkdir(parents=True)
    control = SuperLinkControl(exp)
    try:
        run_id = control.submit(exp, out)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            summary = out / "summary.json"
            if summary.exists():
                data = json.loads(summary.read_text())
                if data.get("status") != "running":
                    return data
            dead = fleet.check_alive()
            assert not dead, f"fleet processes exited: {dead}\n{log_tails(fleet, dead)}"
            time.sleep(0.25)
        control.stop(run_id)
        pytest.fail(f"{exp.id} did not finish within {timeout:.0f} s")
    finally:
        control.close()
