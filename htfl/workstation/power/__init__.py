"""Power on the workstation: raw traces of a run, meters the workstation reads itself (the
hub), and the energy of each round priced from either (see docs/power.md)."""
