"""What a device does with each message: the client side of an experiment, kept in memory.

One :class:`ClientRuntime` lives as long as the agent. Per run it keeps the method's client
side (private model, optimizer state, local data), so HtFL state never leaves the device and
survives between rounds without being re-read.
"""

from __future__ import annotations

import logging
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import Context, Message

import htfl
from htfl import accelerator, protocol
from htfl.algorithms import get_method
from htfl.algorithms.base import ClientSide, TrainSettings
from htfl.datasets.base import data_dir as default_data_dir
from htfl.datasets.delivery import obtain_client_shard
from htfl.device.instruments import DeviceInstruments, TaskTiming
from htfl.device.private_state import PrivateStateStore
from htfl.models import build_model, count_parameters

log = logging.getLogger(__name__)


@dataclass
class RunState:
    client: ClientSide
    client_index: int
    arch: str
    timings: dict[str, float] = field(default_factory=dict)
    #: where this run's private model is saved after each trained round (None: not saved)
    state_path: Path | None = None


class StaleTask(RuntimeError):
    """A train task the server has stopped waiting for: dropped, not trained."""


class ClientRuntime:
    """Dispatches protocol messages to the method's client side for each run."""

    def __init__(
        self,
        device_class: str,
        device_name: str,
        torch_threads: int = 0,
        instruments: DeviceInstruments | None = None,
        *,
        data_dir: Path | None = None,
        training_device: str = "auto",
        state_dir: Path | None = None,
    ) -> None:
        self.device_class = device_class
        self.device_name = device_name
        self.instruments = instruments
        #: Where prepared shards are fetched to / synced to: the agent's --data-dir.
        self.data_dir = data_dir if data_dir is not None else default_data_dir()
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.runs: dict[int, RunState] = {}
        #: the private model and optimizer on disk, per experiment (survives a restart)
        self.private = PrivateStateStore(state_dir or self.data_dir / "private-state", device_name)
        #: device clock minus server clock, as the server measured it (0 until setup)
        self.clock_offset = 0.0
        #: this device class's setting (inventory ``htfl_training_device``); the experiment's
        #: ``[training] device`` wins unless it says "auto"
        self.training_device = training_device

    def _observe(self, phase: str, seconds: float) -> None:
        if self.instruments is not None:
            self.instruments.phases.observe_phase(phase, seconds)

    def __call__(self, message: Message, context: Context, timing: TaskTiming) -> Message:
        received = time.perf_counter()
        kind = message.metadata.message_type
        handlers = {
            protocol.PING: self._ping,
            protocol.HELLO: self._hello,
            protocol.SETUP: self._setup,
            protocol.TRAIN: self._train,
            protocol.EVALUATE: self._evaluate,
        }
        if kind not in handlers:
            raise protocol.ProtocolError(f"unknown message type {kind!r}")
        config, payload, metrics = handlers[kind](message)
        start_serialise = time.perf_counter()
        reply = Message(protocol.content(config, payload, None), reply_to=message)
        metrics["serialise_seconds"] = time.perf_counter() - start_serialise
        metrics["handle_seconds"] = time.perf_counter() - received
        metrics["download_seconds"] = timing.download_seconds
        metrics["idle_seconds"] = timing.idle_seconds
        self._observe("serialise", metrics["serialise_seconds"])
        if kind in (protocol.TRAIN, protocol.EVALUATE):
            self._add_energy(metrics, timing)
            if self.instruments is not None:  # the meter's samples since the last reply
                self.instruments.attach_trace(reply.content)
        reply.content["metrics"] = protocol.content(metrics=metrics)["metrics"]
        # Payload bytes are counted by the SuperNode as it moves the message (flower_adapter).
        return reply

    def _add_energy(self, metrics: dict[str, float], timing: TaskTiming) -> None:
        """Energy of handling this message, and of the idle time before it, from the meter."""
        if self.instruments is None:
            return
        end = time.time()
        # The intervals themselves (device clock), so that the server can price them with a
        # meter it reads itself and anyone can recompute them from the raw traces.
        metrics["busy_start"], metrics["busy_end"] = timing.received_at, end
        if timing.idle_seconds > 0:
            metrics["idle_start"] = timing.idle_started_at
        busy = self.instruments.energy(timing.received_at, end, "busy")
        if busy is None:
            return
        metrics["energy_joules"] = busy.joules
        partial = busy.partial
        if timing.idle_seconds > 0:
            idle = self.instruments.energy(timing.idle_started_at, timing.received_at, "idle")
            if idle is not None:
                metrics["idle_energy_joules"] = idle.joules
                partial = partial or idle.partial
        metrics["energy_partial"] = float(partial)

    def _ping(self, message: Message):
        return None, None, {}

    def _hello(self, message: Message):
        info = {
            "device_class": self.device_class,
            "device_name": self.device_name,
            "hostname": socket.gethostname(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "htfl": htfl.__version__,
            "training_device": self.training_device,
            **accelerator.cuda_facts(),
            **(self.instruments.meter_facts() if self.instruments is not None else {}),
        }
        return info, None, {"device_time": time.time()}

    def _run(self, message: Message) -> RunState:
        run_id = message.metadata.run_id
        if run_id not in self.runs:
            raise protocol.ProtocolError(
                f"run {run_id}: {message.metadata.message_type} before train.setup"
            )
        return self.runs[run_id]

    def _setup(self, message: Message):
        t0 = time.perf_counter()
        cfg = protocol.read_config(message)
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
        self.runs[message.metadata.run_id] = RunState(
            client, int(cfg["client_index"]), cfg["arch"], state_path=state_path
        )
        self.clock_offset = float(cfg.get("clock_offset_seconds", 0.0))
        if self.instruments is not None and "clock_offset_seconds" in cfg:
            self.instruments.phases.set_clock_offset(float(cfg["clock_offset_seconds"]))
        # Older runs' state is released: a device serves one experiment at a time.
        for run_id in [r for r in self.runs if r != message.metadata.run_id]:
            del self.runs[run_id]
        log.info(
            "run %s: client %s trains %s", message.metadata.run_id, cfg["client_index"], cfg["arch"]
        )
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
        return info, None, metrics

    def _train_settings(self, training: dict) -> TrainSettings:
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

    def _receive(self, state: RunState, message: Message) -> float:
        t0 = time.perf_counter()
        state.client.receive(protocol.read_payload(message))
        return time.perf_counter() - t0

    def _evaluate_into(self, state: RunState, metrics: dict[str, float]) -> None:
        t0 = time.perf_counter()
        result = state.client.evaluate()
        metrics.update(
            test_accuracy=result.accuracy,
            test_loss=result.loss,
            num_test=result.num_samples,
            evaluate_seconds=time.perf_counter() - t0,
        )
        self._observe("evaluate", metrics["evaluate_seconds"])

    def _check_fresh(self, message: Message, config: dict) -> None:
        """Refuse a train task older than its round's deadline (on the server's clock): the
        server has closed that round (this device was frozen or far behind), so training it
        would spend an epoch the server never sees."""
        deadline = config.get("deadline_seconds")
        if deadline is None:
            return
        age = time.time() - self.clock_offset - message.metadata.created_at
        if age > float(deadline):
            log.warning(
                "round %s: task is %.1f s old, past its %.0f s deadline: dropped, not trained",
                config.get("round"),
                age,
                float(deadline),
            )
            raise StaleTask(
                f"round {config.get('round')}: stale task ({age:.1f} s old, deadline "
                f"{float(deadline):.0f} s): dropped, not trained"
            )

    def _train(self, message: Message):
        state = self._run(message)
        config = protocol.read_config(message)
        self._check_fresh(message, config)
        rnd = int(config.get("round", 0))
        if self.instruments is not None:
            self.instruments.phases.set_round(rnd)
        metrics: dict[str, float] = {"deserialise_seconds": self._receive(state, message)}
        t0 = time.perf_counter()
        metrics["train_loss"] = self._train_client(state)
        metrics["train_seconds"] = time.perf_counter() - t0
        self._observe("train", metrics["train_seconds"])
        metrics["num_train"] = len(state.client.shard.train_y)
        upload = state.client.upload()
        if state.state_path is not None:
            t0 = time.perf_counter()
            self.private.save(state.state_path, state.client)
            metrics["state_save_seconds"] = time.perf_counter() - t0
        return None, upload, metrics

    def _evaluate(self, message: Message):
        state = self._run(message)
        metrics: dict[str, float] = {"deserialise_seconds": self._receive(state, message)}
        self._evaluate_into(state, metrics)
        return None, None, metrics
