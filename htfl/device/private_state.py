"""The agent's private model and optimizer state on disk, per experiment.

HtFL state never leaves the device, so when an agent restarts (power loss, an update) the
only copy of its private model is the one it wrote itself. After every trained round the
agent writes the model, the modules trained beside it and the optimizer state to
``<dir>/<experiment>/<device>-client<index>-<arch>.pt`` atomically (a power cut leaves the
previous round's file, never half a file), and keeps the state of at most
:data:`KEEP_EXPERIMENTS` experiments (the oldest are deleted): bounded on a board's small disk.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import torch

from htfl.algorithms.base import ClientSide

log = logging.getLogger(__name__)

#: How many experiments' private states an agent keeps on disk.
KEEP_EXPERIMENTS = 3


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "_"


class PrivateStateStore:
    def __init__(self, directory: Path, device_name: str) -> None:
        self.dir = directory
        self.device = _safe(device_name)

    def path(self, experiment_id: str, client_index: int, arch: str) -> Path:
        name = f"{self.device}-client{client_index}-{_safe(arch)}.pt"
        return self.dir / _safe(experiment_id) / name

    def save(self, path: Path, client: ClientSide) -> None:
        state = {
            "round": client.round,
            "model": client.model.state_dict(),
            "extra_modules": [m.state_dict() for m in client.extra_modules],
            "optimizer": client.optimizer.state_dict(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        self._prune(keep=path.parent)

    def restore(self, path: Path, client: ClientSide) -> int:
        """Load the state saved at ``path`` into ``client``; return its round (0: none)."""
        if not path.is_file():
            return 0
        try:
            state = torch.load(path, weights_only=True)
            client.model.load_state_dict(state["model"])
            for module, saved in zip(client.extra_modules, state["extra_modules"], strict=True):
                module.load_state_dict(saved)
            client.optimizer.load_state_dict(state["optimizer"])
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            # a state of another shape (the experiment changed): start afresh, and say so
            log.warning("private state %s not restored (%s); the model starts afresh", path, err)
            return 0
        client.round = int(state["round"])
        return client.round

    def _prune(self, keep: Path) -> None:
        experiments = sorted(
            (d for d in self.dir.iterdir() if d.is_dir() and d != keep),
            key=lambda d: d.stat().st_mtime,
            reverse=True,
        )
        for old in experiments[KEEP_EXPERIMENTS - 1 :]:
            shutil.rmtree(old, ignore_errors=True)
