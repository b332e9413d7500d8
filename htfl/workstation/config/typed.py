"""Build frozen dataclasses from TOML tables, collecting errors that name file and key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more problems in a config file; every line names the file and the key."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid experiment file {self.path}:\n{lines}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "dict": "a table",
            "list": "a list",
        }.get(tp.__name__, tp.__name__)
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if typing.get_origin(tp) in (list, tuple):
        return "a list"
    if typing.get_origin(tp) is dict:
        return "a table"
    return " or ".join(_type_name(a) for a in args if a is not type(None)) or str(tp)


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        return isinstance(value, dict) and all(
            _matches(k, key_t) and _matches(v, val_t) for k, v in value.items()
        )
    return isinstance(value, tp)


def build(cls: type[T], table: Any, where: str, problems: list[str]) -> T | None:
    """Make ``cls`` from ``table``; append a message per problem, naming ``where``.key."""
    if not isinstance(table, dict):
        problems.append(f"[{where}] must be a table, got {type(table).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(fields))
            problems.append(f"{where}.{key}: unknown key (expected one of: {known})")
            ok = False
            continue
        if not _matches(value, hints[name]):
            problems.append(f"{where}.{key}: expected {_type_name(hints[name])}, got {value!r}")
            ok = False
            continue
        kwargs[name] = float(value) if hints[name] is float else value
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in kwargs and ok:
            problems.append(f"{where}.{name}: required key is missing")
            ok = False
    if not ok:
        return None
    obj = cls(**kwargs)
    check = getattr(obj, "problems", None)
    if callable(check):
        problems.extend(f"{where}.{msg}" for msg in check())
    return obj


def to_plain(obj: Any) -> Any:
    """Dataclasses to JSON-able dicts (for the resolved config written with results)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
