"""The `htfl` command: one entry point, one module per subcommand group.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func``
to a callable taking the parsed namespace and returning an exit code. Device commands are in
every install; workstation commands only where :mod:`htfl.workstation` is installed (the device
wheel leaves it out). A command module that is installed but fails to import is an error, never
a silently missing command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: Workstation commands, in the order a user meets them: prepare data, provision, run, watch.
WORKSTATION_COMMANDS: tuple[str, ...] = (
    "htfl.workstation.cli.data",
    "htfl.workstation.cli.deploy",
    "htfl.workstation.cli.run",
    "htfl.workstation.cli.prometheus",
)
#: Device commands (also on the workstation: the local fleet runs agents; meters are probed).
DEVICE_COMMANDS: tuple[str, ...] = ("htfl.device.cli.agent", "htfl.device.cli.power")


def workstation_installed() -> bool:
    return importlib.util.find_spec("htfl.workstation") is not None


def command_modules() -> tuple[str, ...]:
    if workstation_installed():
        return WORKSTATION_COMMANDS + DEVICE_COMMANDS
    return DEVICE_COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="htfl",
        description="Heterogeneous federated learning testbed. A researcher's path: "
        "`htfl data prepare`, `htfl deploy provision`, `htfl run EXPERIMENT.toml`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
