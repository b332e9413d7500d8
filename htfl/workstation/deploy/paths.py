"""Where the Ansible tree is: ``$HTFL_DEPLOY_DIR``, else ``deploy/`` beside the htfl package."""

from __future__ import annotations

import os
from pathlib import Path

PLAYBOOKS = ("provision", "start", "stop", "status", "logs", "update", "facts")


class DeployTreeError(RuntimeError):
    pass


def source_root() -> Path:
    """The checkout htfl is imported from (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parents[3]


def deploy_dir() -> Path:
    env = os.environ.get("HTFL_DEPLOY_DIR")
    candidates = [Path(env)] if env else [source_root() / "deploy", Path.cwd() / "deploy"]
    for path in candidates:
        if (path / "ansible.cfg").is_file() and (path / "provision.yml").is_file():
            return path.resolve()
    raise DeployTreeError(
        "cannot find the Ansible tree (deploy/ansible.cfg): run from an htfl checkout "
        "or set HTFL_DEPLOY_DIR"
    )


def default_inventory() -> Path:
    env = os.environ.get("HTFL_INVENTORY")
    return Path(env) if env else deploy_dir() / "inventory" / "testbed.yml"
