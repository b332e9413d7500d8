"""Time to validate an experiment file (and a meter spec): what a user waits for before a run.

Run: ``.venv/bin/python -m benchmarks.validation [--repeat 50] [--file F] [--tree DIR]``

Each measurement runs in a fresh interpreter: the import of the experiment loader (pydantic
builds its validators then), then ``--repeat`` calls of each step, reporting the median and
the 90th percentile in milliseconds:

* ``load_experiment``: read the TOML file and validate every section;
* ``experiment_from_dict``: validation alone, from the parsed file;
* ``preflight``: the file checks after validation (absent before the preflight step existed);
* ``MeterSpec.from_mapping``: one ``htfl_meter`` mapping.

``--tree`` also times another checkout (e.g. ``git archive HEAD htfl | tar -x -C /tmp/before``)
with this interpreter, as a "before" column.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "experiments" / "quickstart.toml"

#: Runs in the child interpreter: the htfl on its path is the one timed.
_CHILD = r"""
import json, statistics, sys, time, tomllib
path, repeat = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
from htfl.workstation.config.experiment import experiment_from_dict, load_experiment
from htfl.device.power.config import MeterSpec
out = {"import": [time.perf_counter() - t0]}
try:
    from htfl.workstation.config.preflight import preflight
except ImportError:
    preflight = None
raw = tomllib.loads(open(path).read())
exp = load_experiment(path)
steps = {
    "load_experiment": lambda: load_experiment(path),
    "experiment_from_dict": lambda: experiment_from_dict(raw, path),
    "MeterSpec.from_mapping": lambda: MeterSpec.from_mapping(
        {"driver": "um25c", "port": "/dev/rfcomm0", "baudrate": "9600"}, "nano-01"),
}
if preflight is not None:
    steps["preflight"] = lambda: preflight(exp)
for name, step in steps.items():
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    out[name] = times
out["htfl"] = __import__("htfl").__file__
print(json.dumps(out))
"""

ROWS = ("import", "load_experiment", "experiment_from_dict", "preflight", "MeterSpec.from_mapping")


def measure(path: Path, repeat: int, tree: Path | None = None) -> dict:
    """Seconds per call of each step, timed in a fresh interpreter (``tree``'s htfl if given)."""
    env = dict(os.environ)
    cwd = str(REPO)
    if tree is not None:  # the tree's htfl shadows the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        cwd = str(tree)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path.resolve()), str(repeat)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"timing {path} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ms(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(columns: dict[str, dict]) -> str:
    """Median (p90) milliseconds per step, one column per tree."""
    header = f"{'step':<24}" + "".join(f"{name:>26}" for name in columns)
    lines = [header, "-" * len(header)]
    for row in ROWS:
        cells = []
        for result in columns.values():
            times = result.get(row)
            if not times:
                cells.append(f"{'-':>26}")
            elif len(times) == 1:
                cells.append(f"{_ms(times, 0.5):>14.3f} ms (once) ")
            else:
                cells.append(f"{_ms(times, 0.5):>11.3f} ms (p90 {_ms(times, 0.9):7.3f})")
        lines.append(f"{row:<24}" + "".join(cells))
    lines += [f"{name}: htfl from {result['htfl']}" for name, result in columns.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=50, help="calls per step (default: %(default)s)"
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=DEFAULT_FILE,
        help="the experiment file (default: experiments/quickstart.toml)",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="also time the htfl of this source tree, as a 'before' column (default: none)",
    )
    args = parser.parse_args(argv)
    columns: dict[str, dict] = {}
    if args.tree is not None:
        columns[f"before ({args.tree})"[:25]] = measure(args.file, args.repeat, args.tree)
    columns["this tree"] = measure(args.file, args.repeat)
    print(f"{args.file.name}: median of {args.repeat} calls per step, fresh interpreter each")
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
