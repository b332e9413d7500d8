"""HtFL methods, one module each; this registry is how an experiment file names them."""

from __future__ import annotations

from htfl.algorithms import fedavg, fedproto, fedtgp, local
from htfl.algorithms.base import Method

METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (local, fedavg, fedproto, fedtgp)}


class UnknownMethodError(ValueError):
    pass


def get_method(name: str) -> Method:
    try:
        return METHODS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise UnknownMethodError(f"unknown algorithm {name!r}; known: {known}") from None
