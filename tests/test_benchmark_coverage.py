"""Benchmarks cannot rot unseen: every script under ``benchmarks/`` is run at toy size by some
test that CI runs, and the scripts start fleets and talk to Flower only through htfl's own
modules (no ``sys.path`` edits, no private names, no Flower internals outside
``htfl.flower_internals``), so a change there breaks a test, not a figure nobody re-ran.

A smoke test "runs" ``benchmarks/NAME.py`` when a test file passes the module name
``"benchmarks.NAME"`` as a string (to ``python -m`` or ``run_benchmark``), or imports it
(``from benchmarks import NAME``) and calls ``NAME.main(``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
#: Flower's public app API (and ``flwr`` itself, for its version); everything else of Flower is
#: reached through htfl.flower_internals.
FLOWER_PUBLIC = ("flwr.app", "flwr.serverapp", "flwr.clientapp")


def benchmark_names() -> list[str]:
    return sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")


def runs_benchmark(text: str, name: str) -> bool:
    if re.search(rf"""["']benchmarks\.{name}["']""", text):
        return True
    imported = re.search(rf"from benchmarks import [^\n]*\b{name}\b", text)
    return bool(imported and re.search(rf"\b{name}\.main\(", text))


def test_every_benchmark_has_a_smoke_test() -> None:
    tests = [p.read_text() for p in (REPO / "tests").rglob("*.py") if p.name != Path(__file__).name]
    names = benchmark_names()
    assert len(names) >= 10, names  # the glob found the scripts
    missing = [n for n in names if not any(runs_benchmark(t, n) for t in tests)]
    assert not missing, f"benchmarks with no smoke test that runs them: {missing}"


def test_the_coverage_check_can_fail() -> None:
    assert runs_benchmark('run_benchmark("benchmarks.power", "--seconds")', "power")
    assert runs_benchmark("from benchmarks import validation\nvalidation.main([])", "validation")
    assert not runs_benchmark("from benchmarks.algorithms import EXPERIMENTS", "algorithms")
    assert not runs_benchmark('"benchmarks.power_x"', "power")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_benchmarks_import_only_public_names() -> None:
    problems = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        where = path.relative_to(REPO)
        if "sys.path" in path.read_text():
            problems.append(f"{where}: edits sys.path")
        for module, names in _imports(path):
            if any(part.startswith("_") and part != "__future__" for part in module.split(".")):
                problems.append(f"{where}: imports private module {module}")
            problems += [f"{where}: imports private {module}.{n}" for n in names if n[0] == "_"]
            if module.startswith("flwr.") and not module.startswith(FLOWER_PUBLIC):
                problems.append(f"{where}: imports Flower internals ({module}); use htfl's")
    assert not problems, "\n".join(problems)
