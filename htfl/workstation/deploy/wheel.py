"""Build the wheels of this checkout: the device wheel every board installs, and the full one.

Two builds of the same sources, both with setuptools:

``device`` (what ``htfl deploy`` installs)
    Distribution ``htfl-device``, import package ``htfl`` without :mod:`htfl.workstation`:
    the scratch tree holds only the device and shared packages and a generated pyproject
    whose requirements are the project's base ``dependencies`` (no extras). So no workstation
    or test module, and no scikit-learn, matplotlib or ansible, can reach a device.
``workstation``
    Distribution ``htfl``, everything under ``htfl/`` (what ``pip install .[workstation]``
    installs; tests are never part of the package).

The build is reproducible: the package files are copied to a scratch tree (so stale
``build/`` output never leaks in) and zipped with a fixed ``SOURCE_DATE_EPOCH``, so the same
sources give a byte-identical wheel. Devices compare its SHA-256 with the one they installed
and reinstall only when it differs; ``htfl deploy provision`` twice in a row changes nothing.

``python -m htfl.workstation.deploy.wheel [--kind device|workstation] [--out DIR]`` prints
the wheel's path.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any, Literal

import tomli_w

from htfl.workstation.deploy.paths import source_root

#: 1980-01-01, the earliest time a zip file can store.
SOURCE_DATE_EPOCH = "315532800"
#: Files beside the package that the full build reads, when present.
TOP_LEVEL_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg")
#: The distribution a device installs (same import package, ``htfl``).
DEVICE_DISTRIBUTION = "htfl-device"
#: The full distribution (the workstation's).
WORKSTATION_DISTRIBUTION = "htfl"
#: Subpackages of ``htfl`` that never go to a device.
WORKSTATION_ONLY = ("workstation",)
#: File-name prefixes of the wheels this module builds (a wheel's name uses ``_`` for ``-``).
WHEEL_PREFIXES = ("htfl-", "htfl_device-")

Kind = Literal["device", "workstation"]
KINDS: tuple[Kind, ...] = ("device", "workstation")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info")


class WheelBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    sha256: str

    @property
    def version(self) -> str:
        return self.path.name.split("-")[1]

    @property
    def distribution(self) -> str:
        """``htfl`` or ``htfl-device`` (the name pip and the deploy role use)."""
        return self.path.name.split("-")[0].replace("_", "-")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def device_pyproject(project_pyproject: dict[str, Any]) -> dict[str, Any]:
    """The device build's pyproject, derived from the project's so the two cannot drift.

    Same version, scripts, Python and package data; name ``htfl-device``; requirements the
    base ``dependencies`` only; :mod:`htfl.workstation` excluded (and absent from the tree).
    """
    project = project_pyproject["project"]
    setuptools_cfg = project_pyproject.get("tool", {}).get("setuptools", {})
    keep = ("version", "requires-python", "license", "dependencies", "scripts")
    device: dict[str, Any] = {
        "name": DEVICE_DISTRIBUTION,
        "description": f"{project.get('description', 'htfl')}: the device install",
        **{key: project[key] for key in keep if key in project},
    }
    excluded = [f"htfl.{name}{tail}" for name in WORKSTATION_ONLY for tail in ("", ".*")]
    tool: dict[str, Any] = {"packages": {"find": {"include": ["htfl*"], "exclude": excluded}}}
    if "package-data" in setuptools_cfg:
        tool["package-data"] = setuptools_cfg["package-data"]
    return {
        "build-system": project_pyproject["build-system"],
        "project": device,
        "tool": {"setuptools": tool},
    }


def _check_checkout(root: Path) -> None:
    if not (root / "pyproject.toml").is_file() or not (root / "htfl").is_dir():
        raise WheelBuildError(
            f"{root} is not an htfl checkout (no pyproject.toml / htfl/): build the wheel "
            "in a checkout, or pass one with --wheel"
        )


def _copy_sources(root: Path, dest: Path, kind: Kind) -> None:
    _check_checkout(root)
    if kind == "workstation":
        for name in TOP_LEVEL_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, dest / name)
        shutil.copytree(root / "htfl", dest / "htfl", ignore=_IGNORE)
        return
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise WheelBuildError(f"{root / 'pyproject.toml'}: {err}") from None
    (dest / "pyproject.toml").write_text(tomli_w.dumps(device_pyproject(project)), "utf-8")

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_IGNORE(directory, names))
        if Path(directory) == root / "htfl":
            skipped.update(WORKSTATION_ONLY)
        return skipped

    shutil.copytree(root / "htfl", dest / "htfl", ignore=ignore)


def build_wheel(out_dir: Path, root: Path | None = None, kind: Kind = "device") -> BuiltWheel:
    """Build the ``kind`` wheel of the checkout at ``root`` into ``out_dir``."""
    if kind not in KINDS:
        raise WheelBuildError(f"unknown wheel kind {kind!r}; expected one of {', '.join(KINDS)}")
    root = root or source_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="htfl-wheel-") as tmp:
        src, dist = Path(tmp) / "src", Path(tmp) / "dist"
        src.mkdir()
        _copy_sources(root, src, kind)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist)]
        if importlib.util.find_spec("setuptools") is not None:
            argv.append("--no-build-isolation")  # no download when setuptools is here
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [*argv, str(src)], capture_output=True, text=True, env=env, timeout=600
        )
        wheels = sorted(dist.glob("htfl*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise WheelBuildError(f"pip wheel failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        target = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return BuiltWheel(target, sha256_of(target))


def existing_wheel(path: Path) -> BuiltWheel:
    """A wheel given with ``--wheel``: the device wheel or the full one."""
    if not path.is_file() or not path.name.startswith(WHEEL_PREFIXES) or path.suffix != ".whl":
        raise WheelBuildError(f"{path}: not an htfl wheel (htfl_device-*.whl or htfl-*.whl)")
    return BuiltWheel(path.resolve(), sha256_of(path))


# --------------------------------------------------------------------------- what a wheel pulls in


def wheel_requirements(path: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA (markers and extras included)."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(zf.read(name).decode("utf-8"))
    return list(message.get_all("Requires-Dist") or [])


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(
    requirements: Iterable[str], extras: Iterable[str] = ()
) -> dict[str, str | None]:
    """Every distribution ``requirements`` pull in, walked through installed metadata.

    ``extras`` select the optional requirements of the roots (e.g. ``workstation``). The
    answer maps canonical names to the version installed here, or None for one not
    installed here (listed, but its own requirements are unknown). Like the deploy role's
    ``pip_install_without.py``: no pip, no network.
    """
    from packaging.requirements import Requirement

    def active(req: Requirement, chosen: Iterable[str]) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate({"extra": extra}) for extra in ("", *chosen))

    found: dict[str, str | None] = {}
    queue = [Requirement(line) for line in requirements if active(Requirement(line), extras)]
    walked: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req = queue.pop(0)
        name = canonical(req.name)
        key = (name, frozenset(req.extras))
        if key in walked:
            continue
        walked.add(key)
        try:
            found[name] = metadata.version(name)
            lines = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        queue += [dep for dep in map(Requirement, lines) if active(dep, req.extras)]
    return dict(sorted(found.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="device",
        help="device: htfl-device, without htfl.workstation (what devices install); "
        "workstation: the full htfl distribution",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=source_root() / "deploy" / ".build",
        help="directory the wheel is written to",
    )
    args = parser.parse_args(argv)
    try:
        wheel = build_wheel(args.out, kind=args.kind)
    except WheelBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(wheel.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
