"""The ``--simulate`` options of ``htfl run`` and the simulated run itself (kept here so the
run command only hands over: ``htfl run EXP --simulate N``)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from htfl.cli import integer

if TYPE_CHECKING:
    from collections.abc import Callable

    from htfl.workstation.config.experiment import Experiment
    from htfl.workstation.simulation.runner import SimulationSettings


#: flag -> [simulation] key it overrides (each flag's default None: the file's value)
OVERRIDES = {
    "simulate": "clients",
    "client_state": "client_state",
    "cpus_per_client": "cpus_per_client",
    "gpus_per_client": "gpus_per_client",
    "ray_address": "ray_address",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--simulate",
        type=integer(1),
        metavar="N",
        default=None,
        help="run on N virtual clients in Flower's simulation runtime (Ray), of the "
        "experiment's [devices] classes; times, transfers and energy are modelled from each "
        "class's profile and marked 'modelled' in rounds.csv (default: [simulation] clients, "
        "else a real fleet)",
    )
    p.add_argument(
        "--client-state",
        choices=("memory", "disk"),
        default=None,
        help="simulated: keep each virtual client's private model between messages in "
        "memory (Flower's Context.state) or on disk under the results dir (default: "
        "[simulation] client_state, memory)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="simulated: join this Ray cluster (default: [simulation] ray_address, else "
        "RAY_ADDRESS, else a local Ray)",
    )
    p.add_argument(
        "--cpus-per-client",
        type=float,
        default=None,
        metavar="CPUS",
        help="simulated: CPUs each virtual client's Ray actor holds (default: [simulation] "
        "cpus_per_client, 1)",
    )
    p.add_argument(
        "--gpus-per-client",
        type=float,
        default=None,
        metavar="GPUS",
        help="simulated: GPUs (fractions allowed) each virtual client's Ray actor holds "
        "(default: [simulation] gpus_per_client, 0)",
    )


def wanted(args: argparse.Namespace, exp: Experiment) -> bool:
    """Whether this run is simulated: ``--simulate N``, or ``[simulation] clients`` > 0."""
    return getattr(args, "simulate", None) is not None or exp.simulation.clients > 0


def effective(args: argparse.Namespace, exp: Experiment) -> Experiment:
    """``exp`` with the command's simulation flags written over its [simulation] section (what
    the run does, and so what experiment.json records)."""
    given = {
        key: getattr(args, flag)
        for flag, key in OVERRIDES.items()
        if getattr(args, flag, None) is not None
    }
    return dataclasses.replace(exp, simulation=dataclasses.replace(exp.simulation, **given))


def option_problems(args: argparse.Namespace, exp: Experiment) -> list[str]:
    """What is wrong with ``--simulate`` and its companions for ``exp`` (empty: nothing)."""
    if not wanted(args, exp):
        return [
            f"--{flag.replace('_', '-')} needs --simulate N (or [simulation] clients)"
            for flag in OVERRIDES
            if getattr(args, flag, None) is not None
        ]
    problems = settings(args, exp).problems(exp)
    if getattr(args, "local_fleet", None) is not None:
        problems.append("--simulate and --local-fleet: choose one")
    if getattr(args, "resume", None) is not None:
        problems.append("--simulate cannot --resume a run (a simulated run is re-run instead)")
    return problems


def settings(args: argparse.Namespace, exp: Experiment) -> SimulationSettings:
    from htfl.workstation.simulation.runner import SimulationSettings

    return SimulationSettings.of(effective(args, exp).simulation)


def run_simulated(
    args: argparse.Namespace, exp: Experiment, print_errors: Callable[[list[str]], None]
) -> int:
    """``htfl run EXP --simulate N`` or a file with ``[simulation] clients`` (options checked
    by :func:`option_problems`): run, print the last round's table; the exit status."""
    from htfl.workstation.simulation.runner import SimulationSettings, simulate

    exp = effective(args, exp)
    results_dir = (Path(args.results) / exp.id).resolve()
    if results_dir.exists() and any(results_dir.iterdir()):
        results_dir = results_dir.with_name(f"{exp.id}-{time.strftime('%Y%m%d-%H%M%S')}")
    from htfl.workstation.cli.run import console, summary_table

    run = SimulationSettings.of(exp.simulation)
    console.print(
        f"simulating {run.clients} virtual clients (Flower simulation runtime, Ray); "
        f"results in {results_dir}"
    )
    summary = simulate(exp, results_dir, run)
    if (results_dir / "rounds.csv").exists():
        console.print(summary_table(results_dir))
    if summary.get("status") != "finished":
        print_errors([f"simulated run {summary.get('status')}: {summary.get('error')}"])
        return 1
    console.print(
        f"finished: final accuracy {summary.get('final_accuracy')}, "
        f"{summary.get('wall_seconds', 0):.1f} s"
    )
    return 0
