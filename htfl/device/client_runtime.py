"""What a device does with each message: decode it, forward it to the trainer, reply.

One :class:`ClientRuntime` lives as long as the agent. It is the Flower-facing half of the
device: it reads protocol messages, checks freshness, measures phases and energy, and builds
the reply; the training itself is a :class:`~htfl.device.trainer.Trainer`, in this process
(the default) or, with ``trainer_python``, a long-lived trainer process in another interpreter
(:class:`~htfl.device.remote_trainer.RemoteTrainer`). Either way the trainer keeps the
method's client side per run (private model, optimizer state, local data), so HtFL state never
leaves the device and survives between rounds without being re-read.
"""

from __future__ import annotations

import logging
import platform
import socket
import time
from pathlib import Path
from typing import Any

from flwr.app import Context, Message

import htfl
from htfl import protocol
from htfl.datasets.base import data_dir as default_data_dir
from htfl.device.instruments import DeviceInstruments, TaskTiming
from htfl.device.remote_trainer import RemoteTrainer, TrainerFailed
from htfl.device.trainer import Arrays, RunNotSetUp, RunState, Trainer

__all__ = ["ClientRuntime", "RunState", "StaleTask", "TrainerFailed"]

log = logging.getLogger(__name__)


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
        trainer_python: str | None = None,
    ) -> None:
        self.device_class = device_class
        self.device_name = device_name
        self.instruments = instruments
        #: Where prepared shards are fetched to / synced to: the agent's --data-dir.
        self.data_dir = data_dir if data_dir is not None else default_data_dir()
        #: device clock minus server clock, as the server measured it (0 until setup)
        self.clock_offset = 0.0
        #: this device class's setting (inventory ``htfl_training_device``); the experiment's
        #: ``[training] device`` wins unless it says "auto"
        self.training_device = training_device
        #: the interpreter of a separate trainer process (None: train in this process)
        self.trainer_python = trainer_python
        self.trainer: Trainer | RemoteTrainer
        if trainer_python is None:
            self.trainer = Trainer(
                device_class,
                device_name,
                self.data_dir,
                torch_threads=torch_threads,
                training_device=training_device,
                state_dir=state_dir,
            )
        else:
            self.trainer = RemoteTrainer(
                trainer_python,
                device_class,
                device_name,
                self.data_dir,
                torch_threads=torch_threads,
                training_device=training_device,
                state_dir=state_dir,
            )

    @property
    def runs(self) -> dict[int, RunState]:
        """Each run's client side, when training happens in this process."""
        if not isinstance(self.trainer, Trainer):
            raise AttributeError("the runs live in the trainer process (trainer_python)")
        return self.trainer.runs

    def start(self) -> None:
        """Start a trainer process now (no wait), so its imports overlap the agent's start; a
        trainer that cannot start is logged here and reported at the next request."""
        if isinstance(self.trainer, RemoteTrainer):
            try:
                self.trainer.spawn()
            except TrainerFailed as err:
                log.error("%s", err)

    def close(self) -> None:
        """Stop the trainer process, if any (it also stops by itself when the agent exits)."""
        if isinstance(self.trainer, RemoteTrainer):
            self.trainer.stop()

    def _observe(self, phase: str, seconds: float) -> None:
        if self.instruments is not None:
            self.instruments.phases.observe_phase(phase, seconds)

    def __call__(self, message: Message, context: Context, timing: TaskTiming) -> Message:
        received = time.perf_counter()
        kind = message.metadata.message_type
        if kind in (protocol.TRAIN, protocol.EVALUATE) and self.instruments is not None:
            self.instruments.mark()  # the message's energy interval starts here
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
        protocol.set_metrics(reply.content, metrics)
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
        info: dict[str, Any] = {
            "device_class": self.device_class,
            "device_name": self.device_name,
            "hostname": socket.gethostname(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "htfl": htfl.__version__,
            "training_device": self.training_device,
            **(self.instruments.meter_facts() if self.instruments is not None else {}),
        }
        try:  # torch, CUDA and the interpreter of whatever trains
            info.update(self.trainer.facts())
        except TrainerFailed as err:  # the hello still answers; setup will fail, naming it
            info["trainer_error"] = str(err)
        return info, None, {"device_time": time.time()}

    def _setup(self, message: Message):
        cfg = protocol.read_config(message)
        info, metrics = self.trainer.setup(message.metadata.run_id, cfg)
        self.clock_offset = float(cfg.get("clock_offset_seconds", 0.0))
        if self.instruments is not None and "clock_offset_seconds" in cfg:
            self.instruments.phases.set_clock_offset(float(cfg["clock_offset_seconds"]))
        return info, None, metrics

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

    def _payload(self, message: Message) -> tuple[Arrays, float]:
        t0 = time.perf_counter()
        return protocol.read_payload(message), time.perf_counter() - t0

    def _train(self, message: Message):
        config = protocol.read_config(message)
        self._check_fresh(message, config)
        if self.instruments is not None:
            self.instruments.phases.set_round(int(config.get("round", 0)))
        payload, decode_seconds = self._payload(message)
        try:
            upload, metrics = self.trainer.train(message.metadata.run_id, payload)
        except RunNotSetUp as err:
            raise protocol.ProtocolError(str(err)) from None
        metrics["deserialise_seconds"] += decode_seconds
        self._observe("train", metrics["train_seconds"])
        return None, upload, metrics

    def _evaluate(self, message: Message):
        payload, decode_seconds = self._payload(message)
        try:
            metrics = self.trainer.evaluate(message.metadata.run_id, payload)
        except RunNotSetUp as err:
            raise protocol.ProtocolError(str(err)) from None
        metrics["deserialise_seconds"] += decode_seconds
        self._observe("evaluate", metrics["evaluate_seconds"])
        return None, None, metrics
