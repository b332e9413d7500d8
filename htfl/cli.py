"""The `htfl` command: one entry point, one module per subcommand group.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func``
to a callable taking the parsed namespace and returning an exit code. Device commands are in
every install; workstation commands only where :mod:`htfl.workstation` is installed (the device
wheel leaves it out). A command module that is installed but fails to import is an error, never
a silently missing command.

One style throughout: ``htfl GROUP ACTION`` where a group has actions (``htfl data prepare``,
``htfl deploy stop``), a plain ``htfl COMMAND`` otherwise (``htfl run``, ``htfl agent``); a group
given without its action prints the group's help and exits 2. Every parser is a :class:`Parser`,
whose help shows each option's default; a user's mistake raises :class:`UsageError` (or
argparse's own error) and ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Workstation commands, in the order a user meets them: prepare data, provision, run, watch.
WORKSTATION_COMMANDS: tuple[str, ...] = (
    "htfl.workstation.cli.data",
    "htfl.workstation.cli.deploy",
    "htfl.workstation.cli.run",
    "htfl.workstation.cli.fleet",
    "htfl.workstation.cli.prometheus",
    "htfl.workstation.cli.report",
)
#: Device commands (also on the workstation: the local fleet runs agents; meters are probed).
DEVICE_COMMANDS: tuple[str, ...] = (
    "htfl.device.cli.agent",
    "htfl.device.cli.power",
    "htfl.device.cli.calibrate",
)

WORKSTATION_GUIDE = """\
Heterogeneous federated learning on edge devices, with Flower.

A researcher's path:
  1. htfl data prepare DATASET --out DIR   cut a dataset into one shard per client
  2. htfl deploy provision                 install the agent on the inventory's devices
     htfl deploy start                     start the agents (htfl deploy status: how they are)
  3. htfl run EXPERIMENT.toml              run an experiment; results in results/<id>/
     (no devices yet? htfl run EXPERIMENT.toml --local-fleet 4)
     (a simulated lab: htfl fleet up, then htfl run against it)

Around it:
  htfl prometheus targets                  let Prometheus watch the devices and the run
  htfl report results/<id>                 draw accuracy, energy, time and bytes (HTML)
  htfl agent                               what runs on each device (htfl deploy starts it)
  htfl power probe                         which power meters this machine has

`htfl COMMAND --help` explains each command, `htfl GROUP ACTION --help` each action."""

DEVICE_GUIDE = """\
Heterogeneous federated learning on edge devices, with Flower: this device's commands.

  htfl agent                               join the SuperLink and serve experiments
  htfl power probe                         which power meters this machine has

The workstation's `htfl deploy` installs and starts the agent. `htfl COMMAND --help` explains
each command."""


class UsageError(Exception):
    """A mistake in what the user typed or named; :func:`main` prints it, one line per problem
    (``htfl agent: error: ...``), and exits 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default; wraps description paragraphs, keeps indented lines as typed.

    ``(default: X)`` is added unless the help already says ``default:`` itself (which it must
    for a default of ``None`` that means something, e.g. "default: the hostname").
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if has_default_to_show(action) and "default:" not in text and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # the list, without a COMMAND line
            return "".join(self._format_action(a) for a in action._get_subactions())
        return super()._format_action(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in textwrap.dedent(text).split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines[1:]) or paragraph[:1].isspace():
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)


def has_default_to_show(action: argparse.Action) -> bool:
    """A default worth printing: not absent (None), not an off switch, not an empty list."""
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return False
    if action.nargs == 0 or action.default is argparse.SUPPRESS:
        return False  # store_true/count and the like: off unless given
    if action.default is None or action.default == [] or action.required:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


class Parser(argparse.ArgumentParser):
    """htfl's parser: :class:`HelpFormatter` here and in every subcommand's parser, and an
    unknown option reported by the (sub)command that refused it, with that command's usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # argparse would report them at the top, as `htfl: error: ...`
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        if not hasattr(parsed, "command_path"):  # the innermost command parses first
            parsed.command_path = self.prog
        return parsed, extras

    def add_commands(self, title: str, dest: str, metavar: str) -> argparse._SubParsersAction:
        """The subcommands, listed first under ``title`` (before the options)."""
        self._positionals.title = title
        return self.add_subparsers(dest=dest, metavar=metavar)


class LazyConsole:
    """A rich ``Console`` made on first use, so that `htfl --help` does not import rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def get(self) -> Console:
        """The console itself (for rich APIs that take one)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in range, else a usage error naming the bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {value}")
        return value

    return parse


def add_group(
    subparsers: argparse._SubParsersAction, name: str, help: str, description: str | None = None
) -> argparse._SubParsersAction:
    """A command group (``htfl NAME ACTION``); returns the subparsers to add its actions to.

    Without an action, the group prints its help (the list of actions) and exits 2.
    """
    parser = subparsers.add_parser(name, help=help, description=description or help)
    actions = parser.add_commands("actions", f"{name}_action", "ACTION")

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=usage)
    return actions


def workstation_installed() -> bool:
    return importlib.util.find_spec("htfl.workstation") is not None


def command_modules() -> tuple[str, ...]:
    if workstation_installed():
        return WORKSTATION_COMMANDS + DEVICE_COMMANDS
    return DEVICE_COMMANDS


def build_parser() -> Parser:
    workstation = workstation_installed()
    parser = Parser(
        prog="htfl",
        description=WORKSTATION_GUIDE if workstation else DEVICE_GUIDE,
    )
    subparsers = parser.add_commands("commands", "command", "COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except UsageError as err:
        for line in str(err).splitlines() or [""]:  # one line per problem
            print(f"{args.command_path}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
