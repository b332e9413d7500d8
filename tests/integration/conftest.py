"""Helpers for tests that start real Flower processes (SuperLink, agents) on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil


def htfl(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def fleet_processes(marker: Path) -> list[psutil.Process]:
    """Live processes started for a fleet whose FLWR_HOME lies under ``marker``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if str(marker) in proc.environ().get("FLWR_HOME", ""):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
