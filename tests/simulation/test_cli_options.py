"""`htfl run --simulate` option mistakes are one clear line each and exit 2, before Ray or
anything else starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "experiments" / "quickstart.toml"  # selects 4 devices by class


def htfl_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_too_few_virtual_clients_and_companions_without_simulate(tmp_path: Path) -> None:
    proc = htfl_run(str(QUICKSTART), "--simulate", "2", "--local-fleet", "4", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--simulate 2: the experiment selects 4 devices" in proc.stderr
    assert "--simulate and --local-fleet: choose one" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = htfl_run(str(QUICKSTART), "--client-state", "disk", cwd=tmp_path)
    assert proc.returncode == 2 and "--client-state needs --simulate N" in proc.stderr
    assert not (tmp_path / "results").exists()  # nothing half-written
