"""Meter drivers, one module each; see ``docs/power.md`` for units and conventions.

* :mod:`~htfl.device.power.drivers.um` - RuiDeng UM24C/UM25C/UM34C USB meters (serial/Bluetooth)
* :mod:`~htfl.device.power.drivers.scpi` - SCPI power analysers, e.g. Yokogawa WT310 (serial)
* :mod:`~htfl.device.power.drivers.stream` - continuous-output sources pushing CSV lines (serial)
* :mod:`~htfl.device.power.drivers.ina3221` - Jetson on-board INA3221 monitors (sysfs)
* :mod:`~htfl.device.power.drivers.rapl` - Intel RAPL package energy (powercap sysfs; CPU only)
* :mod:`~htfl.device.power.drivers.termux` - Android battery via Termux:API or sysfs
* :mod:`~htfl.device.power.drivers.simulated` - a CPU-utilisation power model
"""
