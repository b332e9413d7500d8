"""The ClientApp of a simulated run: the device's own message handling, one virtual client at a
time, with modelled costs.

Each virtual SuperNode of Flower's simulation runtime is one virtual client. Its message goes
through the same :class:`htfl.device.client_runtime.ClientRuntime` an agent runs (setup, train,
evaluate: the same method code, models and shards), and the reply's device figures are then
replaced by what the client's device class would have spent (:mod:`.cost`), marked
``modelled``.

Client state policy (private model, optimizer, shard between messages):

* ``memory`` (default): pickled into the node's ``Context.state``, which Flower's simulation
  runtime keeps in the driver's memory and ships to whichever Ray actor runs the client next
  (so it also works on a Ray cluster). Cost: about 2 x model size + shard per client of driver
  RAM, and one (de)serialisation per message.
* ``disk``: written to ``<state_dir>/<client>.pt`` after each message and read back before
  the next; the driver keeps only the path. Cost: a file write and read per message; the
  directory must be shared by every Ray node when the simulation spans a cluster.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from htfl import protocol
from htfl.device.client_runtime import ClientRuntime, RunState
from htfl.device.instruments import TaskTiming
from htfl.flower_internals import get_all_nested_objects
from htfl.workstation.simulation.cost import model_cost, train_steps

STATE_POLICIES = ("memory", "disk")
#: Flower's key for a virtual node's partition in its node config.
PARTITION_ID = "partition-id"


def virtual_devices(classes: dict[str, int], count: int) -> list[tuple[str, str]]:
    """(name, device class) of ``count`` virtual clients: the experiment's class counts first,
    then round robin over its classes, named like lab hosts (``<class>-01``...)."""
    names = [(f"{cls}-{i:02d}", cls) for cls, n in classes.items() for i in range(1, n + 1)]
    per_class = {cls: n for cls, n in classes.items()}
    order = list(classes)
    while len(names) < count:
        cls = order[len(names) % len(order)]
        per_class[cls] += 1
        names.append((f"{cls}-{per_class[cls]:02d}", cls))
    return names[:count]


@dataclass(frozen=True)
class VirtualFleet:
    """What every virtual client needs to know, shipped to the Ray actors with the app."""

    devices: tuple[tuple[str, str], ...]
    state_policy: str
    state_dir: str
    data_dir: str


def _save(state: RunState) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _load(blob: bytes) -> RunState:
    return torch.load(io.BytesIO(blob), weights_only=False)


class VirtualClient:
    """One message of one virtual client: restore its state, handle, model the cost, keep."""

    def __init__(self, fleet: VirtualFleet, context: Context) -> None:
        self.fleet = fleet
        self.context = context
        self.index = int(context.node_config[PARTITION_ID])
        self.name, self.device_class = fleet.devices[self.index]
        self.runtime = ClientRuntime(
            self.device_class, self.name, torch_threads=1, data_dir=Path(fleet.data_dir)
        )

    @property
    def _state_file(self) -> Path:
        return Path(self.fleet.state_dir) / f"{self.name}.pt"

    def restore(self, run_id: int) -> None:
        record = self.context.state.config_records.get("htfl")
        if record is None:
            return
        if self.fleet.state_policy == "memory":
            blob = record["state"]
            assert isinstance(blob, bytes)
        else:
            blob = self._state_file.read_bytes()
        self.runtime.runs[run_id] = _load(blob)

    def keep(self, run_id: int) -> None:
        state = self.runtime.runs.get(run_id)
        if state is None:
            return
        blob = _save(state)
        if self.fleet.state_policy == "memory":
            self.context.state.config_records["htfl"] = ConfigRecord({"state": blob})
        else:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(self._state_file)
            self.context.state.config_records["htfl"] = ConfigRecord({"path": str(tmp)})

    def handle(self, message: Message) -> Message:
        run_id = message.metadata.run_id
        kind = message.metadata.message_type
        if kind != protocol.SETUP:
            self.restore(run_id)
        if kind == protocol.TRAIN:
            # no wall-clock deadline: a virtual client may run long after the round started
            # (hundreds share a few cores); its lateness is judged on the modelled round time
            # (htfl.workstation.simulation.deadline.apply_modelled_deadline)
            message = _without(message, "deadline_seconds")
        elif kind == protocol.SETUP:
            # no experiment id, so the runtime keeps no private state file per round (an
            # agent's restart insurance): a virtual client's state already lives where the
            # state policy says, and the extra file was a tenth of a message's cost
            message = _without(message, "experiment_id")
        now = time.time()
        reply = self.runtime(message, self.context, TaskTiming(now, 0.0, 0.0, now))
        if kind in (protocol.TRAIN, protocol.EVALUATE) and not reply.has_error():
            self._model(message, reply)
        self.keep(run_id)
        return reply

    def _model(self, message: Message, reply: Message) -> None:
        """Replace the host's timings and energy in the reply by the device class's, and record
        the bytes a deployment would have moved each way (no wire is crossed here)."""
        metrics = protocol.read_metrics(reply)
        train = message.metadata.message_type == protocol.TRAIN
        phase = "train_seconds" if train else "evaluate_seconds"
        host = float(metrics.get(phase, 0.0))
        steps = 0
        if train:
            settings = self.runtime.runs[message.metadata.run_id].client.settings
            steps = train_steps(
                int(metrics.get("num_train", 0)), settings.batch_size, settings.local_epochs
            )
            metrics["train_steps"] = steps
        metrics["host_" + phase] = host
        # The reply's size includes the figures written below; every one of them is a float
        # (a fixed-width double on the wire), so the reply sized with placeholders in their
        # place is the reply's final size.
        figures = (phase, *MODELLED_FIGURES, *(("step_seconds",) if train else ()))
        metrics.update(dict.fromkeys(figures, 0.0))
        protocol.set_metrics(reply.content, metrics)
        bytes_down, bytes_up = wire_bytes(message), wire_bytes(reply)
        cost = model_cost(self.device_class, host, bytes_down, bytes_up)
        metrics[phase] = cost.compute_seconds
        if train:
            metrics["step_seconds"] = cost.compute_seconds / steps if steps else math.nan
        metrics["download_seconds"] = cost.download_seconds
        metrics["upload_seconds"] = cost.upload_seconds
        metrics["modelled_round_seconds"] = cost.round_seconds
        metrics["handle_seconds"] = cost.compute_seconds
        metrics["energy_joules"] = cost.energy_joules
        metrics["energy_partial"] = 0.0
        metrics["modelled_bytes_down"] = float(bytes_down)
        metrics["modelled_bytes_up"] = float(bytes_up)
        metrics["modelled"] = 1.0
        protocol.set_metrics(reply.content, metrics)


#: The reply figures :meth:`VirtualClient._model` writes besides the phase's seconds.
MODELLED_FIGURES = (
    "download_seconds",
    "upload_seconds",
    "modelled_round_seconds",
    "handle_seconds",
    "energy_joules",
    "energy_partial",
    "modelled_bytes_down",
    "modelled_bytes_up",
    "modelled",
)


def wire_bytes(message: Message) -> int:
    """The bytes a deployed Flower would move for ``message``: every object of its tree (its
    records, arrays and their chunks, serialised), once each, without the message's own
    metadata object; what the ServerApp counts on a fleet (``flower_adapter.GridWire``)."""
    objects = get_all_nested_objects(message)
    objects.pop(message.object_id)
    return sum(len(obj.deflate()) for obj in objects.values())


def _without(message: Message, key: str) -> Message:
    """``message`` with ``key`` dropped from its config (when it has it)."""
    config = protocol.read_config(message)
    if key in config:
        config.pop(key)
        protocol.replace_config(message, config)
    return message


def make_client_app(fleet: VirtualFleet) -> ClientApp:
    """The simulation's ClientApp, closing over ``fleet`` (pickled to every Ray actor)."""
    app = ClientApp()

    def handle(message: Message, context: Context) -> Message:
        return VirtualClient(fleet, context).handle(message)

    app.train()(handle)
    app.train("setup")(handle)
    app.evaluate()(handle)
    app.query("hello")(handle)
    app.query("ping")(handle)
    return app
