"""Model zoo: heterogeneous architectures sharing a ``d``-dimensional feature space.

Every model is a :class:`SplitModel` (feature extractor -> ``d`` features -> linear
head), which is the contract heterogeneous FL algorithms rely on.
"""

from htfl.models.base import IncompatibleInputError, SplitModel
from htfl.models.zoo import (
    ARCHITECTURES,
    UnknownArchitectureError,
    build_model,
    count_parameters,
)

__all__ = [
    "ARCHITECTURES",
    "IncompatibleInputError",
    "SplitModel",
    "UnknownArchitectureError",
    "build_model",
    "count_parameters",
]
