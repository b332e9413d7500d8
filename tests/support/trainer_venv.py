"""Interpreters for a trainer process that are not the agent's.

:func:`trainer_venv`: a separate virtual environment with only what a trainer needs (torch,
numpy, pydantic), and no flwr: the stand-in here for a Jetson's JetPack Python with NVIDIA's
torch, which this machine cannot run (no aarch64, no CUDA; PyPI's torch for Python 3.10 on
x86-64 is a multi-GB CUDA build). Built once per versions, cached under the temp directory.
:func:`bare_venv`: an interpreter with no torch at all (a trainer that cannot start).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path

#: the agent's exact versions, so the two sides compute the same numbers
PACKAGES = ("torch", "numpy", "pydantic")
#: a local wheelhouse (this machine keeps the CPU torch wheel there); PyPI otherwise
WHEELHOUSE = Path("/opt/wheels")


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def trainer_venv(root: Path | None = None) -> Path:
    """The trainer venv's python (torch, numpy, pydantic at the agent's versions; no flwr)."""
    pins = [f"{p}=={importlib.metadata.version(p)}" for p in PACKAGES]
    key = hashlib.sha256(" ".join([sys.version, *pins]).encode()).hexdigest()[:12]
    venv = (root or Path(tempfile.gettempdir())) / f"htfl-trainer-venv-{key}"
    with open(f"{venv}.lock", "w") as lock:  # one build at a time (xdist workers)
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / "ready"
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            links = ["--find-links", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []
            subprocess.run(
                [str(_python(venv)), "-m", "pip", "install", "-q", *links, *pins],
                check=True,
                timeout=1800,
            )
            ready.write_text(" ".join(pins))
    return _python(venv)


def bare_venv(where: Path) -> Path:
    """A fresh venv with nothing installed (not even pip): a Python without torch."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    return _python(where)
