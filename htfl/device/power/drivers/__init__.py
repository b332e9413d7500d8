"""Meter drivers, one module each, and :data:`DRIVERS`, the registry that names them.

* :mod:`~htfl.device.power.drivers.um` - RuiDeng UM24C/UM25C/UM34C USB meters (serial/Bluetooth)
* :mod:`~htfl.device.power.drivers.scpi` - SCPI power analysers, e.g. Yokogawa WT310 (serial)
* :mod:`~htfl.device.power.drivers.stream` - continuous-output sources pushing CSV lines (serial)
* :mod:`~htfl.device.power.drivers.ina3221` - Jetson on-board INA3221 monitors (sysfs)
* :mod:`~htfl.device.power.drivers.rapl` - Intel RAPL package energy (powercap sysfs; CPU only)
* :mod:`~htfl.device.power.drivers.termux` - Android battery via Termux:API or sysfs
* :mod:`~htfl.device.power.drivers.simulated` - a CPU-utilisation power model
* :mod:`~htfl.device.power.drivers.plug` - smart plugs over their local HTTP API (Shelly, Tasmota)

The registry is the same idiom as the method registry (``htfl.algorithms.METHODS``): a driver
name (``htfl_meter.driver``) maps to its settings table (the keys it takes, see
:mod:`htfl.device.power.settings` and ``docs/power.md``) and its meter class. Meter classes are
imported when a meter is opened, so validating a spec loads no driver module.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from htfl.device.power import settings as s

#: ``(driver name, settings) -> keyword arguments of the meter class`` (when they differ).
Arguments = Callable[[str, Any], dict[str, Any]]


def _same_names(name: str, settings: Any) -> dict[str, Any]:
    out = dataclasses.asdict(settings)
    del out["interval"]  # the sampler's period, not the meter's
    return out


def _um(name: str, settings: Any) -> dict[str, Any]:
    return {**_same_names(name, settings), "model": name}


def _scpi(name: str, settings: Any) -> dict[str, Any]:
    out = _same_names(name, settings)
    out["element"], out["commands"] = out.pop("channel"), out.pop("instrument")
    return out


@dataclass(frozen=True)
class Driver:
    """A meter driver: the settings it validates and the class it opens."""

    name: str
    settings: type
    meter: str  # "module:Class", imported by :meth:`meter_class`
    serial: bool = False  # read over a serial link (one reader thread per port)
    arguments: Arguments = _same_names
    #: What the meter measures unless the inventory says otherwise (see ``SCOPES``).
    scope: str = "board"

    def meter_class(self) -> type:
        module, _, cls = self.meter.partition(":")
        return getattr(importlib.import_module(module), cls)


#: What a meter can measure, widest first: the wall socket (the supply's losses included), the
#: board at its DC input, the SoM/module rail, the CPU package only, a phone's battery.
SCOPES = ("wall", "board", "module", "cpu-package", "battery")

_P = "htfl.device.power.drivers."
DRIVERS: dict[str, Driver] = {
    d.name: d
    for d in (
        Driver("um24c", s.UMSettings, _P + "um:UMMeter", serial=True, arguments=_um),
        Driver("um25c", s.UMSettings, _P + "um:UMMeter", serial=True, arguments=_um),
        Driver("um34c", s.UMSettings, _P + "um:UMMeter", serial=True, arguments=_um),
        Driver("scpi", s.ScpiSettings, _P + "scpi:ScpiMeter", True, _scpi, scope="wall"),
        Driver("stream", s.StreamSettings, _P + "stream:StreamMeter", serial=True),
        Driver("ina3221", s.Ina3221Settings, _P + "ina3221:Ina3221Meter", scope="module"),
        Driver("rapl", s.RaplSettings, _P + "rapl:RaplMeter", scope="cpu-package"),
        Driver("termux", s.TermuxSettings, _P + "termux:TermuxMeter", scope="battery"),
        Driver("simulated", s.SimulatedSettings, _P + "simulated:SimulatedMeter"),
        Driver("shelly", s.PlugSettings, _P + "plug:ShellyMeter", scope="wall"),
        Driver("tasmota", s.PlugSettings, _P + "plug:TasmotaMeter", scope="wall"),
    )
}
