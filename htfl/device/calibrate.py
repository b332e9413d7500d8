"""Measure this device and write its class's profile: ``htfl calibrate``.

A shipped profile (``htfl.devices``) is a set of published figures; a calibrated one is what
the board itself measured. On the device, ``htfl calibrate`` measures

* **train step time** per architecture and batch size (SGD steps of the model htfl builds,
  on random data of the experiment's input shape, after a warm-up), and from it the
  **throughput** in samples per second;
* **round trip to the SuperLink**: requests for ``/health`` on one kept-alive HTTP/1.1
  connection to its Fleet API (Flower 1.41 serves it over HTTP; the health check does no
  work, so the time is the network's plus the server's wake-up): one-way latency = median
  RTT / 2, jitter = a quarter of the spread between the 10th and 90th percentile of the RTT
  (half of it, one way), loss = requests never answered;
* **idle and busy power**, where a meter is given (``--meter``, as the inventory's
  ``htfl_meter``): the mean of its readings while the device rests, then while it trains.

It writes ``profiles/<class>.yml`` beside the inventory (``--inventory``), which
``htfl fleet up`` then uses instead of the shipped profile
(:func:`htfl.workstation.fleet.profiles.inventory_profiles`). ``relative_speed`` is relative
to the reference class (a LattePanda Delta 3): the geometric mean over the architectures and
batch sizes both measured of the reference's step time over this device's, taken from the
reference's calibrated file beside the inventory; until the reference is calibrated the
shipped relative speed is kept and the file says so. Link bandwidth is not measured (that
needs a peer that sinks data; the SuperLink does not): the shipped figure is kept unless
``--link-mbit`` gives one. Everything measured is kept in the file under ``calibration``.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REFERENCE_CLASS = "lattepanda-delta-3"
PROFILES_DIR = "profiles"  # beside the inventory (htfl.workstation.fleet.profiles reads it)

HEALTH_PATH = "/health"  # the SuperLink's HTTP API answers it without work


class CalibrationError(RuntimeError):
    """A measurement that cannot be made; the message says which and why."""


def superlink_rtts(address: str, count: int = 20, timeout: float = 5.0) -> tuple[list[float], int]:
    """Round trips (seconds) of ``count`` requests for ``/health`` on one kept-alive HTTP/1.1
    connection to the SuperLink at ``address`` (``host:port``, plain text: its Fleet API),
    after one unmeasured request; and how many got no answer within ``timeout``."""
    import http.client

    host, _, port = address.rpartition(":")
    try:
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        conn.connect()
    except (OSError, ValueError) as err:
        raise CalibrationError(f"cannot connect to the SuperLink at {address}: {err}") from None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ask() -> int:
        conn.request("GET", HEALTH_PATH, headers={"Connection": "keep-alive"})
        response = conn.getresponse()
        response.read()
        return response.status

    rtts: list[float] = []
    lost = 0
    try:
        if (status := ask()) != 200:
            raise CalibrationError(
                f"the SuperLink at {address} answered {HEALTH_PATH} with HTTP {status}: is it "
                "the SuperLink's Fleet API port?"
            )
        for _ in range(count):
            start = time.perf_counter()
            try:
                ask()
            except TimeoutError:
                lost += 1
                conn.close()  # a late answer would be read as the next one's
                continue
            rtts.append(time.perf_counter() - start)
    except (http.client.HTTPException, OSError) as err:
        raise CalibrationError(f"the SuperLink at {address}: {type(err).__name__}: {err}") from None
    finally:
        conn.close()
    if not rtts:
        raise CalibrationError(f"the SuperLink at {address} answered none of {count} requests")
    return rtts, lost


def link_figures(rtts: Sequence[float], lost: int) -> dict[str, float]:
    """One-way latency, jitter (ms) and loss from ping round trips."""
    ordered = sorted(rtts)
    q = statistics.quantiles(ordered, n=10) if len(ordered) >= 2 else [ordered[0]] * 9
    return {
        "link_latency_ms": round(statistics.median(ordered) / 2 * 1e3, 3),
        "link_jitter_ms": round((q[-1] - q[0]) / 4 * 1e3, 3),
        "link_loss": round(lost / (len(rtts) + lost), 4),
    }


def step_seconds(
    arch: str, batch: int, steps: int, input_shape: Sequence[int], threads: int
) -> float:
    """Median wall time of one SGD step of ``arch`` (htfl's build) on a random batch."""
    import torch

    from htfl.models.zoo import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(arch, tuple(input_shape), 10, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, *input_shape), torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mean_watts(meter: Any, seconds: float, interval: float) -> float:
    """The mean of a meter's readings over ``seconds``."""
    watts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        watts.append(meter.read().watts)
        time.sleep(interval)
    if not watts:
        raise CalibrationError("the meter gave no reading")
    return statistics.fmean(watts)


@dataclass
class Calibration:
    device_class: str
    superlink: str
    architectures: Sequence[str]
    batch_sizes: Sequence[int]
    steps: int = 10
    pings: int = 30
    input_shape: Sequence[int] = (3, 32, 32)
    threads: int = 1
    meter: dict[str, Any] | None = None
    power_seconds: float = 5.0
    link_mbit_s: float | None = None
    reference: dict[str, Any] | None = None  # the reference class's calibration, if any
    progress: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, text: str) -> None:
        print(f"htfl calibrate: {text}", file=self.progress, flush=True)

    def run(self) -> dict[str, Any]:
        """The class's profile as a profile file holds it (``calibration``: the evidence)."""
        from htfl.devices import device_class

        shipped = device_class(self.device_class).profile
        self.say(f"round trip to the SuperLink at {self.superlink} ({self.pings} requests)")
        rtts, lost = superlink_rtts(self.superlink, self.pings)
        link = link_figures(rtts, lost)
        self.say(
            f"  median RTT {statistics.median(rtts) * 1e3:.2f} ms, {lost} lost: "
            f"one-way {link['link_latency_ms']} ms, jitter {link['link_jitter_ms']} ms"
        )
        measured: dict[str, dict[str, float]] = {}
        for arch in self.architectures:
            for batch in self.batch_sizes:
                self.say(f"train step: {arch}, batch {batch} ({self.steps} steps)")
                seconds = step_seconds(arch, batch, self.steps, self.input_shape, self.threads)
                measured[f"{arch}/{batch}"] = {
                    "step_seconds": round(seconds, 6),
                    "samples_per_second": round(batch / seconds, 2),
                }
                self.say(f"  {seconds * 1e3:.1f} ms per step, {batch / seconds:.1f} samples/s")
        speed, speed_from = self.relative_speed(measured, shipped.relative_speed)
        idle, busy, power_from = shipped.idle_watts, shipped.busy_watts, "shipped (no --meter)"
        if self.meter is not None:
            idle, busy = self.power()
            power_from = f"measured with {self.meter.get('driver')}"
        import psutil

        memory_mb = psutil.virtual_memory().total // 2**20
        return {
            "relative_speed": speed,
            "memory_mb": int(memory_mb),
            "link_mbit_s": self.link_mbit_s or shipped.link_mbit_s,
            **link,
            "idle_watts": round(idle, 3),
            "busy_watts": round(busy, 3),
            "calibration": {
                "host": socket.gethostname(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "superlink": self.superlink,
                "input_shape": list(self.input_shape),
                "torch_threads": self.threads,
                "train": measured,
                "rtt_ms": [round(r * 1e3, 3) for r in rtts],
                "pings_lost": lost,
                "relative_speed": speed_from,
                "link_mbit_s": "given (--link-mbit)" if self.link_mbit_s else "shipped",
                "power": power_from,
                "memory_mb": "this device's physical memory",
            },
        }

    def relative_speed(
        self, measured: dict[str, dict[str, float]], shipped: float
    ) -> tuple[float, str]:
        if self.device_class == REFERENCE_CLASS:
            return 1.0, "the reference class"
        ref = (self.reference or {}).get("train", {})
        common = [k for k in measured if k in ref]
        if not common:
            return shipped, (
                f"shipped: no calibrated {REFERENCE_CLASS} with the same architectures and "
                "batch sizes beside the inventory to compare with"
            )
        ratios = [ref[k]["step_seconds"] / measured[k]["step_seconds"] for k in common]
        speed = math.exp(statistics.fmean(math.log(r) for r in ratios))
        return round(speed, 4), f"vs the calibrated {REFERENCE_CLASS} over {', '.join(common)}"

    def power(self) -> tuple[float, float]:
        import threading

        from htfl.device.power.config import MeterSpec, open_meter

        spec = MeterSpec.from_mapping(self.meter or {}, self.device_class)
        meter = open_meter(spec)
        try:
            interval = spec.interval
            self.say(f"idle power ({self.power_seconds:g} s)")
            idle = mean_watts(meter, self.power_seconds, interval)
            self.say(f"busy power ({self.power_seconds:g} s, training)")
            stop = threading.Event()

            def train() -> None:
                while not stop.is_set():
                    step_seconds(
                        self.architectures[0],
                        self.batch_sizes[-1],
                        1,
                        self.input_shape,
                        self.threads,
                    )

            worker = threading.Thread(target=train, daemon=True)
            worker.start()
            try:
                time.sleep(1.0)  # training under way before the readings count
                busy = mean_watts(meter, self.power_seconds, interval)
            finally:
                stop.set()
                worker.join(timeout=60)
        finally:
            meter.close()
        self.say(f"  idle {idle:.2f} W, busy {busy:.2f} W")
        return idle, busy


def profile_path(inventory: Path, device_class: str) -> Path:
    return inventory.parent / PROFILES_DIR / f"{device_class}.yml"


def write_profile(path: Path, profile: dict[str, Any], header: str) -> None:
    """Write the file whole or not at all (a temporary file renamed over it)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump(profile, sort_keys=False, width=100))
    tmp.replace(path)


def read_reference(inventory: Path) -> dict[str, Any] | None:
    """The reference class's calibration beside the inventory, when it has been calibrated."""
    import yaml

    path = profile_path(inventory, REFERENCE_CLASS)
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise CalibrationError(f"{path}: cannot read it: {err}") from None
    calibration = data.get("calibration") if isinstance(data, dict) else None
    return calibration if isinstance(calibration, dict) else None
