"""The simulated lab: device-class profiles turned into limits (CPU quota, memory cap, shaped
link) and the engines that run simulated devices under them (local processes, containers)."""
