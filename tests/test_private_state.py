"""An agent's private model and optimizer outlive the agent (restart, power loss), and a train
task the server has stopped waiting for is dropped, not trained."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from htfl import protocol
from htfl.device import private_state
from htfl.device.client_runtime import ClientRuntime, StaleTask
from tests.support.device_runtime import RUN_ID, SETUP, call, msg, pin_task_identity


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    pin_task_identity(monkeypatch)


SETUP_KEPT = {**SETUP, "experiment_id": "exp-a"}


def _trained_runtime(tmp_path: Path) -> ClientRuntime:
    runtime = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    call(runtime, msg(protocol.SETUP, SETUP_KEPT))
    call(runtime, msg(protocol.TRAIN, {"round": 1}, {}))
    call(runtime, msg(protocol.TRAIN, {"round": 2}, {}))
    return runtime


def test_a_restarted_agent_continues_with_its_own_model_and_optimizer(tmp_path: Path) -> None:
    before = _trained_runtime(tmp_path).runs[RUN_ID].client
    # a new agent process: nothing in memory, the same data directory
    again = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    reply = call(again, msg(protocol.SETUP, {**SETUP_KEPT, "resume_private_state": True}))
    assert protocol.read_metrics(reply)["resumed_round"] == 2
    after = again.runs[RUN_ID].client
    for key, value in before.model.state_dict().items():
        assert torch.equal(value, after.model.state_dict()[key]), key
    old = [s["momentum_buffer"] for s in before.optimizer.state.values()]
    new = [s["momentum_buffer"] for s in after.optimizer.state.values()]
    assert old and all(torch.equal(a, b) for a, b in zip(old, new, strict=True))
    assert after.round == 2


def test_a_new_run_of_the_experiment_starts_from_a_fresh_model(tmp_path: Path) -> None:
    _trained_runtime(tmp_path)
    again = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    reply = call(again, msg(protocol.SETUP, SETUP_KEPT))  # not a resume
    assert protocol.read_metrics(reply)["resumed_round"] == 0
    assert again.runs[RUN_ID].client.round == 0


def test_a_state_of_another_shape_is_not_restored(tmp_path: Path) -> None:
    _trained_runtime(tmp_path)
    again = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    other = {**SETUP_KEPT, "feature_dim": 16, "resume_private_state": True}
    reply = call(again, msg(protocol.SETUP, other))
    assert protocol.read_metrics(reply)["resumed_round"] == 0


def test_the_state_on_disk_is_bounded_to_the_latest_experiments(tmp_path: Path) -> None:
    runtime = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    root = tmp_path / "private-state"
    for i in range(private_state.KEEP_EXPERIMENTS + 2):
        call(runtime, msg(protocol.SETUP, {**SETUP, "experiment_id": f"exp-{i}"}))
        call(runtime, msg(protocol.TRAIN, {"round": 1}, {}))
        os.utime(root / f"exp-{i}", (time.time() + i, time.time() + i))
    kept = sorted(p.name for p in root.iterdir())
    assert len(kept) == private_state.KEEP_EXPERIMENTS
    assert f"exp-{private_state.KEEP_EXPERIMENTS + 1}" in kept and "exp-0" not in kept
    assert not list(root.rglob(".*.tmp"))  # written atomically: no temporary left behind


def test_a_stale_train_task_is_dropped_before_training(tmp_path: Path) -> None:
    runtime = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=tmp_path)
    call(runtime, msg(protocol.SETUP, SETUP_KEPT))
    client = runtime.runs[RUN_ID].client
    stale = msg(protocol.TRAIN, {"round": 3, "deadline_seconds": 20}, {})
    stale.metadata.created_at = time.time() - 45  # frozen 45 s: the server closed round 3
    with pytest.raises(StaleTask, match="round 3: stale task"):
        call(runtime, stale)
    assert client.round == 0  # no epoch spent
    fresh = msg(protocol.TRAIN, {"round": 4, "deadline_seconds": 20}, {})
    call(runtime, fresh)
    assert client.round == 1
