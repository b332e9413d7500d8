"""The `htfl` command: one entry point, one module per subcommand group.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules under ``htfl.cli`` that contribute subcommands, in help order.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "run",
    "agent",
    "power",
    "prometheus",
    "deploy",
    "data",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="htfl", description="Heterogeneous federated learning testbed"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"htfl.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"htfl.cli.{name}":
                continue  # subcommand group not built yet
            raise
        module.register(subparsers)
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
