"""`htfl run EXPERIMENT.toml`: validate, submit, show progress, summarise, record."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from htfl.cli import LazyConsole, integer
from htfl.workstation.simulation import cli as simulation_cli

if TYPE_CHECKING:
    from rich.table import Table

    from htfl.workstation.config.experiment import Experiment
    from htfl.workstation.local_fleet import LocalFleet

console = LazyConsole(stderr=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run an experiment file and record its results",
        description="Check EXPERIMENT (every problem at once), submit it to its SuperLink, "
        "show progress per round and write results/<experiment-id>/ (rounds.csv, "
        "summary.json). Without devices, --local-fleet N runs "
        "a SuperLink and N agents on this machine.",
    )
    p.add_argument(
        "experiment",
        type=Path,
        nargs="?",
        help="the experiment file (TOML, e.g. experiments/quickstart.toml; its sections are "
        "described in the README); omitted with --resume",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RESULTS_DIR",
        help="continue the experiment recorded in RESULTS_DIR (results/<experiment-id>/) from "
        "its last completed round, with the same devices (default: start a new run)",
    )
    p.add_argument(
        "--superlink-lost-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up when the SuperLink has not answered for this long",
    )
    p.add_argument(
        "--local-fleet",
        type=integer(1),
        metavar="N",
        default=None,
        help="start a SuperLink and N simulated devices on this machine, of the experiment's "
        "[devices] classes (default: none, use the experiment's [superlink])",
    )
    p.add_argument(
        "--no-profiles",
        dest="profiles",
        action="store_false",
        help="with --local-fleet: run the devices unlimited, not held to their class profiles "
        "(CPU quota, memory cap, shaped link; the default applies them)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="parent directory of results/<experiment-id>/",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up after this many seconds (default: no limit)",
    )
    simulation_cli.add_arguments(p)  # --simulate N and its companions
    p.set_defaults(func=run)


def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    if not path.exists():
        return [], offset
    with open(path) as fh:
        fh.seek(offset)
        chunk = fh.read()
    complete = chunk[: chunk.rfind("\n") + 1]
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return events, offset + len(complete)


def summary_table(results_dir: Path) -> Table:
    from htfl.workstation.server.results import read_rows

    rows = read_rows(results_dir)
    last_round = max((int(r["round"]) for r in rows), default=0)
    from rich.table import Table

    table = Table(title=f"{results_dir.name}: round {last_round}")
    for col in ("device", "class", "arch", "status", "accuracy", "train s", "up B", "down B"):
        table.add_column(col, justify="right" if col[0].islower() and " " in col else "left")
    for r in rows:
        if int(r["round"]) != last_round:
            continue
        acc = f"{float(r['test_accuracy']):.3f}" if r["test_accuracy"] else "-"
        train = f"{float(r['train_seconds']):.2f}" if r["train_seconds"] else "-"
        table.add_row(
            r["device"],
            r["device_class"],
            r["arch"],
            r["status"],
            acc,
            train,
            r["bytes_up"] or "-",
            r["bytes_down"] or "-",
        )
    return table


#: Once Flower reports the run finished, how long the ServerApp's own end event may take.
END_EVENT_GRACE_SECONDS = 10.0


def follow(
    results_dir: Path,
    status_fn,
    timeout: float | None,
    fleet: LocalFleet | None = None,
    superlink_lost_after: float = 60.0,
    start_offset: int = 0,
) -> dict:
    """Show progress from results/<id>/progress.jsonl until the run ends; return the end event.

    Every wait is bounded: the run also ends when Flower reports it finished (the ServerApp was
    killed before writing its end), when the SuperLink has not answered for
    ``superlink_lost_after`` seconds (or its local process exited), and after ``timeout``.
    With a local ``fleet``, an agent that exits is reported at once with its log tail (the
    ServerApp carries on with the devices it has, as it would in a lab).
    """
    reported: set[str] = set()
    last_answer = time.monotonic()
    finished_seen: float | None = None
    progress_file = results_dir / "progress.jsonl"
    offset, end_event = start_offset, None  # a resumed run: the new events only
    started = time.monotonic()
    last_status_check = 0.0
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console.get(),
        transient=False,
    ) as bar:
        task = bar.add_task("waiting for devices", total=None, info="")
        while end_event is None:
            events, offset = _read_events(progress_file, offset)
            for ev in events:
                if ev["event"] == "setup":
                    bar.update(
                        task, description="setting up devices", info=f"{ev['devices']} devices"
                    )
                elif ev["event"] == "round":
                    acc = "-" if ev["accuracy"] is None else f"{ev['accuracy']:.3f}"
                    bar.update(
                        task,
                        description="training",
                        total=ev["rounds"],
                        completed=ev["round"],
                        info=f"acc {acc}  answering {ev['answered']}/{ev['selected']}",
                    )
                elif ev["event"] == "end":
                    end_event = ev
            if end_event is not None:
                break
            now = time.monotonic()
            if now - last_status_check > 3:
                last_status_check = now
                if fleet is not None and (dead := set(fleet.check_alive()) - reported):
                    reported |= dead
                    console.print(
                        f"[red]fleet process exited:[/red]\n{fleet.log_tails(sorted(dead))}"
                    )
                    if "superlink" in dead:
                        return {
                            "status": "failed",
                            "cause": "superlink_lost",
                            "error": "the local SuperLink exited; resume with "
                            f"htfl run --resume {results_dir}",
                        }
                try:
                    status = status_fn()
                    last_answer = now
                except Exception as err:  # httpx/grpc errors: the SuperLink is unreachable
                    if now - last_answer > superlink_lost_after:
                        return {
                            "status": "failed",
                            "cause": "superlink_lost",
                            "error": f"lost the SuperLink: no answer for "
                            f"{superlink_lost_after:.0f} s ({type(err).__name__}: {err}); "
                            f"resume with htfl run --resume {results_dir}",
                        }
                    status = "unreachable"
                if status.startswith("finished") and finished_seen is None:
                    finished_seen = now
                if finished_seen is not None and now - finished_seen > END_EVENT_GRACE_SECONDS:
                    return {
                        "status": "failed",
                        "cause": "serverapp_ended",
                        "error": f"Flower reports the run {status}, and the ServerApp "
                        "did not record its end (killed?); see the SuperLink log; "
                        f"resume with htfl run --resume {results_dir}",
                    }
            if timeout is not None and now - started > timeout:
                return {
                    "status": "failed",
                    "cause": "timeout",
                    "error": f"timed out after {timeout:.0f} s (--timeout)",
                }
            time.sleep(0.2)
    return end_event


def run(args: argparse.Namespace) -> int:
    from htfl.workstation.local_fleet import interrupt_on_signals

    interrupt_on_signals()  # Ctrl-C, kill -INT and SIGTERM stop the run and the fleet
    # Imported here, not at the top: the experiment schema pulls in torch (seconds), and
    # `htfl --help` imports this module.
    from htfl.workstation.config.experiment import ConfigError, load_experiment
    from htfl.workstation.config.preflight import preflight
    from htfl.workstation.server import submit
    from htfl.workstation.server.results import record_ended, record_interrupted

    if (args.experiment is None) == (args.resume is None):
        print_errors(["give an experiment file, or --resume RESULTS_DIR (not both)"])
        return 2
    try:
        # Validate the file (no I/O), then check the files it names, before anything starts.
        if args.resume is not None:
            exp = preflight(resume_experiment(args.resume))
        else:
            exp = preflight(load_experiment(args.experiment))
    except (ConfigError, ResumeError) as err:
        print_errors([str(err)])
        return 2
    problems = run_option_problems(args, exp)
    if problems:
        print_errors(problems)
        return 2
    if simulation_cli.wanted(args, exp):  # virtual clients, no fleet ([simulation] / --simulate)
        return simulation_cli.run_simulated(args, exp, print_errors)
    emulation = None
    if args.local_fleet is not None and getattr(args, "profiles", True):
        from htfl.workstation.fleet.emulation import local_emulation
        from htfl.workstation.fleet.profiles import ProfileError

        try:  # a quota the host cannot give is an error before anything starts
            emulation = local_emulation(exp.devices.classes, args.local_fleet)
        except ProfileError as err:
            print_errors([str(err)])
            return 2
    fleet = None
    if args.resume is not None:
        results_dir = args.resume.resolve()
    else:
        results_dir = (args.results / exp.id).resolve()
        if results_dir.exists() and any(results_dir.iterdir()):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            results_dir = results_dir.with_name(f"{exp.id}-{stamp}")
    control, run_id = None, None
    interrupted = False
    try:
        if args.local_fleet is not None:
            from htfl.workstation.local_fleet import LocalFleet, expand_selection

            devices = expand_selection(exp.devices.classes, args.local_fleet)
            # on --resume the same directory: logs go on, and each agent finds its own
            # private model where it left it (its data dir is in there)
            fleet = LocalFleet(devices, results_dir / "fleet-logs")
            fleet.emulation = emulation  # class profiles: cgroups and link relays
            console.print(
                f"starting a local fleet: SuperLink + {len(devices)} agents "
                f"({', '.join(d.name for d in devices)})"
            )
            fleet.start()
            exp = replace(
                exp, superlink=replace(exp.superlink, address=fleet.address, insecure=True)
            )
        results_dir.mkdir(parents=True, exist_ok=True)
        progress_offset = set_aside_previous_end(results_dir) if args.resume is not None else 0
        control = submit.SuperLinkControl(exp)
        try:
            run_id = control.submit(exp, results_dir, resume=args.resume is not None)
        except Exception as err:  # httpx: unreachable, or the SuperLink refused the run
            print_errors(
                [
                    f"could not submit to the SuperLink at {exp.superlink.address}: "
                    f"{type(err).__name__}: {err}"
                ]
            )
            record_ended(
                results_dir, None, {"status": "failed", "cause": "submit", "error": str(err)}
            )
            return 1
        console.print(f"run {run_id} submitted; results in {results_dir}")
        end = follow(
            results_dir,
            lambda: control.status(run_id),
            args.timeout,
            fleet,
            args.superlink_lost_after,
            progress_offset,
        )
        if end.get("status") != "finished":
            if end.get("cause") != "superlink_lost":
                with contextlib.suppress(Exception):  # it may have ended by itself
                    control.stop(run_id)
            record_ended(results_dir, run_id, end)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the run[/yellow]")
        if control is not None and run_id is not None:
            try:
                if not control.status(run_id).startswith("finished"):
                    control.stop(run_id)
            except Exception as err:  # the SuperLink may already be gone
                console.print(f"could not stop run {run_id}: {type(err).__name__}: {err}")
        interrupted = True
        return 130
    finally:
        if control is not None:
            control.close()
        if fleet is not None:
            fleet.stop()
        if emulation is not None:
            from htfl.workstation.fleet.emulation import record_in_results

            record_in_results(results_dir, emulation)
        elif fleet is None:  # against a lab `htfl fleet up` started: its dilation and limits
            from htfl.workstation.fleet.emulation import lab_for, record_in_results

            if (lab := lab_for(exp.superlink.address)) is not None:
                record_in_results(results_dir, lab)
        if interrupted:
            record_interrupted(results_dir, run_id)
    if (results_dir / "rounds.csv").exists():
        from rich.console import Console

        Console().print(summary_table(results_dir))
    summary_file = results_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else end
    if summary.get("status") != "finished":
        console.print(
            f"[red]experiment failed:[/red] {summary.get('error') or end.get('error')} "
            f"(last completed round: {summary.get('last_completed_round', 0)})"
        )
        return 1
    acc = summary.get("final_accuracy")
    console.print(
        f"finished {summary['rounds']} rounds in {summary['wall_seconds']:.1f} s; "
        f"final mean accuracy {acc:.4f}"
        if acc is not None
        else "finished"
    )
    return 0


def print_errors(lines: list[str]) -> None:
    """One ``error:`` line each, as plain text (``[devices]`` is not rich markup), and a path
    in an error never broken across lines (users copy it)."""
    from rich.markup import escape

    for line in lines:
        console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)


def set_aside_previous_end(results_dir: Path) -> int:
    """Before a resumed run: keep the ended run's summary as ``summary-<n>.json`` (so that
    only the new run's end is read as the end) and return where its progress events stop."""
    from htfl.workstation.server.results import PROGRESS_FILE, SUMMARY_FILE

    summary = results_dir / SUMMARY_FILE
    if summary.exists():
        n = 1 + len(list(results_dir.glob("summary-*.json")))
        summary.rename(results_dir / f"summary-{n}.json")
    progress = results_dir / PROGRESS_FILE
    return progress.stat().st_size if progress.exists() else 0


class ResumeError(ValueError):
    """--resume names something that cannot be resumed; the message says what and why."""


def resume_experiment(results_dir: Path) -> Experiment:
    """The experiment recorded in ``results_dir``, checked to be resumable; ResumeError (one
    line naming the directory and what is missing) otherwise."""
    from htfl.workstation.config.experiment import experiment_from_dict
    from htfl.workstation.server.checkpoint import CHECKPOINT_FILE
    from htfl.workstation.server.results import SUMMARY_FILE

    where = f"--resume {results_dir}"
    if not results_dir.is_dir():
        raise ResumeError(f"{where}: not a directory")
    recorded = results_dir / "experiment.json"
    if not recorded.is_file():
        raise ResumeError(f"{where}: no experiment.json: not a results directory of htfl run")
    if not (results_dir / CHECKPOINT_FILE).is_file():
        raise ResumeError(
            f"{where}: no {CHECKPOINT_FILE}: the run completed no round, start it again instead"
        )
    status = None
    with contextlib.suppress(OSError, ValueError):
        status = json.loads((results_dir / SUMMARY_FILE).read_text()).get("status")
    if status == "finished":
        raise ResumeError(f"{where}: the experiment already finished")
    try:
        raw = json.loads(recorded.read_text())
        return experiment_from_dict(raw, str(recorded))
    except (ValueError, TypeError, KeyError) as err:
        raise ResumeError(f"{where}: experiment.json is not readable: {err}") from None


def run_option_problems(args: argparse.Namespace, exp: Experiment) -> list[str]:
    """What is wrong with the command's options for this experiment, before anything starts."""
    devices_selected = exp.devices.count
    problems = []
    if args.local_fleet is not None and not exp.devices.classes:
        problems.append(
            f"{exp.source}: --local-fleet needs [devices] classes (counts per class), not names"
        )
    if args.results.exists() and not args.results.is_dir():
        problems.append(f"--results {args.results}: is a file, not a directory")
    if args.local_fleet is not None and args.local_fleet < devices_selected:
        problems.append(
            f"--local-fleet {args.local_fleet}: the experiment selects {devices_selected} "
            f"devices ([devices]); start at least {devices_selected}"
        )
    problems += simulation_cli.option_problems(args, exp)
    return problems
