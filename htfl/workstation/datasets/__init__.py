"""Dataset preparation on the workstation: upstream archives, their loaders, statistics."""
