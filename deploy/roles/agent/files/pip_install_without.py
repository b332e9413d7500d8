"""Install what the installed distributions require and is missing, leaving some out.

After the device wheel is installed with ``--no-deps``, this walks the requirements of its
distribution (``htfl-device``: the device set, no workstation tools) and of everything they
require (installed metadata only: no pip, no network) and installs only what is missing or too
old, with one ordinary ``pip install`` that resolves the rest. Nothing missing: pip is not
called at all (fast on a re-provision).

It can also leave requirements out, which pip cannot (flwr needs ``uv``, which has no Android
build): distributions named with ``--no-deps`` are installed without their dependencies and
their requirements are walked in turn; requirements named with ``--skip`` are left out.

    python pip_install_without.py htfl-device [--no-deps=flwr] [--skip=uv] [--pip-arg=...]...

Prints one JSON line: {"changed": bool, "no_deps": [...], "installed": [...]}. Runs on the
device with the venv's Python (standard library plus pip's vendored packaging).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import subprocess
import sys

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def requirements_of(name: str) -> list[Requirement]:
    reqs = []
    for line in metadata.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            reqs.append(req)
    return reqs


def plan(roots, no_deps, skip, requires, version):
    """(``pip install --no-deps`` list, ordinary ``pip install`` list) for ``roots``.

    ``requires(name)`` gives a distribution's requirements (None when it is not installed
    yet), ``version(name)`` its installed version or None. Installed distributions that
    satisfy a requirement are walked too, so a hole anywhere below the roots is found. Pure,
    for the tests.
    """
    no_deps = {canonical(n) for n in no_deps}
    skip = {canonical(n) for n in skip}
    seen, queue = set(), [canonical(r) for r in roots]
    bare, ordinary = [], []
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for req in requires(name) or []:
            dep = canonical(req.name)
            if dep in skip:
                continue
            have = version(dep)
            satisfied = have is not None and req.specifier.contains(have, prereleases=True)
            if satisfied:
                queue.append(dep)
            elif dep in no_deps:
                if str(req) not in bare:
                    bare.append(str(req))
                queue.append(dep)
            elif str(req) not in ordinary:
                ordinary.append(str(req))
    return bare, ordinary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--no-deps", action="append", default=[])
    parser.add_argument("--skip", action="append", default=[])
    parser.add_argument("--pip-arg", action="append", default=[])
    args = parser.parse_args(argv)
    pip = [sys.executable, "-m", "pip", "install", *args.pip_arg]
    # Install the --no-deps distributions first, then read their requirements.
    installed_bare: list[str] = []
    ordinary: list[str] = []
    for _ in range(10):
        bare, ordinary = plan(
            args.roots,
            args.no_deps,
            args.skip,
            lambda n: requirements_of(n) if installed_version(n) else None,
            installed_version,
        )
        if not bare:
            break
        subprocess.run([*pip, "--no-deps", *bare], check=True, stdout=sys.stderr)
        installed_bare += bare
    if ordinary:
        subprocess.run([*pip, *ordinary], check=True, stdout=sys.stderr)
    changed = bool(installed_bare or ordinary)
    print(json.dumps({"changed": changed, "no_deps": installed_bare, "installed": ordinary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
