"""Power measurement: meters, resilient samplers, energy attribution and metrics.

* :mod:`htfl.power.meter` - :class:`PowerSample` and the :class:`Meter` base class
* :mod:`htfl.power.drivers` - UM24C/25C/34C, SCPI (WT310), continuous CSV streams, Jetson
  INA3221, Intel RAPL, Android/Termux and a simulated CPU-driven model
* :mod:`htfl.power.sampler` - one thread per stream with reconnect/backoff and gap records
* :mod:`htfl.power.energy` - trapezoid integration and per-interval attribution
* :mod:`htfl.power.exporter` - Prometheus collector (``htfl_power_watts`` and friends)
* :mod:`htfl.power.config` - ``htfl_meter`` inventory mappings -> :class:`MeterSpec` -> meter

See ``docs/power.md``.
"""

from htfl.power.meter import (
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
