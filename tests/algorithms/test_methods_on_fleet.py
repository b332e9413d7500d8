"""Every method, 3 rounds, on one real local fleet (a SuperLink and 3 agents as processes) with
3 architectures: experiments go in through Flower's Control API as ``htfl run`` submits them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from htfl.algorithms import METHODS
from htfl.workstation.local_fleet import LocalFleet, expand_selection
from htfl.workstation.server.results import read_rows
from tests.fleet_runs import run_on_fleet

pytestmark = pytest.mark.integration

ROUNDS = 3
CLASSES = {"jetson-nano": 1, "orange-pi-5b": 1, "jetson-orin-nano": 1}
ARCHS = {"jetson-nano": "cnn4", "orange-pi-5b": "resnet4", "jetson-orin-nano": "resnet6"}
#: Small server-side budgets: the point is that every method runs end to end, quickly.
PARAMS = {
    "fedgen": {"server_epochs": 10},
    "fedgh": {"server_epochs": 10},
    "fedtgp": {"server_epochs": 10},
    "fedktl": {"server_epochs": 5, "image_size": 16},
}


def experiment_file(directory: Path, name: str, generator: Path) -> Path:
    params = dict(PARAMS.get(name, {}))
    if name == "fedktl":
        params["generator_path"] = str(generator)
    archs = {c: "cnn4" for c in CLASSES} if METHODS[name].homogeneous else ARCHS
    lines = [
        "[experiment]",
        f'id = "fleet-{name}"',
        f"rounds = {ROUNDS}",
        f"eval_every = {ROUNDS}",  # evaluate after the last round only: one exchange less a round
        "seed = 3",
        "[algorithm]",
        f'name = "{name}"',
        "[algorithm.params]",
        *(f"{k} = {json.dumps(v)}" for k, v in params.items()),
        "[data]",
        'dataset = "digits"',
        'partition = "dirichlet"',
        "alpha = 0.5",
        "train_fraction = 0.3",  # ~150 training samples per client: quick rounds
        "[training]",
        "batch_size = 16",
        "learning_rate = 0.05",
        "momentum = 0.9",
        "[devices]",
        "classes = { " + ", ".join(f'"{c}" = {n}' for c, n in CLASSES.items()) + " }",
        "deadline_seconds = 120",
        f"min_replies = {len(CLASSES)}",
        "[models]",
        "feature_dim = 32",
        *(f'"{c}" = "{a}"' for c, a in archs.items()),
    ]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    """One SuperLink and three agents for every method in this module."""
    root = tmp_path_factory.mktemp("fleet")
    with LocalFleet(expand_selection(CLASSES), root / "fleet-logs") as local:
        yield local, root


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_runs_three_rounds_on_the_fleet(fleet, generator_file: Path, name: str) -> None:
    local, root = fleet
    results = root / "results"
    summary = run_on_fleet(local, experiment_file(root, name, generator_file), results)
    assert summary["status"] == "finished", (
        f"{summary.get('error')}\n{local.log_tails(['superlink', *local.procs])}"
    )
    rows = read_rows(results / f"fleet-{name}")
    assert sorted((int(r["round"]), int(r["client_index"])) for r in rows) == [
        (rnd, c) for rnd in range(1, ROUNDS + 1) for c in range(len(CLASSES))
    ]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    expected_archs = {"cnn4"} if METHODS[name].homogeneous else set(ARCHS.values())
    assert {r["arch"] for r in rows} == expected_archs
    last = [r for r in rows if int(r["round"]) == ROUNDS]
    assert all(r["test_accuracy"] not in ("", None) for r in last)
    assert all(int(r["bytes_up"]) > 0 and int(r["bytes_down"]) > 0 for r in rows)
    if name != "local":  # something crossed the wire beyond the metrics record
        assert max(int(r["bytes_up"]) for r in rows) > 1500
