"""Where a device trains: device placement, mixed precision and what the accelerator is.

One place resolves ``[training] device`` / ``precision`` (and a device class's inventory
setting) into a ``torch.device`` and an autocast context, so every method's client side and
every server side that trains places its tensors the same way. With ``device = "auto"`` on a
machine without CUDA everything stays on the CPU in fp32, bit for bit as before this module
existed (``tests/test_accelerator.py`` pins it). ``cuda_facts()`` is what a device tells the
server in ``query.hello`` and what ``htfl deploy facts`` prints per board.

Only torch is imported here (no flwr, no pydantic), so the trainer side can use it in the
vendor's interpreter on a Jetson.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class AcceleratorError(RuntimeError):
    """The requested device cannot be used here (e.g. ``cuda`` without CUDA)."""


def choose(experiment: str, device_setting: str) -> str:
    """The device a client trains on: the experiment's choice unless it says ``auto``, then the
    device class's inventory setting (``htfl agent --device``), itself ``auto`` by default."""
    return experiment if experiment != "auto" else device_setting


def resolve_device(requested: str, where: str = "this device") -> torch.device:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an
    :class:`AcceleratorError` naming ``where``."""
    if requested not in DEVICES:
        raise AcceleratorError(f"{where}: unknown device {requested!r} (expected {DEVICES})")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise AcceleratorError(
            f'{where}: device = "cuda" but torch {torch.__version__} sees no CUDA GPU '
            f"(built for CUDA {torch.version.cuda or 'none'})"
        )
    return torch.device(requested)


def server_device() -> torch.device:
    """Where the ServerApp trains a method's server side: the workstation's GPU when it has one."""
    return resolve_device("auto")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's mixed-precision context; fp32 is no context at all (same numbers)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> Any:
    """Loss scaling for fp16 (its small exponent underflows gradients); off otherwise.
    (NVIDIA's Jetson torch 2.1 predates ``torch.amp.GradScaler``: its CUDA one is used there.)"""
    enabled = precision == "fp16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA (or other accelerator) allocation failure, as torch raises it."""
    # torch.OutOfMemoryError from torch 2.5; NVIDIA's Jetson builds (2.1, 2.4) have the CUDA one
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom)


def release_cached_memory(device: torch.device) -> None:
    """Give the caching allocator's free blocks back after an out-of-memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def cuda_facts() -> dict[str, Any]:
    """What this machine's torch can train on: build, CUDA/cuDNN versions, the GPU and memory.

    Plain values only (they travel in ``query.hello`` and land in ``devices.json``).
    """
    available = torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    facts: dict[str, Any] = {
        "torch_build": torch.__version__,
        "torch_cuda": torch.version.cuda or "",
        "cudnn": str(cudnn) if cudnn else "",
        "cuda_available": available,
        "accelerator": "",
        "accelerator_memory_bytes": 0,
    }
    if available:
        props = torch.cuda.get_device_properties(0)
        facts["accelerator"] = props.name
        facts["accelerator_memory_bytes"] = int(props.total_memory)
    return facts


def cuda_smoke() -> str:
    """``yes`` when a tiny forward/backward runs on the GPU, ``no`` on a machine without one,
    else ``error: ...``. What ``htfl deploy facts`` shows per board in its ``cuda`` column."""
    if not torch.cuda.is_available():
        return "no"
    try:
        model = torch.nn.Linear(8, 2).cuda()
        x = torch.randn(4, 8, device="cuda")
        model(x).square().mean().backward()
        torch.cuda.synchronize()
        assert model.weight.grad is not None
        return "yes"
    except Exception as err:  # reported in the facts table, never a crash
        return f"error: {type(err).__name__}: {err}"[:200]
