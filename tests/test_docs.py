"""The docs are a contract: every path and module docs/architecture.md names exists, and no
doc cites a file outside the repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TOP_DIRS = ("htfl/", "tests/", "deploy/", "benchmarks/", "experiments/", "docs/")


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\s]+)`", text)


def named_paths(text: str) -> list[str]:
    return sorted({s.rstrip(",.") for s in _code_spans(text) if s.startswith(TOP_DIRS)})


def named_modules(text: str) -> list[str]:
    spans = {s.split(":")[0] for s in _code_spans(text)}
    return sorted(s for s in spans if re.fullmatch(r"htfl(\.[a-z_0-9]+)+", s))


def test_architecture_names_paths_and_modules():
    text = ARCHITECTURE.read_text()
    assert len(named_paths(text)) > 30 and len(named_modules(text)) >= 3


@pytest.mark.parametrize("path", named_paths(ARCHITECTURE.read_text()))
def test_every_path_the_architecture_names_exists(path: str):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"


@pytest.mark.parametrize("module", named_modules(ARCHITECTURE.read_text()))
def test_every_module_the_architecture_names_exists(module: str):
    assert importlib.util.find_spec(module) is not None, f"no module {module}"


def test_every_htfl_package_is_in_the_architecture():
    text = ARCHITECTURE.read_text()
    packages = sorted(
        str(p.parent.relative_to(ROOT)) + "/" for p in (ROOT / "htfl").rglob("__init__.py")
    )
    missing = [p for p in packages if p != "htfl/" and not any(p in s for s in _code_spans(text))]
    assert not missing, f"packages docs/architecture.md does not mention: {missing}"


def test_no_doc_cites_files_outside_the_repository():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        text = doc.read_text()
        assert "../shared" not in text and "DESIGN.md" not in text, doc
