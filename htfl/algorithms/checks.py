"""Parameter checks for ``Params.problems()``; messages read ``name: expected ..., got ...``.

The experiment loader prefixes them with ``algorithm.params.``.
"""

from __future__ import annotations

from htfl.models import ARCHITECTURES


def number_at_least(name: str, value: float, low: float) -> list[str]:
    return [] if value >= low else [f"{name}: expected a number >= {low:g}, got {value:g}"]


def number_above(name: str, value: float, low: float) -> list[str]:
    return [] if value > low else [f"{name}: expected a number > {low:g}, got {value:g}"]


def integer_at_least(name: str, value: int, low: int) -> list[str]:
    return [] if value >= low else [f"{name}: expected an integer >= {low}, got {value}"]


def fraction(name: str, value: float) -> list[str]:
    return [] if 0 <= value <= 1 else [f"{name}: expected a number in [0, 1], got {value:g}"]


def architecture(name: str, arch: str) -> list[str]:
    if arch in ARCHITECTURES:
        return []
    return [f"{name}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"]
