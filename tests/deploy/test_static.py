"""deploy/ without devices: syntax, lint, agreement with htfl's tables, helpers, the wheel."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from htfl.devices import DEVICE_CLASSES
from htfl.workstation.deploy.paths import PLAYBOOKS, deploy_dir
from htfl.workstation.inventory import load_inventory
from tests.deploy.conftest import REPO, require, venv_tool

DEPLOY = deploy_dir()
ANSIBLE_ENV = {
    "ANSIBLE_CONFIG": str(DEPLOY / "ansible.cfg"),
    "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    "HOME": str(Path.home()),
    "ANSIBLE_NOCOLOR": "1",
}


def _need_ansible() -> None:
    require([] if venv_tool("ansible-playbook").exists() else ["ansible-core in this venv"])


def test_every_playbook_passes_the_syntax_check() -> None:
    _need_ansible()
    playbooks = [f"{name}.yml" for name in PLAYBOOKS] + ["select-devices.yml"]
    assert sorted(p.name for p in DEPLOY.glob("*.yml")) == sorted(playbooks)
    check = [venv_tool("ansible-playbook"), "--syntax-check", "-i", "inventory/testbed.yml"]
    out = subprocess.run(
        [*check, *playbooks],
        cwd=DEPLOY,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for playbook in playbooks:
        assert f"playbook: {playbook}" in out.stdout


def test_ansible_lint_is_clean() -> None:
    require([] if venv_tool("ansible-lint").exists() else ["ansible-lint (pip install '.[test]')"])
    out = subprocess.run(
        [venv_tool("ansible-lint"), "--nocolor"],
        cwd=DEPLOY,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "0 failure(s), 0 warning(s)" in out.stdout + out.stderr


def test_group_vars_agree_with_the_device_class_table() -> None:
    for name, cls in DEVICE_CLASSES.items():
        path = DEPLOY / "inventory" / "group_vars" / f"{name.replace('-', '_')}.yml"
        assert path.is_file(), f"no group_vars for class {name}"
        gv = yaml.safe_load(path.read_text())
        assert gv["htfl_install_recipe"] == cls.install_recipe, path
        assert gv["htfl_expected_arch"] == cls.cpu_arch, path
        # The memory check is a floor: never above what the class promises.
        assert 0 < gv["htfl_expected_memory_mb"] <= cls.profile.memory_mb, path
        assert gv["htfl_service_manager"] in ("systemd", "termux", "supervised"), path


@pytest.mark.parametrize("use_ansible", [False, True])
def test_testbed_inventory_is_the_reference_fleet(
    use_ansible: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_ansible:
        _need_ansible()
        monkeypatch.setenv("PATH", ANSIBLE_ENV["PATH"])  # ansible-inventory of this venv
    inv = load_inventory(DEPLOY / "inventory" / "testbed.yml", use_ansible=use_ansible)
    counts = Counter(h.device_class for h in inv.hosts)
    assert {k: v for k, v in counts.items() if k != "android-phone"} == {
        "jetson-agx-orin": 2,
        "jetson-orin-nano": 4,
        "jetson-xavier-nx": 2,
        "jetson-nano": 6,
        "lattepanda-delta-3": 6,
        "orange-pi-5b": 8,
    }
    assert counts["android-phone"] >= 1
    assert inv.superlink and ":" in inv.superlink
    assert len({h.address for h in inv.hosts}) == len(inv.hosts), "addresses must be unique"
    drivers = {"lattepanda-delta-3": "shelly", "orange-pi-5b": "um25c", "android-phone": "termux"}
    for host in inv.hosts:
        assert host.meter, f"{host.name} has no htfl_meter"
        expected = drivers.get(host.device_class, "ina3221")
        assert host.meter["driver"] == expected, host.name
        if expected == "ina3221":
            assert host.meter["model"] == host.device_class
    if use_ansible:  # group_vars resolve only through ansible-inventory
        phone = inv.of_class("android-phone")[0]
        assert phone.vars["ansible_port"] == 8022
        assert phone.vars["htfl_service_manager"] == "termux"
        assert inv.of_class("jetson-nano")[0].vars["htfl_python_source"] == "miniforge"


def test_reference_meters_are_valid_meter_specs() -> None:
    from htfl.device.power.config import MeterSpec

    inv = load_inventory(DEPLOY / "inventory" / "testbed.yml", use_ansible=False)
    scopes = {}
    for host in inv.hosts:
        spec = MeterSpec.from_mapping(host.meter, host.name)  # raises naming device and key
        scopes[host.device_class] = (spec.scope, spec.read_by)
    # the widest scope each class has a meter for (docs/power.md, "Scope")
    assert scopes["lattepanda-delta-3"] == ("wall", "workstation")
    assert scopes["orange-pi-5b"] == ("board", "device")
    assert scopes["jetson-orin-nano"] == ("module", "device")


def _load_helper():
    path = DEPLOY / "roles" / "agent" / "files" / "pip_install_without.py"
    spec = importlib.util.spec_from_file_location("pip_install_without", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_termux_install_leaves_uv_out_and_installs_flwr_without_deps() -> None:
    helper = _load_helper()
    from packaging.requirements import Requirement

    meta = {
        "htfl": ["flwr==1.41.0", "torch>=2.2", "numpy>=1.26", "rich>=13"],
        "flwr": ["numpy>=1.26", "uv>=0.12", "grpcio>=1.70", "typer>=0.13"],
    }
    installed = {"htfl": "0.1.0", "torch": "2.6.0", "numpy": "2.1.0"}

    def requires(name):
        return [Requirement(r) for r in meta.get(name, [])] if name in installed else None

    bare, ordinary = helper.plan(["htfl"], ["flwr"], ["uv"], requires, installed.get)
    assert bare == ["flwr==1.41.0"] and ordinary == ["rich>=13"]
    installed["flwr"] = "1.41.0"  # after `pip install --no-deps flwr==1.41.0`
    bare, ordinary = helper.plan(["htfl"], ["flwr"], ["uv"], requires, installed.get)
    assert bare == []
    assert sorted(ordinary) == ["grpcio>=1.70", "rich>=13", "typer>=0.13"]  # no uv, no torch


def test_the_device_wheel_is_reproducible(tmp_path: Path) -> None:
    from htfl.workstation.deploy.wheel import build_wheel

    # A snapshot of the sources, so that edits made meanwhile cannot change the second build.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "htfl", src / "htfl", ignore=shutil.ignore_patterns("__pycache__"))
    first = build_wheel(tmp_path / "a", root=src)
    second = build_wheel(tmp_path / "b", root=src)
    assert first.path.name.startswith("htfl_device-") and first.path.suffix == ".whl"
    assert first.distribution == "htfl-device"
    assert first.sha256 == second.sha256
    (src / "htfl" / "device" / "agent.py").write_text("# changed\n", encoding="utf-8")
    assert build_wheel(tmp_path / "c", root=src).sha256 != first.sha256


def test_limit_names_classes_by_their_groups() -> None:
    from htfl.workstation.cli.deploy import _limit

    inv = load_inventory(DEPLOY / "inventory" / "testbed.yml", use_ansible=False)
    assert _limit("jetson-nano,opi5b-01", inv) == "jetson_nano,opi5b-01"
    assert _limit("boards:!jetson", inv) == "boards:!jetson"
    assert _limit(None, inv) is None


def test_a_missing_inventory_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "htfl", "deploy", "status", "--inventory", "nope.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2
    assert "nope.yml" in out.stderr and "not found" in out.stderr
