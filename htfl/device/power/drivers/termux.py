"""Android phones under Termux: battery voltage x current.

Two sources:

* ``mode="api"`` runs ``termux-battery-status`` (package ``termux-api`` plus the Termux:API
  app) and parses its JSON. ``current`` is ``BatteryManager.BATTERY_PROPERTY_CURRENT_NOW``:
  microamps on most phones, but some vendors report milliamps. ``voltage`` (millivolts) is
  only printed by recent Termux:API versions; when it is missing the driver falls back to
  ``/sys/class/power_supply/<supply>/voltage_now`` and then to ``nominal_volts``. One call
  takes 0.2-1 s (it goes through an Android broadcast), so sample at 1 Hz or slower.
* ``mode="sysfs"`` reads ``/sys/class/power_supply/<supply>/{voltage_now,current_now,status}``
  (microvolts, microamps). Many phones restrict these files to the system user; rooted phones
  and some vendors allow reading them.

Sign conventions vary. Android documents positive ``current`` as charge *entering* the battery,
and the Linux power-supply ABI uses negative values for discharging, but many vendor kernels
report discharge as positive. ``current_sign``:

* ``"auto"`` (default): the magnitude is taken, and the direction comes from ``status``:
  discharging -> positive watts (consumption); charging -> negative watts (into the battery).
* ``-1``: the source follows the Android/Linux convention (negative = discharging).
* ``+1``: the source reports discharge as positive.

``watts = volts * amps`` where ``amps`` is positive when the battery supplies the phone.
While ``status`` is Charging (or Full with a charger plugged in) samples carry
``charging=True``: the battery is not the phone's only supply, so the value is *not* the
phone's consumption, and :func:`htfl.device.power.energy.attribute` leaves such samples out.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from htfl.device.power.meter import Clock, FrameError, Meter, MeterConfigError, PowerSample

Runner = Callable[[], str]


def _status_is_charging(status: str | None, plugged: str | None = None) -> bool:
    s = (status or "").strip().lower().replace("_", " ")
    if s == "charging":
        return True
    if s == "full":
        p = (plugged or "").strip().lower()
        return p not in ("", "unplugged", "none", "0")
    return False


class TermuxMeter(Meter):
    """Battery power of an Android phone (see the module docstring for conventions)."""

    driver = "termux"

    def __init__(
        self,
        *,
        mode: str = "api",
        current_sign: str | int = "auto",
        current_scale: float = 1e-6,
        voltage_scale: float | None = None,
        nominal_volts: float | None = None,
        supply: str = "battery",
        root: str = "/",
        command: Sequence[str] | str = ("termux-battery-status",),
        command_timeout: float = 10.0,
        runner: Runner | None = None,
        device: str = "",
        source: str | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(device=device, source=source, clock=clock)
        if mode not in ("api", "sysfs"):
            raise MeterConfigError(f"termux mode must be 'api' or 'sysfs', got {mode!r}")
        if current_sign not in ("auto", 1, -1):
            raise MeterConfigError(f"current_sign must be 'auto', 1 or -1, got {current_sign!r}")
        self.mode = mode
        self.current_sign = current_sign
        self.current_scale = float(current_scale)
        # api: millivolts; sysfs: microvolts
        self.voltage_scale = (
            float(voltage_scale) if voltage_scale else (1e-3 if mode == "api" else 1e-6)
        )
        self.nominal_volts = nominal_volts
        self.supply_dir = os.path.join(root, "sys/class/power_supply", supply)
        self.command = [command] if isinstance(command, str) else list(command)
        self.command_timeout = command_timeout
        self._runner = runner or self._run_command
        self.last_status: str | None = None

    # -- sources ----------------------------------------------------------------------------
    def _run_command(self) -> str:
        proc = subprocess.run(
            self.command,
            capture_output=True,
            text=True,
            timeout=self.command_timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise FrameError(
                f"{' '.join(self.command)} exited {proc.returncode}: {proc.stderr.strip()[:200]}"
            )
        return proc.stdout

    def _sysfs(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.supply_dir, name)) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    def _sysfs_volts(self) -> float | None:
        raw = self._sysfs("voltage_now")
        return None if raw is None else int(raw) * 1e-6

    def open(self) -> None:
        if self.mode == "api":
            self._runner()  # fails early (FileNotFoundError) if termux-api is not installed
        else:
            for name in ("current_now", "status"):
                path = os.path.join(self.supply_dir, name)
                if not os.path.exists(path):
                    raise FileNotFoundError(path)
        self._is_open = True

    def close(self) -> None:
        self._is_open = False

    # -- conversion -------------------------------------------------------------------------
    def _sample(
        self, t: float, raw_current: float, volts: float | None, status: str | None, plugged=None
    ) -> PowerSample:
        charging = _status_is_charging(status, plugged)
        amps = raw_current * self.current_scale
        if self.current_sign == "auto":
            amps = -abs(amps) if charging else abs(amps)
        else:
            # Convert to "positive = battery supplies the phone".
            amps = amps if self.current_sign == 1 else -amps
        if volts is None:
            volts = self.nominal_volts
        if volts is None:
            raise FrameError("battery voltage unavailable; configure nominal_volts")
        return PowerSample(t, volts * amps, volts, amps, self.source, charging)

    def parse_status(self, text: str, t: float | None = None) -> PowerSample:
        """Convert one ``termux-battery-status`` JSON document to a sample."""
        try:
            doc: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as err:
            raise FrameError(f"termux-battery-status printed invalid JSON: {err}") from err
        if not isinstance(doc, dict) or doc.get("current") is None:
            raise FrameError("termux-battery-status JSON has no 'current'")
        volts: float | None = None
        if doc.get("voltage") is not None:
            volts = float(doc["voltage"]) * self.voltage_scale
        else:
            try:
                volts = self._sysfs_volts()
            except (OSError, ValueError):
                volts = None
        self.last_status = doc.get("status")
        return self._sample(
            self._clock() if t is None else t,
            float(doc["current"]),
            volts,
            doc.get("status"),
            doc.get("plugged"),
        )

    def read(self) -> PowerSample:
        if not self._is_open:
            raise FileNotFoundError("termux meter is not open")
        t = self._clock()
        if self.mode == "api":
            try:
                text = self._runner()
            except subprocess.TimeoutExpired as err:
                self.frame_errors += 1
                raise FrameError(f"{self.command[0]} timed out") from err
            except FrameError:
                self.frame_errors += 1
                raise
            try:
                return self.parse_status(text, t)
            except FrameError:
                self.frame_errors += 1
                raise
        current = self._sysfs("current_now")
        if current is None:
            raise FileNotFoundError(os.path.join(self.supply_dir, "current_now"))
        status = self._sysfs("status")
        try:
            raw_volts = self._sysfs("voltage_now")
            volts = None if raw_volts is None else int(raw_volts) * self.voltage_scale
            self.last_status = status
            return self._sample(t, float(int(current)), volts, status)
        except (ValueError, FrameError) as err:
            self.frame_errors += 1
            raise FrameError(f"{self.supply_dir}: {err}") from err
