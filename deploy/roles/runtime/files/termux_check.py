"""Check, on a phone, that Termux's prebuilt Python packages are there and new enough.

pip cannot build torch on a phone, and building grpcio, cryptography or pydantic-core there
takes long (a C++/Rust toolchain on a phone's cores), so the Termux recipe takes them from
Termux's repository and this script fails the provision early, naming each missing or too-old
piece, before pip starts a build nobody asked for.

    python termux_check.py '[{"package": "python-torch", "module": "torch",
                              "dist": "torch", "spec": ">=2.2"}, ...]'

Prints one JSON line: {"problems": ["python-torch: ...", ...], "versions": {...}}. Standard
library plus pip's vendored ``packaging``; runs with Termux's python (any Python >= 3.8).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import sys

try:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import InvalidVersion, Version


def check(wanted: list[dict]) -> dict:
    problems: list[str] = []
    versions: dict[str, str | None] = {}
    for item in wanted:
        package, dist = item["package"], item["dist"]
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
        versions[dist] = version
        if version is None:
            problems.append(f"{package}: {dist} is not installed (pkg install {package})")
            continue
        spec = item.get("spec") or ""
        try:
            ok = Version(version.split("+")[0]) in SpecifierSet(spec)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(
                f"{package}: {dist} {version} does not satisfy {spec} "
                f"({item.get('why') or 'what htfl needs'}); pkg upgrade, or a newer Termux"
            )
            continue
        try:
            importlib.import_module(item["module"])
        except Exception as err:  # reported: a broken prebuilt package fails here, not later
            problems.append(
                f"{package}: import {item['module']} fails: {type(err).__name__}: {err}"
            )
    return {"problems": problems, "versions": versions}


if __name__ == "__main__":
    print(json.dumps(check(json.loads(sys.argv[1]))))
