"""Wall time of `htfl ... --help`: how long the command takes to explain itself.

Run: ``.venv/bin/python -m benchmarks.cli_startup [--repeat 10] [--tree DIR]``

Each row starts a fresh interpreter (``python -m htfl ARGS``) ``--repeat`` times and reports
the median, min and max wall time in milliseconds, as a user typing the command sees it
(interpreter start, imports, argparse, printing), and the median CPU time (user + system) of
the child, which other load on a shared machine disturbs less than wall time. ``--tree``
times another checkout of the source (e.g. ``git archive HEAD | tar -x -C /tmp/before``)
with this interpreter, for a before/after figure. The exit status is 1 if any command fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The commands timed by default: the top-level help and one help per kind of command.
DEFAULT_COMMANDS: tuple[str, ...] = ("--help", "run --help", "agent --help", "power probe --help")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(
    args: list[str], repeat: int, tree: Path | None
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per run of ``python -m htfl ARGS`` (a fresh interpreter each)."""
    env = dict(os.environ)
    cwd = None
    if tree is not None:  # the tree's htfl shadows the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        cwd = tree
    times, cpu = [], []
    for _ in range(repeat):
        cpu_start, start = _children_cpu(), time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "htfl", *args], env=env, cwd=cwd, capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - cpu_start)
        if proc.returncode != 0:
            raise RuntimeError(f"htfl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return times, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=10, help="runs per command (default: %(default)s)"
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="time the htfl of this source tree (default: the installed one)",
    )
    parser.add_argument(
        "--command",
        action="append",
        default=None,
        metavar="ARGS",
        help="htfl arguments to time, e.g. 'data prepare --help' (repeatable; default: "
        + ", ".join(repr(c) for c in DEFAULT_COMMANDS)
        + ")",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    commands = args.command or list(DEFAULT_COMMANDS)
    where = str(args.tree.resolve()) if args.tree else "installed htfl"
    print(f"htfl startup: {where}, {args.repeat} runs each, {os.cpu_count()} CPUs")
    print(f"{'command':<28} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'cpu ms':>8}")
    status = 0
    for command in commands:
        try:
            times, cpu = time_command(command.split(), args.repeat, args.tree)
        except RuntimeError as err:
            print(f"{'htfl ' + command:<28} failed: {err}")
            status = 1
            continue
        ms = [t * 1000 for t in times]
        print(
            f"{'htfl ' + command:<28} {statistics.median(ms):>10.0f} "
            f"{min(ms):>8.0f} {max(ms):>8.0f} {statistics.median(cpu) * 1000:>8.0f}"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
