"""The workstation-side `htfl` subcommands: `data`, `deploy`, `run`, `prometheus`."""
