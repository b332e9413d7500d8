"""Moving a module's tensors in and out of a :data:`Payload` (named numpy arrays)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from htfl.algorithms.base import Payload


def module_payload(module: nn.Module, prefix: str = "", buffers: bool = True) -> Payload:
    """The module's state (parameters, and buffers unless ``buffers=False``) as named arrays."""
    state = module.state_dict() if buffers else dict(module.named_parameters())
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in state.items()}


def load_module_payload(module: nn.Module, payload: Payload, prefix: str = "") -> bool:
    """Load the entries named ``prefix...`` into ``module``; False if the payload has none.

    Every parameter must be present; buffers missing from the payload keep their value.
    """
    own = {k[len(prefix) :]: v for k, v in payload.items() if k.startswith(prefix)}
    if not own:
        return False
    state = module.state_dict()
    missing = [name for name, _ in module.named_parameters() if name not in own]
    unknown = [k for k in own if k not in state]
    if missing or unknown:
        raise ValueError(
            f"payload does not fit the module: missing {missing[:5]}, unknown {unknown[:5]}"
        )
    with torch.no_grad():
        for name, value in own.items():
            target = state[name]
            # reshape: the wire turns a 0-d array (e.g. num_batches_tracked) into shape (1,)
            target.copy_(torch.from_numpy(np.array(value)).reshape(target.shape).to(target.dtype))
    return True


def scalar(value: np.ndarray) -> float:
    """The number in a one-element array (0-d arrays arrive with shape (1,) after the wire)."""
    return float(np.asarray(value).reshape(-1)[0])


def head_payload(head: nn.Module, prefix: str = "head.") -> Payload:
    return module_payload(head, prefix)


def seeded_head(feature_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """The head a server hands out before any client has uploaded one (same for a seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(feature_dim, num_classes)


def linear_bytes(in_features: int, out_features: int, bias: bool = True) -> int:
    """float32 bytes of a linear layer's weight (and bias)."""
    return 4 * (in_features * out_features + (out_features if bias else 0))
