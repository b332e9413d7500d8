"""The ServerApp's checkpoint: what `htfl run --resume` needs to continue an experiment.

Written after every completed round, next to the results (``checkpoint.pt``), atomically: a
reader sees the previous round's checkpoint or this one, never half of one. It holds the
method's server state (the ``ServerSide`` object as it is: its arrays, optimizers and random
generators), the round number, the selection (device name, class, client index, architecture)
and the data assignment (the ``train.setup`` base config every device was given), so a resumed
run selects the same devices by name, sets them up with the same data, and goes on with the
next round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from htfl.algorithms.base import ServerSide

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class Checkpoint:
    round: int
    server: ServerSide
    #: one dict per participant: device, device_class, client_index, arch
    selection: list[dict[str, Any]]
    #: the train.setup config common to every device (data, partition, method, seed)
    setup: dict[str, Any]
    #: the per-round progress events so far (final and best accuracy of a resumed run)
    history: list[dict[str, Any]]


def save(directory: Path, checkpoint: Checkpoint) -> None:
    path = directory / CHECKPOINT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint.__dict__, tmp)
    os.replace(tmp, path)


def load(directory: Path) -> Checkpoint:
    """The last checkpoint in ``directory``; FileNotFoundError if there is none."""
    # The file is the ServerApp's own, next to its results: full pickles are expected
    # (a method's state is arbitrary Python), so weights_only does not apply.
    data = torch.load(directory / CHECKPOINT_FILE, weights_only=False)
    return Checkpoint(**data)


def load_for_resume(directory: str | Path, flag: object) -> Checkpoint | None:
    """The checkpoint to resume from when the run config asks for it (``htfl-resume``)."""
    if str(flag or "").lower() not in ("1", "true"):
        return None
    return load(Path(directory))


def last_round(directory: Path) -> int:
    """The last round the checkpoint in ``directory`` completed; 0 without one."""
    try:
        return load(directory).round
    except (OSError, EOFError, RuntimeError, TypeError, KeyError):
        return 0
