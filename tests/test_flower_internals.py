"""Flower's internals: every non-public name htfl uses imports, and only one module imports any.

A Flower release that renames or moves one of them fails here, naming each, rather than at
the first experiment on a device.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from htfl import flower_internals

HTFL = Path(flower_internals.__file__).parent
#: Flower's public app API, which any htfl module may import (``flwr.simulation``: its documented
#: ``run_simulation``, the engine ``htfl run --simulate`` drives).
PUBLIC = {"flwr.app", "flwr.serverapp", "flwr.clientapp", "flwr.simulation"}


def flwr_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from flwr... import name`` and ``import flwr...`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "flwr":
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.split(".")[0] == "flwr"]
    return found


def test_every_internal_name_htfl_uses_imports() -> None:
    missing = []
    for module_name, name in flwr_imports(Path(flower_internals.__file__)):
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            missing.append(f"{module_name} ({err})")
            continue
        if not hasattr(module, name):
            missing.append(f"{module_name}.{name}")
    assert missing == [], "Flower moved or renamed: " + ", ".join(missing)


def test_every_name_the_adapter_patches_is_there() -> None:
    flower_internals.patch_targets.cache_clear()
    modules = flower_internals.patch_targets()  # raises FlowerInternalsMissing naming each
    assert set(modules) == set(flower_internals.PATCHED)


def test_the_module_lists_what_it_imports() -> None:
    imported = {name for _, name in flwr_imports(Path(flower_internals.__file__))}
    assert imported == set(flower_internals.__all__)


def test_no_other_htfl_module_imports_flower_internals() -> None:
    offenders = [
        f"{path.relative_to(HTFL.parent)}: {module} {name}".strip()
        for path in sorted(HTFL.rglob("*.py"))
        if path != Path(flower_internals.__file__)
        for module, name in flwr_imports(path)
        if module not in PUBLIC and (module, name) != ("flwr", "")  # flwr.__version__
    ]
    assert offenders == []


def test_the_check_sees_a_name_that_moved(monkeypatch) -> None:
    monkeypatch.setitem(
        flower_internals.PATCHED, flower_internals.GRID, ("HttpGrid", "renamed_in_flwr_2")
    )
    flower_internals.patch_targets.cache_clear()
    try:
        flower_internals.patch_targets()
    except flower_internals.FlowerInternalsMissing as err:
        assert "flwr.superlink.grid.http_grid.renamed_in_flwr_2" in str(err)
    else:
        raise AssertionError("a missing name went unnoticed")
    finally:
        flower_internals.patch_targets.cache_clear()
