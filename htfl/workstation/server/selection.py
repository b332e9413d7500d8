"""Learn which devices are connected and pick the experiment's participants among them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

from htfl import protocol
from htfl.workstation.config.experiment import Experiment
from htfl.workstation.server.exchange import exchange
from htfl.workstation.simulation.deadline import wall_deadline


class DeviceSelectionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Device:
    node_id: int
    name: str
    device_class: str
    info: dict
    clock_offset_seconds: float  # device clock minus server clock
    hello_bytes: tuple[int, int] = (0, 0)  # content bytes of query.hello (down, up)


@dataclass(frozen=True)
class Participant:
    device: Device
    client_index: int
    arch: str


def wait_for_nodes(grid: Grid, needed: int, timeout_seconds: float) -> list[int]:
    end = time.monotonic() + timeout_seconds
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= needed or time.monotonic() >= end:
            return nodes
        time.sleep(0.2)


def discover(
    grid: Grid,
    nodes: list[int],
    timeout_seconds: float = 30.0,
    on_unreadable: Callable[[int, str], None] | None = None,
) -> list[Device]:
    """Ask every node who it is (``query.hello``); nodes that do not answer are left out.

    A node whose answer this htfl cannot read (another htfl version on the device) is passed
    to ``on_unreadable`` with the reason and left out; without one it is a
    :class:`DeviceSelectionError` naming the node, before anything starts.
    """
    messages = [
        Message(protocol.content(config={}), dst_node_id=n, message_type=protocol.HELLO)
        for n in nodes
    ]
    # (a simulation's virtual clients all answer, however long their actors take to start)
    result = exchange(grid, messages, deadline_seconds=wall_deadline(grid, timeout_seconds))
    devices = []
    for node, reply in result.replies.items():
        try:
            info = protocol.read_config(reply)
        except protocol.ProtocolError as err:
            if on_unreadable is None:
                raise DeviceSelectionError(f"node {node}: {err}") from None
            on_unreadable(node, str(err))
            continue
        device_time = protocol.read_metrics(reply).get("device_time", 0.0)
        midpoint = (result.sent_at + result.received_at[node]) / 2
        devices.append(
            Device(
                node,
                info["device_name"],
                info["device_class"],
                info,
                device_time - midpoint,
                (result.bytes_sent.get(node) or 0, result.bytes_received.get(node) or 0),
            )
        )
    return sorted(devices, key=lambda d: (d.device_class, d.name, d.node_id))


def duplicate_names(devices: list[Device]) -> None:
    """Two nodes that claim one device name: one of them is not who it says (an uninvited
    agent, or a copied configuration); selecting either would mix up two devices' results."""
    seen: dict[str, list[int]] = {}
    for d in devices:
        seen.setdefault(d.name, []).append(d.node_id)
    clashes = {name: nodes for name, nodes in seen.items() if len(nodes) > 1}
    if clashes:
        detail = "; ".join(f"{name!r} by nodes {nodes}" for name, nodes in sorted(clashes.items()))
        raise DeviceSelectionError(
            f"two or more connected nodes claim one device name: {detail}. Stop the agent "
            "that should not be there (check the inventory), then run again"
        )


def reselect(devices: list[Device], selection: list[dict]) -> list[Participant]:
    """The participants of a resumed run: the same device names, client indexes and models
    as the checkpoint's selection (node ids differ once a device reconnects)."""
    duplicate_names(devices)
    by_name = {d.name: d for d in devices}
    missing = [s["device"] for s in selection if s["device"] not in by_name]
    if missing:
        connected = ", ".join(sorted(by_name)) or "none"
        raise DeviceSelectionError(
            f"cannot resume: device(s) {', '.join(missing)} of the checkpoint's selection are "
            f"not connected. Connected: {connected}"
        )
    return [Participant(by_name[s["device"]], int(s["client_index"]), s["arch"]) for s in selection]


def select(devices: list[Device], experiment: Experiment) -> list[Participant]:
    """Pick devices by class counts or by name, in a stable order; explain any shortfall."""
    duplicate_names(devices)
    wanted = experiment.devices
    chosen: list[Device] = []
    problems = []
    if wanted.names:
        by_name = {d.name: d for d in devices}
        for name in wanted.names:
            if name in by_name:
                chosen.append(by_name[name])
            else:
                problems.append(f"device {name!r} is not connected")
    else:
        for cls, count in wanted.classes.items():
            available = [d for d in devices if d.device_class == cls]
            if len(available) < count:
                problems.append(f"{cls}: {count} wanted, {len(available)} connected")
            chosen.extend(available[:count])
    if problems:
        connected = ", ".join(f"{d.name} ({d.device_class})" for d in devices) or "none"
        raise DeviceSelectionError(
            f"{experiment.source}: [devices] cannot be satisfied: {'; '.join(problems)}. "
            f"Connected: {connected}"
        )
    return [
        Participant(d, index, experiment.models.arch_for(d.device_class, index))
        for index, d in enumerate(chosen)
    ]
