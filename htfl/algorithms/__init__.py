"""HtFL methods, one module each; this registry is how an experiment file names them."""

from __future__ import annotations

from htfl.algorithms import (
    fd,
    fedavg,
    fedgen,
    fedgh,
    fedkd,
    fedktl,
    fedl2g,
    fedmrl,
    fedproto,
    fedtgp,
    fml,
    lg_fedavg,
    local,
)
from htfl.algorithms.base import Method

_MODULES = (local, fedavg, fedproto, fedtgp, fd, fml, lg_fedavg, fedgen, fedkd, fedgh, fedmrl)
METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (*_MODULES, fedl2g, fedktl)}


class UnknownMethodError(ValueError):
    pass


def get_method(name: str) -> Method:
    try:
        return METHODS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise UnknownMethodError(f"unknown algorithm {name!r}; known: {known}") from None
