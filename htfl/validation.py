"""One validation engine for every input htfl reads: pydantic v2 dataclasses, and the lines it
reports.

The experiment file, ``[algorithm.params]`` of every method, meter specs (``htfl_meter``) and
inventory host variables are pydantic dataclasses built from the field types and the checks
below. Pydantic collects every problem of a table in one pass; :func:`problem_lines` turns its
``ValidationError`` into htfl's lines, ``where.key: expected ..., got ...``, so that format is
written once. Validation never touches a file: checks that read one run in a separate step
(``htfl.workstation.config.preflight``).

Shared by device and workstation code, so it imports neither.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Annotated, Any, TypeVar, cast

try:
    from typing import dataclass_transform
except ImportError:  # a trainer process in JetPack 6's Python 3.10 (pydantic brings it)
    from typing_extensions import dataclass_transform

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter
from pydantic import ValidationError as ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import InitErrorDetails, PydanticCustomError

T = TypeVar("T")

#: Unknown keys are problems (a typo must not silently fall back to a default).
STRICT_TABLE = ConfigDict(extra="forbid")

#: Types as a TOML file gives them: no coercion ("3" is not an integer, true is not 1).
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # an integer is accepted and becomes a float
Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]

_CUSTOM = "htfl"


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def table(cls: type[T]) -> type[T]:
    """A frozen pydantic dataclass that rejects unknown keys (how every htfl table is declared)."""
    return cast("type[T]", pydantic_dataclass(frozen=True, config=STRICT_TABLE)(cls))


def fail(message: str) -> PydanticCustomError:
    """The error a check raises; ``message`` is the whole text after ``key: ``."""
    return PydanticCustomError(_CUSTOM, message.replace("{", "{{").replace("}", "}}"))


def _kind(value: Any) -> str:
    return "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a number"


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check(test: Callable[[Any], bool], expected: str | Callable[[Any], str]) -> AfterValidator:
    """A check on a parsed value: ``expected, got <value>`` when ``test`` is false."""

    def run(value: Any) -> Any:
        if not test(value):
            text = expected(value) if callable(expected) else expected
            raise fail(f"expected {text}, got {_fmt(value) if _numeric(value) else repr(value)}")
        return value

    return AfterValidator(run)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def at_least(low: float) -> AfterValidator:
    return check(lambda v: v >= low, lambda v: f"{_kind(v)} >= {_fmt(low)}")


def above(low: float) -> AfterValidator:
    return check(lambda v: v > low, lambda v: f"{_kind(v)} > {_fmt(low)}")


def within(low: float, high: float, *, low_open: bool = False) -> AfterValidator:
    """``low <= x <= high`` (``low < x`` with ``low_open``)."""
    bracket = "(" if low_open else "["
    return check(
        lambda v: (low < v if low_open else low <= v) and v <= high,
        f"a number in {bracket}{_fmt(low)}, {_fmt(high)}]",
    )


def finite() -> AfterValidator:
    return check(math.isfinite, "a finite number")


def one_of(choices: Collection[Any], what: str = "") -> AfterValidator:
    """The value must be in ``choices`` (a registry, read at each check); the message lists them."""

    def run(value: Any) -> Any:
        if value not in choices:
            label = f"unknown {what} {value!r}" if what else f"unknown {value!r}"
            raise fail(f"{label}; known: {', '.join(sorted(choices))}")
        return value

    return AfterValidator(run)


def lax_int(value: Any) -> Any:
    """Before-validator: a string of digits (a command line, an inventory) becomes an integer."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


LaxInt = Annotated[Int, BeforeValidator(lax_int)]


def problem(key: str | tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    """One problem found by a cross-field check, reported at ``key``."""
    loc = tuple(key.split(".")) if isinstance(key, str) else key
    return InitErrorDetails(type=fail(message), loc=loc, input=value)


def raise_problems(title: str, found: list[InitErrorDetails]) -> None:
    """Raise every cross-field problem at once (from a ``model_validator``); none: return."""
    if found:
        raise ValidationError.from_exception_data(title, found)


# --- ValidationError -> htfl's lines ------------------------------------------------------
_TYPES = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "bool": "true or false",
    "dict": "a table",
    "list": "a list",
    "tuple": "a list",
}


def _loc_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad dict key: the key itself is named
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(
    err: Mapping[str, Any], known: Iterable[str], missing: str, unknown: str, where: str
) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == _CUSTOM:
        return str(err["msg"])
    if kind == "missing":
        return missing
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        names = ", ".join(sorted(known))
        return f"{unknown} (expected one of: {names})" if names else unknown
    if kind in ("dataclass_type", "model_type", "dict_type") and not err["loc"]:
        return f"expected a table, got {type(value).__name__}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '?')}, got {value!r}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    base = kind.split("_")[0]
    if base in _TYPES and kind.endswith(("_type", "_parsing", "_from_float")):
        return f"expected {_TYPES[base]}, got {value!r}"
    text = str(err["msg"])
    return f"{text[:1].lower()}{text[1:]}, got {value!r}"


def problem_lines(
    err: ValidationError,
    where: str = "",
    *,
    known: Iterable[str] = (),
    missing: str = "required key is missing",
    unknown: str = "unknown key",
) -> list[str]:
    """``where.key: what was expected, got what`` for each of pydantic's errors, in order.

    ``known``: the keys of the table (listed when an unknown key is found); ``missing`` and
    ``unknown``: how this input words a missing and an unknown key.
    """
    lines = []
    for e in err.errors(include_url=False):
        loc = _loc_text(tuple(e["loc"]))
        key = ".".join(p for p in (where, loc) if p)
        lines.append(f"{key}: {_message(e, known, missing, unknown, where)}")
    return lines


def field_names(cls: type) -> list[str]:
    return list(getattr(cls, "__pydantic_fields__", None) or getattr(cls, "model_fields", {}))


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def build(cls: type[T], data: Any, where: str, problems: list[str], **wording: str) -> T | None:
    """``cls`` from ``data``; on failure append one line per problem (naming ``where``.key)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return adapter.validate_python(data)
    except ValidationError as err:
        problems.extend(problem_lines(err, where, known=field_names(cls), **wording))
        return None
