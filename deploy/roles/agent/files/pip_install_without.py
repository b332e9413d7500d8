"""Install the requirements of installed distributions, leaving some out.

pip has no way to skip one dependency (flwr needs ``uv``, which has no Android build). This
script installs the named distributions' requirements itself: distributions listed with
``--no-deps`` are installed without their dependencies and their own requirements are
expanded in turn; requirements named with ``--skip`` are left out; everything else goes to
one ordinary ``pip install``, which resolves the rest.

    python pip_install_without.py htfl --no-deps=flwr --skip=uv [--pip-arg=...]...

Runs on the device with the venv's Python (standard library plus pip's vendored packaging).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
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
    yet), ``version(name)`` its installed version or None. Pure, for the tests.
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
            if dep in skip or dep in seen:
                continue
            have = version(dep)
            satisfied = have is not None and req.specifier.contains(have, prereleases=True)
            if dep in no_deps:
                if not satisfied:
                    bare.append(str(req))
                queue.append(dep)
            elif not satisfied:
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
        subprocess.run([*pip, "--no-deps", *bare], check=True)
        installed_bare += bare
    if ordinary:
        subprocess.run([*pip, *ordinary], check=True)
    print(f"without deps: {installed_bare or 'none'}; resolved by pip: {ordinary or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
