"""Smart plugs read over their local HTTP API: Shelly (Gen2+ RPC) and Tasmota.

A plug on a board's power supply measures the whole board *and* its supply's losses (scope
``wall``), costs the board nothing, and covers boards without a meter port (a LattePanda on a
12 V barrel jack). These two were picked because they are the common plugs with a documented,
local, cloud-free HTTP API that reports watts, volts and amps: Shelly's Gen2+ devices (Plus Plug
S, Plus 1PM, Pro 4PM...) and any plug flashed with Tasmota (Sonoff, Athom, Nous, Gosund...).

* Shelly Gen2+: ``GET /rpc/Switch.GetStatus?id=<channel>`` answers a JSON object with
  ``apower`` (W), ``voltage`` (V) and ``current`` (A) (Shelly API docs, "Switch" component,
  https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch).
* Tasmota: ``GET /cm?cmnd=Status%2010`` answers ``{"StatusSNS": {"ENERGY": {"Power": W,
  "Voltage": V, "Current": A, ...}}}`` (Tasmota docs, "Commands" - Status 10, and "Energy
  monitoring"); a multi-channel plug gives lists, of which ``channel`` picks one.

Plugs update their readings about once a second; the default ``interval`` is 1 s. A sample is
timestamped when the request is sent (the reading is at most a second old on a plug).
HTTP errors and refused connections are link losses (``OSError``: the sampler retries with
backoff), a reply without the fields is a :class:`~htfl.device.power.meter.FrameError`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

from htfl.device.power.meter import BadFrame, Clock, Meter, MeterDisconnected, PowerSample


class PlugMeter(Meter):
    """Common HTTP polling; subclasses say which path and how to read the reply."""

    path: ClassVar[str] = ""

    def __init__(
        self,
        url: str,
        *,
        channel: int = 0,
        timeout: float = 2.0,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(device=device, source=source, clock=clock)
        self.url = url.rstrip("/")
        self.channel = channel
        self.timeout = timeout

    def open(self) -> None:
        self._is_open = True

    def close(self) -> None:
        self._is_open = False

    def read(self) -> PowerSample:
        t = self._clock()
        url = self.url + self.path.format(channel=self.channel)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as res:
                body = res.read(65536)
        except TimeoutError as err:
            self.timeouts += 1
            raise MeterDisconnected(f"{url}: no reply within {self.timeout} s") from err
        except urllib.error.URLError as err:  # refused, unreachable, HTTP error status
            raise MeterDisconnected(f"{url}: {err.reason}") from err
        try:
            watts, volts, amps = self._parse(json.loads(body))
        except (ValueError, KeyError, TypeError, IndexError) as err:
            self.frame_errors += 1
            self.bad_frames += 1
            raise BadFrame(f"{url}: unexpected reply ({err})") from None
        return PowerSample(t, watts, volts, amps, self.source)

    def _parse(self, doc: Any) -> tuple[float, float | None, float | None]:
        raise NotImplementedError


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


class ShellyMeter(PlugMeter):
    driver = "shelly"
    path = "/rpc/Switch.GetStatus?id={channel}"

    def _parse(self, doc: Any) -> tuple[float, float | None, float | None]:
        return (
            _number(doc["apower"]),
            _number(doc["voltage"]) if "voltage" in doc else None,
            _number(doc["current"]) if "current" in doc else None,
        )


class TasmotaMeter(PlugMeter):
    driver = "tasmota"
    path = "/cm?cmnd=Status%2010"

    def _pick(self, value: Any) -> float:
        return _number(value[self.channel] if isinstance(value, list) else value)

    def _parse(self, doc: Any) -> tuple[float, float | None, float | None]:
        energy = doc["StatusSNS"]["ENERGY"]
        return (
            self._pick(energy["Power"]),
            self._pick(energy["Voltage"]) if "Voltage" in energy else None,
            self._pick(energy["Current"]) if "Current" in energy else None,
        )
