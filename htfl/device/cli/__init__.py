"""The device-side `htfl` subcommands: `agent` and `power`."""
