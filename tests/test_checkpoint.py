"""The ServerApp's checkpoint and a resumed results directory: no row lost, none duplicated;
`htfl run` ends, with a record, when Flower or the SuperLink gives up on the run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from htfl.algorithms import get_method
from htfl.algorithms.base import Upload
from htfl.workstation.cli import run as run_cli
from htfl.workstation.server import checkpoint
from htfl.workstation.server.results import (
    ClientRoundRow,
    ResultsStore,
    read_rows,
    record_ended,
)
from htfl.workstation.server.selection import Device, DeviceSelectionError, select


def _rows(rnd: int) -> list[ClientRoundRow]:
    return [ClientRoundRow(rnd, n, f"dev-{n}", "jetson-nano", "cnn4", n, "ok") for n in (0, 1)]


def test_a_resumed_store_keeps_checkpointed_rounds_and_drops_later_ones(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    for rnd in (1, 2, 3):  # round 3's rows were written, then the ServerApp died
        store.add_rows(_rows(rnd))
    store.close()
    resumed = ResultsStore(tmp_path, resume_after=2)
    resumed.add_rows(_rows(3))
    resumed.close()
    pairs = [(r["round"], r["device"]) for r in read_rows(tmp_path)]
    assert len(pairs) == 6 and len(set(pairs)) == 6  # none lost, none duplicated


def test_the_method_state_survives_a_checkpoint(tmp_path: Path) -> None:
    method = get_method("fedproto")
    server = method.server(method.params(), 3, 4, 0)
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(3, 4)).astype(np.float32)
    server.aggregate([Upload(0, 10, {"prototypes": protos, "counts": np.ones(3)}, {0: 10})])
    saved = checkpoint.Checkpoint(
        2, server, [{"device": "a", "client_index": 0}], {"seed": 0}, [{"round": 2}]
    )
    checkpoint.save(tmp_path, saved)
    back = checkpoint.load(tmp_path)
    assert back.round == 2 and back.selection == saved.selection and back.setup == {"seed": 0}
    for key, value in server.global_payload().items():
        np.testing.assert_array_equal(value, back.server.global_payload()[key])
    assert checkpoint.last_round(tmp_path) == 2
    assert checkpoint.last_round(tmp_path / "nowhere") == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_the_servers_gave_up_on_ends_with_a_record(tmp_path: Path, monkeypatch) -> None:
    done = [
        {"event": "round", "round": r, "rounds": 3, "answered": 2, "selected": 2, "accuracy": None}
        for r in (1, 2)
    ]
    lines = "".join(json.dumps(e) + "\n" for e in done)
    (tmp_path / "progress.jsonl").write_text(lines + '{"event": "rou')  # cut short by a kill
    monkeypatch.setattr(run_cli, "END_EVENT_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(run_cli.time, "sleep", lambda s: None)
    clock = itertools.count(0, 4)  # every look at the clock: 4 s later
    monkeypatch.setattr(run_cli.time, "monotonic", lambda: float(next(clock)))
    end = run_cli.follow(tmp_path, lambda: "finished:failed", timeout=None)
    assert end["cause"] == "serverapp_ended" and "finished:failed" in end["error"]

    def unreachable() -> str:
        raise ConnectionError("connection refused")

    end = run_cli.follow(tmp_path, unreachable, timeout=None, superlink_lost_after=30)
    assert end["cause"] == "superlink_lost" and "connection refused" in end["error"]
    assert f"htfl run --resume {tmp_path}" in end["error"]
    record_ended(tmp_path, 7, end)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["last_completed_round"] == 2
    assert summary["cause"] == "superlink_lost"


def test_two_nodes_claiming_one_device_name_are_an_error() -> None:
    from htfl.workstation.config.experiment import experiment_from_dict

    exp = experiment_from_dict(
        {
            "experiment": {"id": "x", "rounds": 1},
            "algorithm": {"name": "fedavg"},
            "data": {"dataset": "digits"},
            "devices": {"names": ["nano-01"]},
        },
        "exp.toml",
    )
    twins = [Device(n, "nano-01", "jetson-nano", {}, 0.0) for n in (11, 12)]
    with pytest.raises(DeviceSelectionError, match=r"'nano-01' by nodes \[11, 12\]"):
        select(twins, exp)
