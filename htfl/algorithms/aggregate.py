"""Server-side averaging shared by several methods: pure functions on numpy arrays."""

from __future__ import annotations

import numpy as np

from htfl.algorithms.base import Payload


def weighted_average(payloads: list[Payload], weights: list[float]) -> Payload:
    """Weighted mean of each named array (integer buffers keep their dtype).

    Every payload must carry the same names; ``weights`` need not sum to one.
    """
    total = float(sum(weights))
    if not payloads or total <= 0:
        raise ValueError("weighted_average needs at least one payload and a positive total weight")
    out: Payload = {}
    for key in payloads[0]:
        acc = np.zeros(payloads[0][key].shape, np.float64)
        for p, w in zip(payloads, weights, strict=True):
            acc += w * p[key].astype(np.float64)
        out[key] = (acc / total).astype(payloads[0][key].dtype)
    return out


def mean_over_holders(
    values: list[np.ndarray], present: list[np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the unweighted mean over the clients that hold it.

    ``values[i]`` is client i's ``[num_classes, ...]`` array and ``present[i]`` says which rows
    it holds (any value > 0). Returns the means (zeros for a class nobody holds) and, per class,
    how many clients held it. Every holder counts once, however many samples it has (FD's and
    FedL2G's server rule; FedProto's sample-weighted rule is ``prototypes.weighted_prototypes``).
    """
    if not values:
        raise ValueError("mean_over_holders needs at least one client")
    shape = (num_classes, *values[0].shape[1:])
    total = np.zeros(shape, dtype=np.float64)
    holders = np.zeros(num_classes, dtype=np.float64)
    for value, mask in zip(values, present, strict=True):
        held = np.asarray(mask)[:num_classes] > 0
        total[held] += value[:num_classes][held]
        holders += held
    means = np.zeros_like(total)
    means[holders > 0] = total[holders > 0] / holders[holders > 0].reshape(
        -1, *[1] * (total.ndim - 1)
    )
    return means.astype(np.float32), holders.astype(np.float32)
