"""Every dataset test gets its own data directory: nothing is read from or written to ~."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "htfl-data"
    monkeypatch.setenv("HTFL_DATA_DIR", str(root))
    return root


def tree(path: Path) -> list[str]:
    """Every file and directory under ``path`` (relative, sorted); [] if it does not exist."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
