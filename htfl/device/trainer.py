"""The device's trainer: the method's client side per run, in plain dicts and numpy arrays.

Split from the Flower-facing :mod:`htfl.device.client_runtime` so that it imports no flwr: it
runs in the agent's own process (the default), or as a separate long-lived process in another
interpreter (:mod:`htfl.device.trainer_process`), e.g. the JetPack system Python that NVIDIA's
CUDA torch is built for. Either way the private model, its optimizer state and the local data
stay here between rounds. Runs on Python >= 3.10 (tests/test_trainer_process.py checks it).
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import htfl
from htfl import accelerator
from htfl.algorithms import get_method
from htfl.algorithms.base import ClientSide, TrainSettings
from htfl.datasets.delivery import obtain_client_shard
from htfl.device.private_state import PrivateStateStore
from htfl.models import build_model, count_parameters

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


@dataclass
class RunState:
    client: ClientSide
    client_index: int
    arch: str
    timings: dict[str, float] = field(default_factory=dict)
    #: where this run's private model is saved after each trained round (None: not saved)
    state_path: Path | None = None


class RunNotSetUp(ValueError):
    """A train/evaluate for a run this trainer has no client side for (no setup yet)."""


class Trainer:
    """Setup, train and evaluate for each run; what the agent forwards its messages to."""

    def __init__(
        self,
        device_class: str,
        device_name: str,
        data_dir: Path,
        *,
        torch_threads: int = 0,
        training_device: str = "auto",
        state_dir: Path | None = None,
    ) -> None:
        self.device_class = device_class
        self.device_name = device_name
        self.data_dir = data_dir
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.runs: dict[int, RunState] = {}
        #: the private model and optimizer on disk, per experiment (survives a restart)
        self.private = PrivateStateStore(state_dir or data_dir / "private-state", device_name)
        #: this device class's setting (inventory ``htfl_training_device``); the experiment's
        #: ``[training] device`` wins unless it says "auto"
        self.training_device = training_device

    def facts(self) -> dict[str, Any]:
        """What this trainer trains with: its torch and accelerator, and its interpreter."""
        return {
            "torch": torch.__version__,
            "trainer_python": platform.python_version(),
            "trainer_executable": sys.executable,
            "htfl": htfl.__version__,
            **accelerator.cuda_facts(),
        }

    def run(self, run_id: int, kind: str) -> RunState:
        if run_id not in self.runs:
            raise RunNotSetUp(f"run {run_id}: {kind} before train.setup")
        return self.runs[run_id]

    def setup(self, run_id: int, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        t0 = time.perf_counter()
        method = get_method(cfg["algorithm"])
        # built here, or prepared and fetched/verified under the data directory
        shard = obtain_client_shard(cfg, self.data_dir)
        torch.manual_seed(int(cfg["seed"]))  # same init for every client of one arch
        model = build_model(
            cfg["arch"], tuple(shard.input_shape), shard.num_classes, int(cfg["feature_dim"])
        )
        client = method.client(
            model,
            shard,
            self._train_settings(cfg["training"]),
            method.params(**cfg["params"]),
            int(cfg["seed"]) + int(cfg["client_index"]),
        )
        state_path = None
        resumed_round = 0
        if cfg.get("experiment_id"):
            state_path = self.private.path(
                str(cfg["experiment_id"]), int(cfg["client_index"]), cfg["arch"]
            )
            if cfg.get("resume_private_state"):  # a resumed experiment or a returning device
                resumed_round = self.private.restore(state_path, client)
        self.runs[run_id] = RunState(
            client, int(cfg["client_index"]), cfg["arch"], state_path=state_path
        )
        # Older runs' state is released: a device serves one experiment at a time.
        for old in [r for r in self.runs if r != run_id]:
            del self.runs[old]
        log.info("run %s: client %s trains %s", run_id, cfg["client_index"], cfg["arch"])
        counts = shard.label_counts()
        info = {"label_counts": {str(k): v for k, v in counts.items()}}
        metrics = {
            "num_train": len(shard.train_y),
            "num_test": len(shard.test_y),
            "num_classes": shard.num_classes,
            "num_parameters": count_parameters(model),
            "model_bytes": sum(p.numel() * p.element_size() for p in model.state_dict().values()),
            "setup_seconds": time.perf_counter() - t0,
            "resumed_round": resumed_round,
        }
        return info, metrics

    def _train_settings(self, training: dict[str, Any]) -> TrainSettings:
        """``[training]`` with the device this client trains on (see :func:`accelerator.choose`);
        a device that cannot train there fails setup, naming itself."""
        device = accelerator.choose(str(training.get("device", "auto")), self.training_device)
        accelerator.resolve_device(device, f"device {self.device_name!r} ({self.device_class})")
        return TrainSettings(**{**training, "device": device})

    def _train_client(self, state: RunState) -> float:
        """Local training; an accelerator out-of-memory becomes this device's error, naming
        what did not fit, and the agent (and the run) go on."""
        client = state.client
        try:
            return client.train()
        except Exception as err:
            if not accelerator.is_out_of_memory(err):
                raise
            client.optimizer.zero_grad(set_to_none=True)
            accelerator.release_cached_memory(client.device)
            raise accelerator.AcceleratorError(
                f"out of memory on {client.device} training {state.arch} at batch size "
                f"{client.settings.batch_size} ({client.precision}): {str(err)[:200]}"
            ) from None

    def _receive(self, state: RunState, payload: Arrays) -> float:
        t0 = time.perf_counter()
        state.client.receive(payload)
        return time.perf_counter() - t0

    def train(self, run_id: int, payload: Arrays) -> tuple[Arrays, dict[str, float]]:
        """Global knowledge in, one round of local training, the upload out."""
        state = self.run(run_id, "train")
        metrics = {"deserialise_seconds": self._receive(state, payload)}
        t0 = time.perf_counter()
        metrics["train_loss"] = self._train_client(state)
        metrics["train_seconds"] = time.perf_counter() - t0
        metrics["num_train"] = len(state.client.shard.train_y)
        upload = state.client.upload()
        if state.state_path is not None:
            t0 = time.perf_counter()
            self.private.save(state.state_path, state.client)
            metrics["state_save_seconds"] = time.perf_counter() - t0
        return upload, metrics

    def evaluate(self, run_id: int, payload: Arrays) -> dict[str, float]:
        state = self.run(run_id, "evaluate")
        metrics = {"deserialise_seconds": self._receive(state, payload)}
        t0 = time.perf_counter()
        result = state.client.evaluate()
        metrics.update(
            test_accuracy=result.accuracy,
            test_loss=result.loss,
            num_test=result.num_samples,
            evaluate_seconds=time.perf_counter() - t0,
        )
        return metrics
