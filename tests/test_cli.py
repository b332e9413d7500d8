"""The `htfl` command explains itself: help for every option, its default shown, one meter
syntax, no option accepted and then ignored, mistakes as one-line usage errors (exit 2)."""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from htfl import protocol
from htfl.cli import build_parser, main
from htfl.datasets.store import ShardIntegrityError
from htfl.device.power.config import MeterSpec
from tests.support.device_runtime import SETUP, call, msg, pin_task_identity

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    pin_task_identity(monkeypatch)


#: The user's path, then the tools around it: how `htfl --help` lists the commands.
ORDER = ("data", "deploy", "run", "fleet", "prometheus", "report", "agent", "power")


def walk(parser: argparse.ArgumentParser) -> Iterator[tuple[argparse.ArgumentParser, str]]:
    """Every parser of the tree, with the help its parent lists it under."""
    yield parser, ""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._get_subactions()}
            for name, sub in action.choices.items():
                for inner, inner_listed in walk(sub):
                    yield inner, inner_listed if inner is not sub else listed.get(name) or ""


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_option_and_positional_has_help_and_shows_its_default() -> None:
    problems = []
    parsers = list(walk(build_parser()))
    assert len(parsers) > 15  # the whole tree: groups and their actions included
    for parser, listed in parsers:
        if parser.prog != "htfl" and not listed:
            problems.append(f"{parser.prog}: no help in its parent's list of commands")
        rendered = "".join(parser.format_help().split())  # wrapping may split at hyphens
        one_required = {  # one of these must be given: no default to state
            a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions
        }
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"{name}: no help text")
                continue
            text = flat(parser._get_formatter()._expand_help(action))
            assert "".join(text.split()) in rendered, name
            default = action.default
            takes_value = action.nargs != 0
            if not action.option_strings or not takes_value or action.required:
                continue  # positionals and switches: nothing to show
            if action in one_required:
                continue
            if default not in (None, [], argparse.SUPPRESS):
                if f"default: {default}" not in text:
                    problems.append(f"{name}: default {default!r} not shown ({text!r})")
            elif "default:" not in text:
                problems.append(f"{name}: says nothing about what happens when not given")
    assert not problems, "\n".join(problems)


def test_help_lists_the_users_path_in_order() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "htfl", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    guide = [text.index(f"htfl {c}") for c in ("data prepare", "deploy provision", "run ")]
    guide += [text.index(f"htfl {c}") for c in ("prometheus", "agent", "power probe")]
    assert guide == sorted(guide), text
    listing = text[text.index("\ncommands:") :]
    listed = re.findall(r"^ {2}(\S+)\s", listing, flags=re.MULTILINE)
    assert tuple(listed[: len(ORDER)]) == ORDER, listing


def test_a_device_install_lists_the_device_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    import htfl.cli

    monkeypatch.setattr(htfl.cli, "workstation_installed", lambda: False)
    text = build_parser().format_help()
    listing = text[text.index("\ncommands:") :]
    assert re.findall(r"^ {2}(\S+)\s", listing, flags=re.MULTILINE)[:4] == [
        "agent",
        "power",
        "calibrate",
        "-h,",
    ]
    assert "htfl data" not in text and "htfl run" not in text


def test_help_imports_no_heavy_library() -> None:
    """`htfl --help` stays quick: command modules import torch, Flower, numpy, pydantic and
    rich only when a command runs (torch alone takes seconds on a board)."""
    code = (
        "import sys; from htfl.cli import build_parser; build_parser().format_help(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'flwr', 'numpy', 'pydantic', 'rich', 'yaml', 'serial'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("group", ["data", "deploy", "prometheus", "power"])
def test_a_group_without_its_action_lists_the_actions(
    group: str, capsys: pytest.CaptureFixture
) -> None:
    assert main([group]) == 2
    err = capsys.readouterr().err
    assert f"usage: htfl {group} [-h] ACTION" in err and "actions:" in err


def test_deploy_takes_wheel_only_where_it_installs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["deploy", "stop", "--wheel", "x.whl"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "htfl deploy stop: error: unrecognized arguments: --wheel x.whl" in err
    parser = build_parser()
    for action in ("provision", "update"):
        assert parser.parse_args(["deploy", action, "--wheel", "x.whl"]).wheel == Path("x.whl")
    for action in ("start", "stop", "status", "logs", "facts"):
        with pytest.raises(SystemExit):
            parser.parse_args(["deploy", action, "--wheel", "x.whl"])
    with pytest.raises(SystemExit):  # --datasets is provision's, --dest is logs'
        parser.parse_args(["deploy", "update", "--datasets", "d"])
    assert parser.parse_args(["deploy", "logs", "--dest", "d"]).dest == Path("d")


AGENT = ["agent", "--superlink", "127.0.0.1:1", "--device-class", "jetson-nano"]
SPECS = {
    "json": '{"driver": "um25c", "port": "/dev/rfcomm0", "baudrate": 9600, "timeout": 0.5}',
    "key=value": "driver=um25c, port=/dev/rfcomm0,baudrate=9600,timeout=0.5",
}


@pytest.mark.parametrize("spelling", sorted(SPECS))
def test_meter_text_reads_the_same_in_agent_and_power_probe(spelling: str) -> None:
    parser = build_parser()
    agent = parser.parse_args([*AGENT, "--meter", SPECS[spelling]]).meter
    probe = parser.parse_args(["power", "probe", "--meter", SPECS[spelling]]).meter
    expected = {"driver": "um25c", "port": "/dev/rfcomm0", "baudrate": 9600, "timeout": 0.5}
    assert agent == expected and probe == [expected]
    spec = MeterSpec.from_mapping(agent, "nano-01")
    assert (spec.driver, spec.options["port"], spec.options["baudrate"]) == (
        "um25c",
        "/dev/rfcomm0",
        9600,
    )


@pytest.mark.parametrize("command", [AGENT, ["power", "probe", "--no-serial", "--seconds", "0"]])
def test_a_bad_meter_spec_is_a_usage_error_naming_the_key(
    command: list[str], capsys: pytest.CaptureFixture
) -> None:
    # A valid spelling with a missing key: checked before the agent or probe starts anything.
    assert main([*command, "--meter", "driver=um25c,baudrate=9600"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"htfl (agent|power probe): error: --meter: device '[^']+': htfl_meter\.port: missing.*\n",
        err,
    ), err
    # Not a spec at all: argparse's usage error, quoting the part it could not read.
    with pytest.raises(SystemExit) as stop:
        main([*command, "--meter", "driver=um25c,rfcomm0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --meter:" in err and "'rfcomm0' is not KEY=VALUE" in err
    assert "Traceback" not in err


def test_a_partition_option_the_partition_does_not_use_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "prepared"
    argv = ["data", "prepare", "digits", "--partition", "iid", "--num-clients", "2"]
    assert main([*argv, "--alpha", "0.5", "--out", str(out)]) == 2
    err = flat(capsys.readouterr().err)
    assert "--alpha does not apply to --partition iid (it uses: --balanced, --min-samples)" in err
    assert not out.exists()


def test_agent_data_dir_is_an_explicit_option() -> None:
    args = build_parser().parse_args([*AGENT, "--data-dir", "shards-here"])
    assert args.data_dir == Path("shards-here")
    assert build_parser().parse_args(AGENT).data_dir is None  # then $HTFL_DATA_DIR, else ~


def test_the_agents_data_dir_reaches_the_shard_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards synced into the agent's --data-dir are found there, whatever $HTFL_DATA_DIR says
    (the agent passes the directory; nothing goes through the environment)."""
    from htfl.datasets import PartitionSpec, write_shards
    from htfl.datasets.delivery import cache_dir
    from htfl.device.client_runtime import ClientRuntime
    from htfl.workstation.datasets.catalog import make_loader

    monkeypatch.setenv("HTFL_DATA_DIR", str(tmp_path / "elsewhere"))
    prepared = write_shards(
        make_loader("digits").load(), PartitionSpec("iid"), tmp_path / "prepared", num_clients=3
    )
    device_dir = tmp_path / "device-data"
    shutil.copytree(prepared.directory, cache_dir(prepared.content_sha256, device_dir))
    setup = {
        **SETUP,
        "shards": {"delivery": "ansible", "content_sha256": prepared.content_sha256},
        "client_index": 1,
    }
    runtime = ClientRuntime("jetson-nano", "nano-01", torch_threads=1, data_dir=device_dir)
    reply = call(runtime, msg(protocol.SETUP, setup))
    assert protocol.read_metrics(reply)["num_train"] == prepared.client(1).num_train
    assert not (tmp_path / "elsewhere").exists()
    # Without the directory the runtime looks where $HTFL_DATA_DIR says, and finds nothing.
    with pytest.raises(ShardIntegrityError, match="elsewhere"):
        call(ClientRuntime("jetson-nano", "nano-01"), msg(protocol.SETUP, setup))


def test_startup_benchmark_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli_startup", "--repeat", "1", "--command=--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split() == ["command", "median", "ms", "min", "ms", "max", "ms", "cpu", "ms"]
    assert re.fullmatch(r"htfl --help(\s+\d+){4}", lines[2]), out.stdout


def test_an_agent_whose_metrics_port_is_taken_says_so_and_exits_2() -> None:
    """Two agents on one host with the same --metrics-port: the second names the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "htfl", "agent", "--device-class", "jetson-nano"]
            + ["--superlink", "127.0.0.1:1", "--metrics-host", "127.0.0.1"]
            + ["--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"--metrics-port {port}: 127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr
