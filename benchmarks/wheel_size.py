"""What each install carries: files, bytes and the requirement closure of the htfl wheels.

Run: ``.venv/bin/python -m benchmarks.wheel_size [--tree DIR] [--kind device] [--files]``

Builds the wheels of a checkout (default: this one) with
:func:`htfl.workstation.deploy.wheel.build_wheel` and prints one row per wheel: files in the
wheel, the wheel's size, the unpacked size, Python modules, workstation and test modules
(``htfl/workstation/``, ``tests/``), and how many distributions its ``Requires-Dist`` pull in,
walked through this venv's installed metadata (the workstation wheel with its
``[workstation]`` extra, where it has one). ``heavy`` names the workstation-only
distributions in that closure (scikit-learn, matplotlib, ansible, pytest). For a before/after
figure, build another tree, e.g. ``git archive HEAD | tar -x -C /tmp/before`` then
``--tree /tmp/before --kind workstation`` (before the split there is only the full wheel).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from htfl.workstation.deploy.paths import source_root
from htfl.workstation.deploy.wheel import (
    KINDS,
    WheelBuildError,
    build_wheel,
    requirement_closure,
    wheel_requirements,
)

#: Distributions a device must never need (what the split keeps on the workstation).
HEAVY = ("scikit-learn", "matplotlib", "ansible-core", "ansible-runner", "ansible", "pytest")


@dataclass(frozen=True)
class WheelRow:
    kind: str
    name: str
    files: int
    wheel_bytes: int
    unpacked_bytes: int
    modules: int
    workstation_modules: int
    test_modules: int
    closure: dict[str, str | None]
    names: tuple[str, ...]

    @property
    def heavy(self) -> list[str]:
        return [name for name in HEAVY if name in self.closure]


def measure(path: Path, kind: str) -> WheelRow:
    """Count what the wheel at ``path`` holds and what it pulls in."""
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    names = tuple(sorted(i.filename for i in infos))
    modules = [n for n in names if n.endswith(".py")]
    extras = ("workstation",) if kind == "workstation" else ()
    return WheelRow(
        kind=kind,
        name=path.name,
        files=len(names),
        wheel_bytes=path.stat().st_size,
        unpacked_bytes=sum(i.file_size for i in infos),
        modules=len(modules),
        workstation_modules=sum(n.startswith("htfl/workstation/") for n in modules),
        test_modules=sum(n.startswith("tests/") for n in modules),
        closure=requirement_closure(wheel_requirements(path), extras),
        names=names,
    )


def table(rows: list[WheelRow]) -> str:
    head = ("kind", "wheel", "files", "bytes", "unpacked", "modules", "ws", "tests", "closure")
    lines = [
        (
            r.kind,
            r.name,
            str(r.files),
            str(r.wheel_bytes),
            str(r.unpacked_bytes),
            str(r.modules),
            str(r.workstation_modules),
            str(r.test_modules),
            str(len(r.closure)),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [head, *lines]
    ]
    out += [f"{r.kind}: heavy in closure: {', '.join(r.heavy) or 'none'}" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--tree", type=Path, default=source_root(), help="the checkout whose wheels are built"
    )
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        default=None,
        help="which wheel to build (repeatable; default: all kinds)",
    )
    parser.add_argument(
        "--files", action="store_true", help="also list each wheel's files and closure"
    )
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="htfl-wheel-size-") as tmp:
        for kind in args.kind or KINDS:
            try:
                built = build_wheel(Path(tmp) / kind, root=args.tree, kind=kind)
            except WheelBuildError as err:
                print(f"error: {kind} wheel of {args.tree}: {err}", file=sys.stderr)
                return 1
            rows.append(measure(built.path, kind))
    print(table(rows))
    if args.files:
        for row in rows:
            print(f"\n# {row.name}: files")
            print("\n".join(row.names))
            print(f"\n# {row.name}: requirement closure")
            print("\n".join(f"{k}=={v}" for k, v in row.closure.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
