"""Power measurement: meters, resilient samplers, energy attribution and metrics.

* :mod:`htfl.device.power.meter` - :class:`PowerSample` and the :class:`Meter` base class
* :mod:`htfl.device.power.drivers` - UM24C/25C/34C, SCPI (WT310), continuous CSV streams, Jetson
  INA3221, Intel RAPL, Android/Termux and a simulated CPU-driven model
* :mod:`htfl.device.power.sampler` - one thread per stream with reconnect/backoff and gap records
* :mod:`htfl.device.power.energy` - trapezoid integration and per-interval attribution
* :mod:`htfl.device.power.exporter` - Prometheus collector (``htfl_power_watts`` and friends)
* :mod:`htfl.device.power.config` - ``htfl_meter`` inventory mappings -> :class:`MeterSpec` -> meter

See ``docs/power.md``.
"""

from htfl.device.power.meter import (
    FrameError,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterError,
    PowerSample,
)

__all__ = [
    "FrameError",
    "Meter",
    "MeterConfigError",
    "MeterDisconnected",
    "MeterError",
    "PowerSample",
]
