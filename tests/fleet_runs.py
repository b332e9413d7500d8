"""Running an experiment on a started :class:`LocalFleet` the way ``htfl run`` submits it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from htfl.workstation.config.experiment import load_experiment
from htfl.workstation.local_fleet import LocalFleet
from htfl.workstation.server.submit import SuperLinkControl


def run_on_fleet(fleet: LocalFleet, path: Path, results: Path, timeout: float = 300) -> dict:
    """Submit through Flower's Control API and return the run's summary.

    Fails at once, with the log tails, if a fleet process exits while the run is under way.
    """
    exp = load_experiment(path)
    exp = replace(exp, superlink=replace(exp.superlink, address=fleet.address, insecure=True))
    out = results / exp.id
    out.mkdir(parents=True)
    control = SuperLinkControl(exp)
    try:
        run_id = control.submit(exp, out)
        summary = fleet.wait_for_run(out, timeout, poll=0.25)
        if summary.get("cause") == "timeout":
            control.stop(run_id)
        assert summary.get("cause") != "fleet_exited", summary["error"]
        return summary
    finally:
        control.close()
