"""Running an experiment on a started :class:`LocalFleet` the way ``htfl run`` submits it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from htfl.workstation.config.experiment import load_experiment
from htfl.workstation.local_fleet import LocalFleet
from htfl.workstation.server.submit import SuperLinkControl
from tests.support.experiments import cnn4_experiment


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


def boot_agent_with(setup: str) -> str:
    """A ``python -c`` program that runs ``setup`` (Python statements), then the htfl CLI."""
    return f"import sys; {setup}; from htfl.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class PatchedAgentFleet(LocalFleet):
    """A local fleet whose agents named in ``patched`` (all, when empty) boot through
    ``boot`` (see :func:`boot_agent_with`) instead of ``python -m htfl``."""

    boot: str = ""
    patched: frozenset[str] = frozenset()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if argv[1:4] == ["-m", "htfl", "agent"] and (not self.patched or name in self.patched):
            argv = [argv[0], "-c", self.boot, *argv[3:]]
        return super()._spawn(name, argv, env)


#: Two devices (one Jetson Nano, one Orange Pi 5B), both cnn4, FedAvg on a sliver of digits.
TWO_DEVICES = {"jetson-nano": 1, "orange-pi-5b": 1}


def two_device_fedavg(experiment_id: str, rounds: int, train_fraction: float) -> str:
    return cnn4_experiment(experiment_id, TWO_DEVICES, rounds=rounds, train_fraction=train_fraction)
