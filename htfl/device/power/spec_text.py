"""A meter spec typed on a command line (``--meter``), read the same way by every command.

Two spellings of the inventory's ``htfl_meter`` mapping, as ``htfl agent --meter`` and
``htfl power probe --meter`` take them:

* a JSON object: ``{"driver": "ina3221", "model": "jetson-nano"}`` (what ``htfl deploy``
  passes, any value type, lists included);
* ``KEY=VALUE`` pairs separated by commas: ``driver=um25c,port=/dev/rfcomm0,baudrate=9600``.
  A value that reads as a JSON number or ``true``/``false`` becomes one; anything else is a
  string. A value with a comma in it (a list) needs the JSON spelling.

Only the text is read here; :meth:`htfl.device.power.config.MeterSpec.from_mapping` checks the
keys and values, so a spec means the same on the command line as in the inventory.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from htfl.cli import UsageError

if TYPE_CHECKING:
    from htfl.device.power.config import MeterSpec

__all__ = ["MeterTextError", "checked_meter", "meter_argument", "parse_meter_text"]

SYNTAX = "KEY=VALUE pairs separated by commas (driver=um25c,port=/dev/rfcomm0) or a JSON object"


class MeterTextError(ValueError):
    """``--meter`` text that is neither a JSON object nor KEY=VALUE pairs; quotes the text."""


def _scalar(text: str) -> Any:
    """A JSON number or boolean as such; anything else stays the string it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return text


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json keeps the last of two silently)."""
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise MeterTextError(f"{key} given twice")
        mapping[key] = value
    return mapping


def parse_meter_text(text: str) -> dict[str, Any]:
    """``--meter`` text -> the mapping :meth:`MeterSpec.from_mapping` validates."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            # "{..." parses to an object or fails
            parsed: dict[str, Any] = json.loads(stripped, object_pairs_hook=_object)
        except ValueError as err:
            raise MeterTextError(f"{text!r}: not valid JSON ({err})") from None
        return parsed
    mapping: dict[str, Any] = {}
    for part in (p.strip() for p in stripped.split(",")):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MeterTextError(f"{text!r}: {part!r} is not KEY=VALUE; expected {SYNTAX}")
        if key in mapping:
            raise MeterTextError(f"{text!r}: {key} given twice")
        mapping[key] = _scalar(raw.strip())
    return mapping


def meter_argument(text: str) -> dict[str, Any]:
    """:func:`parse_meter_text` as an argparse ``type``: a mistake is a usage error (exit 2)."""
    try:
        return parse_meter_text(text)
    except MeterTextError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def checked_meter(mapping: Mapping[str, Any], device: str) -> MeterSpec:
    """The validated spec of a ``--meter`` mapping; its problems, one line each naming the
    key, as a :class:`~htfl.cli.UsageError` (exit 2 before anything starts)."""
    from htfl.device.power.config import MeterSpec, MeterSpecError

    try:
        return MeterSpec.from_mapping(mapping, device)
    except (MeterSpecError, ValueError) as err:
        raise UsageError("\n".join(f"--meter: {line}" for line in str(err).splitlines())) from None
