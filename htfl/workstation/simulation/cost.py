"""What a round would cost on a device of a class, modelled from its profile.

A virtual client trains on the simulating machine, so its measured seconds describe this host,
not the device. The rows of a simulated run carry modelled figures instead, from the device
class profile (:mod:`htfl.devices`) and what the message actually moved:

* train seconds = calibrated step seconds x steps; the step time is this host's measured step
  time divided by the class's ``relative_speed`` (the profile's speed relative to the
  reference core), so a class twice as fast trains in half the time;
* transfer seconds = message bytes (as a deployment would move them, ``clientapp.wire_bytes``)
  / link bandwidth + one-way latency, per direction;
* energy = busy watts x compute seconds + idle watts x transfer seconds.

Deadlines and stragglers follow the modelled round time (download + train + upload), so a
deadline experiment can be tried before the lab. Every modelled row says so (``modelled``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from htfl.devices import SimulationProfile, device_class


def link_seconds(profile: SimulationProfile, payload_bytes: int) -> float:
    """One transfer of ``payload_bytes`` over the class's link: serialisation on the wire plus
    its one-way latency (loss and jitter are left out: a mean, not a draw)."""
    bits_per_second = profile.link_mbit_s * 1e6
    return payload_bytes * 8 / bits_per_second + profile.link_latency_ms / 1000


def train_steps(num_train: int, batch_size: int, local_epochs: int) -> int:
    """Optimizer steps of one local training: every epoch visits every batch."""
    return local_epochs * max(1, math.ceil(num_train / batch_size))


@dataclass(frozen=True)
class RoundCost:
    """The modelled figures of one client in one message (seconds, joules)."""

    download_seconds: float
    compute_seconds: float
    upload_seconds: float
    energy_joules: float

    @property
    def round_seconds(self) -> float:
        return self.download_seconds + self.compute_seconds + self.upload_seconds


def model_cost(cls: str, host_compute_seconds: float, bytes_down: int, bytes_up: int) -> RoundCost:
    """The cost on a device of class ``cls`` of compute that took ``host_compute_seconds`` here,
    and of moving ``bytes_down`` to it and ``bytes_up`` back."""
    profile = device_class(cls).profile
    compute = host_compute_seconds / profile.relative_speed
    down = link_seconds(profile, bytes_down)
    up = link_seconds(profile, bytes_up)
    energy = profile.busy_watts * compute + profile.idle_watts * (down + up)
    return RoundCost(down, compute, up, energy)
