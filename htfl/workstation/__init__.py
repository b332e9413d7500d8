"""What runs on the lab's workstation: the ServerApp and round loop, experiment files and run
submission, the local simulated fleet, deploy (ansible), Prometheus targets and dataset
preparation. Never installed on a device; it may use everything in :mod:`htfl`."""
