"""Build the htfl wheel that every device installs: the exact code of this checkout.

The build is reproducible: the package files are copied to a scratch tree (so stale
``build/`` output never leaks in) and zipped with a fixed ``SOURCE_DATE_EPOCH``, so the same
sources give a byte-identical wheel. Devices compare its SHA-256 with the one they installed
and reinstall only when it differs; ``htfl deploy provision`` twice in a row changes nothing.

``python -m htfl.workstation.deploy.wheel [--out DIR]`` prints the wheel's path.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from htfl.workstation.deploy.paths import source_root

#: 1980-01-01, the earliest time a zip file can store.
SOURCE_DATE_EPOCH = "315532800"
#: Files beside the package that the build reads, when present.
TOP_LEVEL_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg")


class WheelBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    sha256: str

    @property
    def version(self) -> str:
        return self.path.name.split("-")[1]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_sources(root: Path, dest: Path) -> None:
    if not (root / "pyproject.toml").is_file() or not (root / "htfl").is_dir():
        raise WheelBuildError(
            f"{root} is not an htfl checkout (no pyproject.toml / htfl/): build the wheel "
            "in a checkout, or pass one with --wheel"
        )
    for name in TOP_LEVEL_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    shutil.copytree(
        root / "htfl",
        dest / "htfl",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info"),
    )


def build_wheel(out_dir: Path, root: Path | None = None) -> BuiltWheel:
    root = root or source_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="htfl-wheel-") as tmp:
        src, dist = Path(tmp) / "src", Path(tmp) / "dist"
        src.mkdir()
        _copy_sources(root, src)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist)]
        if importlib.util.find_spec("setuptools") is not None:
            argv.append("--no-build-isolation")  # no download when setuptools is here
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [*argv, str(src)], capture_output=True, text=True, env=env, timeout=600
        )
        wheels = sorted(dist.glob("htfl-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise WheelBuildError(f"pip wheel failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        target = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return BuiltWheel(target, sha256_of(target))


def existing_wheel(path: Path) -> BuiltWheel:
    if not path.is_file() or not path.name.startswith("htfl-") or path.suffix != ".whl":
        raise WheelBuildError(f"{path}: not an htfl wheel")
    return BuiltWheel(path.resolve(), sha256_of(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=source_root() / "deploy" / ".build")
    args = parser.parse_args(argv)
    try:
        wheel = build_wheel(args.out)
    except WheelBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(wheel.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
