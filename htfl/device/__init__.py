"""What runs on a device: the agent (Flower SuperNode + long-lived trainer), its telemetry and
power meters, and the device-side commands. Installed alone by the device wheel, so nothing
here imports :mod:`htfl.workstation`."""
