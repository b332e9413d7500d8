"""The service templates give every manager the same agent command line, however odd its values.

systemd and termux-services cannot run here, so their files are rendered (ansible-playbook on
localhost, tests/deploy/render_service.yml) and read back the way systemd and sh would.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from htfl.workstation.deploy.wheel import build_wheel
from tests.deploy.conftest import render_service, require, venv_tool

TRICKY_METER = {"driver": "um25c", "port": "/dev/rfcomm0", "note": "100% $HOME \"q\" 'x' \\n"}


def systemd_exec_argv(line: str) -> list[str]:
    """Split an ExecStart= value as systemd does (quotes, C escapes, then %% and $$)."""
    args, cur, i, quote, have = [], [], 0, None, False
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and i + 1 < len(line):
                cur.append({"n": "\n", "t": "\t"}.get(line[i + 1], line[i + 1]))
                i += 2
                continue
            if c == quote:
                quote = None
            else:
                cur.append(c)
        elif c in "\"'":
            quote, have = c, True
        elif c.isspace():
            if cur or have:
                args.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
        i += 1
    if cur or have:
        args.append("".join(cur))
    return [a.replace("%%", "%").replace("$$", "$") for a in args]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require([] if venv_tool("ansible-playbook").exists() else ["ansible-core in this venv"])
    out = tmp_path_factory.mktemp("rendered")
    wheel = build_wheel(out / "wheel")
    extra = {
        "out": str(out),
        "htfl_wheel_path": str(wheel.path),
        "htfl_device_class": "orange-pi-5b",
        "htfl_superlink": "10.0.0.100:8000",
        "ansible_host": "10.0.0.21",  # the device's address in the inventory
        "htfl_meter": TRICKY_METER,
        "htfl_service_manager": "systemd",
        "htfl_agent_extra_args": ["--poll-interval", "0.05"],
    }
    render_service(extra)
    return out


def test_the_agent_argv_carries_the_inventory(rendered: Path) -> None:
    argv = json.loads((rendered / "argv.json").read_text())
    assert argv[1:8] == [
        "agent",
        "--superlink",
        "10.0.0.100:8000",
        "--device-class",
        "orange-pi-5b",
        "--name",
        "localhost",
    ]
    assert argv[-2:] == ["--poll-interval", "0.05"]
    # /metrics served on the inventory's address (where Prometheus is pointed), nowhere else
    assert argv[argv.index("--metrics-host") + 1] == "10.0.0.21"
    if "--meter" in argv:  # only when the wheel's agent has the option
        assert json.loads(argv[argv.index("--meter") + 1]) == TRICKY_METER


def test_systemd_reads_back_the_same_argv(rendered: Path) -> None:
    argv = json.loads((rendered / "argv.json").read_text())
    unit = (rendered / "htfl-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert systemd_exec_argv(exec_start.removeprefix("ExecStart=")) == argv
    assert "Restart=on-failure" in unit and "StandardOutput=journal" in unit
    assert "User=htfl" in unit


@pytest.mark.parametrize("name", ["htfl-supervise.sh", "termux-run.sh"])
def test_sh_reads_back_the_same_argv(rendered: Path, name: str) -> None:
    argv = json.loads((rendered / "argv.json").read_text())
    script = (rendered / name).read_text()
    line = next(x for x in script.splitlines() if argv[0] in x and " agent " in x)
    command = line.strip().removeprefix("exec ").split(" >> ")[0]
    # Let sh split the line, with the agent replaced by a program that prints its arguments.
    probe = command.replace(argv[0], "printf '%s\\0'", 1)
    out = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\0")[:-1] == argv[1:]


def test_every_shell_template_is_valid_sh(rendered: Path) -> None:
    for name in (
        "htfl-agentctl.sh",
        "htfl-supervise.sh",
        "termux-run.sh",
        "termux-log-run.sh",
        "termux-boot.sh",
    ):
        check = subprocess.run(["sh", "-n", str(rendered / name)], capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)
