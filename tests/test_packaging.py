"""What each install carries: the device wheel holds device and shared code only, and pulls in
no workstation tool; the full wheel holds no test code; both carry the packaged digits.

The wheels are built for real from this checkout (setuptools, as ``htfl deploy`` does) and
inspected: file lists, every module imported from the unpacked device wheel with
``htfl.workstation`` unimportable, the Requires-Dist closure walked through this venv's
installed metadata, and a real ``pip install --no-deps`` into a fresh venv.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from htfl.workstation.deploy.wheel import (
    BuiltWheel,
    build_wheel,
    existing_wheel,
    requirement_closure,
    wheel_requirements,
)

REPO = Path(__file__).resolve().parents[1]
#: Workstation-only or test-only distributions that must never reach a device.
NOT_ON_A_DEVICE = ("scikit-learn", "matplotlib", "ansible-core", "ansible-runner", "ansible")
TEST_TOOLS = ("pytest", "pytest-timeout", "ruff", "ansible-lint")
#: sha256 of htfl/datasets/data/digits.npz (its provenance: htfl/datasets/data/README.md).
DIGITS_NPZ_SHA256 = "90574a6a6809a1388966adb3a7dacb1f49041e0f50f93c3727b53a6769d19a4e"
#: sha256 over dtype, shape and bytes of the loaded x then y: scikit-learn's load_digits() / 16.
DIGITS_ARRAYS_SHA256 = "dc03189b4746b9956cbef3f3f059983e30dbf36fc76c971951ba57233a7c7071"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltWheel]:
    out = tmp_path_factory.mktemp("wheels")
    return {kind: build_wheel(out / kind, kind=kind) for kind in ("device", "workstation")}


def _names(wheel: BuiltWheel) -> list[str]:
    with zipfile.ZipFile(wheel.path) as zf:
        return zf.namelist()


def test_the_device_wheel_holds_device_and_shared_code_only(wheels: dict[str, BuiltWheel]):
    device = wheels["device"]
    assert device.path.name.startswith("htfl_device-") and device.distribution == "htfl-device"
    names = _names(device)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"htfl", f"htfl_device-{device.version}.dist-info"}
    assert not [n for n in names if n.startswith("htfl/workstation/")]
    for needed in ("htfl/device/agent.py", "htfl/cli.py", "htfl/datasets/delivery.py"):
        assert needed in names
    # everything a device gets is exactly the full wheel minus htfl/workstation/
    full = {n for n in _names(wheels["workstation"]) if n.startswith("htfl/")}
    assert {n for n in names if n.startswith("htfl/")} == {
        n for n in full if not n.startswith("htfl/workstation/")
    }


def test_the_full_wheel_has_no_test_code_and_both_carry_the_digits(wheels):
    full = _names(wheels["workstation"])
    assert {n.split("/")[0] for n in full} == {"htfl", "htfl-0.1.0.dist-info"}
    assert "htfl/workstation/server/app.py" in full
    for wheel in wheels.values():
        with zipfile.ZipFile(wheel.path) as zf:
            packaged = zf.read("htfl/datasets/data/digits.npz")
            assert "htfl/datasets/data/README.md" in zf.namelist()
        assert hashlib.sha256(packaged).hexdigest() == DIGITS_NPZ_SHA256, wheel.path.name


_IMPORT_ALL = textwrap.dedent(
    """
    import hashlib, importlib, importlib.abc, json, pkgutil, sys, traceback

    root = sys.argv[1]
    blocked = ("htfl.workstation", "tests", "sklearn", "matplotlib", "ansible_runner", "pytest")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in blocked):
                raise ModuleNotFoundError(f"blocked on a device: {name}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    sys.path.insert(0, root)
    import htfl

    failures, imported = {}, []
    for info in pkgutil.walk_packages(htfl.__path__, "htfl."):
        if info.name.endswith("__main__"):
            continue  # `python -m htfl` runs the command
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except BaseException:
            failures[info.name] = traceback.format_exc(limit=3)

    from htfl.datasets.digits import DigitsLoader

    data = DigitsLoader().load()
    digest = hashlib.sha256()
    for array in (data.x, data.y):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    print(json.dumps({"htfl": htfl.__file__, "imported": imported, "failures": failures,
                      "digits": digest.hexdigest()}))
    """
)


def test_every_device_module_imports_without_workstation_code(wheels, tmp_path: Path) -> None:
    unpacked = tmp_path / "device"
    with zipfile.ZipFile(wheels["device"].path) as zf:
        zf.extractall(unpacked)
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, str(unpacked)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout, whose htfl/ would be importable
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["htfl"].startswith(str(unpacked)), report["htfl"]
    assert report["failures"] == {}, "\n".join(report["failures"].values())
    modules = {n[:-3].replace("/", ".") for n in _names(wheels["device"]) if n.endswith(".py")}
    expected = {m.removesuffix(".__init__") for m in modules if not m.endswith("__main__")}
    assert set(report["imported"]) == expected - {"htfl"}
    # the packaged digits, loaded from the device wheel, are scikit-learn's arrays
    assert report["digits"] == DIGITS_ARRAYS_SHA256


def test_the_device_requirements_pull_in_no_workstation_or_test_tool(wheels) -> None:
    requires = wheel_requirements(wheels["device"].path)
    assert not [r for r in requires if "extra ==" in r]  # the device wheel has no extras
    closure = requirement_closure(requires)
    assert {"flwr", "torch", "numpy"} <= closure.keys()
    # every distribution was walked (none missing here), so nothing can hide below one
    assert [name for name, version in closure.items() if version is None] == []
    assert [n for n in (*NOT_ON_A_DEVICE, *TEST_TOOLS) if n in closure] == []


def test_the_workstation_extra_adds_the_workstation_tools(wheels) -> None:
    requires = wheel_requirements(wheels["workstation"].path)
    base = requirement_closure(requires)
    workstation = requirement_closure(requires, ["workstation"])
    assert base == requirement_closure(wheel_requirements(wheels["device"].path))
    assert {"matplotlib", "ansible-core", "ansible-runner"} <= workstation.keys()
    assert "scikit-learn" not in workstation and "pytest" not in workstation


def test_a_fresh_venv_with_the_device_wheel_has_device_commands_only(wheels, tmp_path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run(
        [*install, "--no-deps", "--no-index", str(wheels["device"].path)],
        check=True,
        timeout=300,
    )

    def htfl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-m", "htfl", *args], capture_output=True, text=True, cwd=tmp_path
        )

    shown = htfl("--help")
    assert shown.returncode == 0, shown.stderr
    assert "agent" in shown.stdout and "power" in shown.stdout
    for command in ("data", "deploy", "run", "prometheus"):
        refused = htfl(command, "--help")
        assert refused.returncode == 2 and "invalid choice" in refused.stderr, command
    assert (venv / "bin" / "htfl").is_file()
    installed = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('htfl.workstation'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert installed.stdout.strip() == "None", installed


def test_deploy_accepts_either_wheel_and_nothing_else(wheels, tmp_path: Path) -> None:
    assert existing_wheel(wheels["device"].path).distribution == "htfl-device"
    assert existing_wheel(wheels["workstation"].path).distribution == "htfl"
    other = tmp_path / "flwr-1.41.0-py3-none-any.whl"
    other.write_bytes(b"")
    with pytest.raises(RuntimeError, match="not an htfl wheel"):
        existing_wheel(other)


def test_the_wheel_size_benchmark_on_a_toy_checkout(tmp_path: Path) -> None:
    toy = tmp_path / "toy"
    for package in ("htfl", "htfl/device", "htfl/workstation"):
        (toy / package).mkdir(parents=True)
        (toy / package / "__init__.py").write_text('"""toy"""\n')
    (toy / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "htfl"
            version = "9.9.9"
            dependencies = ["numpy>=1.26"]

            [project.optional-dependencies]
            workstation = ["matplotlib>=3.7"]
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.wheel_size", "--tree", str(toy)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:3]}
    assert rows["device"][1] == "htfl_device-9.9.9-py3-none-any.whl"
    assert rows["device"][5:8] == ["2", "0", "0"]  # htfl/ and htfl/device/, no workstation
    assert rows["workstation"][5:8] == ["3", "1", "0"]
    assert "device: heavy in closure: none" in proc.stdout
    assert "workstation: heavy in closure: matplotlib" in proc.stdout
