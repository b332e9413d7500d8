"""`[training] device = "cuda"` on a real local fleet: without a GPU the run stops at setup, before
any round, with an error that names each device; devices.json records what each one has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fleet_runs import two_device_fedavg
from tests.integration.conftest import htfl

pytestmark = pytest.mark.integration

#: the two-device FedAvg of the fleet tests, asking for CUDA
CUDA_EXPERIMENT = two_device_fedavg("cuda-wanted", rounds=1, train_fraction=0.5).replace(
    "batch_size = 16\n", 'batch_size = 16\ndevice = "cuda"\n'
)


def test_cuda_without_a_gpu_fails_before_any_round_naming_the_devices(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(CUDA_EXPERIMENT)
    result = htfl("run", str(exp), "--local-fleet", "2", "--results", str(tmp_path / "results"))
    out_dir = tmp_path / "results" / "cuda-wanted"
    summary = json.loads((out_dir / "summary.json").read_text())
    devices = json.loads((out_dir / "devices.json").read_text())
    assert {d["info_cuda_available"] for d in devices} == {torch.cuda.is_available()}
    assert {d["info_torch_build"] for d in devices} == {torch.__version__}
    if torch.cuda.is_available():  # a machine with a GPU trains there
        assert result.returncode == 0, result.stderr[-3000:]
        assert summary["status"] == "finished"
        return
    assert result.returncode != 0
    assert summary["status"] == "failed"
    error = summary["error"]
    assert "device setup failed" in error
    for d in devices:
        assert f"device '{d['device']}' ({d['device_class']}): device = \"cuda\"" in error
    assert "sees no CUDA GPU" in error
    rounds = out_dir / "rounds.csv"
    assert not rounds.exists() or len(rounds.read_text().strip().splitlines()) <= 1
