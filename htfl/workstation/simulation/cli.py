"""The ``--simulate`` options of ``htfl run`` and the simulated run itself (kept here so the
run command only hands over: ``htfl run EXP --simulate N``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from htfl.cli import integer

if TYPE_CHECKING:
    from collections.abc import Callable

    from htfl.workstation.config.experiment import Experiment
    from htfl.workstation.simulation.runner import SimulationSettings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--simulate",
        type=integer(1),
        metavar="N",
        default=None,
        help="run on N virtual clients in Flower's simulation runtime (Ray), of the "
        "experiment's [devices] classes; times, transfers and energy are modelled from each "
        "class's profile and marked 'modelled' in rounds.csv (default: a real fleet)",
    )
    p.add_argument(
        "--client-state",
        choices=("memory", "disk"),
        default="memory",
        help="with --simulate: keep each virtual client's private model between messages in "
        "memory (Flower's Context.state) or on disk under the results dir",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="with --simulate: join this Ray cluster (default: RAY_ADDRESS, else a local Ray)",
    )
    p.add_argument(
        "--cpus-per-client",
        type=float,
        default=1.0,
        metavar="CPUS",
        help="with --simulate: CPUs each virtual client's Ray actor holds",
    )


def option_problems(args: argparse.Namespace, exp: Experiment) -> list[str]:
    """What is wrong with ``--simulate`` and its companions for ``exp`` (empty: nothing)."""
    if getattr(args, "simulate", None) is None:
        companions = [
            name
            for name, default in (("client_state", "memory"), ("ray_address", None))
            if getattr(args, name, default) != default
        ]
        return [f"--{n.replace('_', '-')} needs --simulate N" for n in companions]
    problems = settings(args).problems(exp)
    if getattr(args, "local_fleet", None) is not None:
        problems.append("--simulate and --local-fleet: choose one")
    if getattr(args, "resume", None) is not None:
        problems.append("--simulate cannot --resume a run (a simulated run is re-run instead)")
    return problems


def settings(args: argparse.Namespace) -> SimulationSettings:
    from htfl.workstation.simulation.runner import SimulationSettings

    return SimulationSettings(
        args.simulate, args.client_state, args.cpus_per_client, args.ray_address
    )


def run_simulated(
    args: argparse.Namespace, exp: Experiment, print_errors: Callable[[list[str]], None]
) -> int:
    """``htfl run EXP --simulate N`` (options checked by :func:`option_problems`): run, print
    the last round's table; the exit status."""
    from htfl.workstation.simulation.runner import simulate

    results_dir = (Path(args.results) / exp.id).resolve()
    if results_dir.exists() and any(results_dir.iterdir()):
        results_dir = results_dir.with_name(f"{exp.id}-{time.strftime('%Y%m%d-%H%M%S')}")
    from htfl.workstation.cli.run import console, summary_table

    console.print(
        f"simulating {args.simulate} virtual clients (Flower simulation runtime, Ray); "
        f"results in {results_dir}"
    )
    summary = simulate(exp, results_dir, settings(args))
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
