"""Getting each device its own shard: HTTP from the server, or files synced by Ansible.

``[data] delivery`` in the experiment file says how (and is recorded with the results):

``build``
    No prepared shards: every agent loads the dataset itself and cuts its shard in memory
    (:func:`htfl.datasets.client_shard`; deterministic, fine for the packaged digits).
``http``
    The ServerApp serves the prepared directory
    (:class:`htfl.workstation.datasets.delivery.ShardServer`, stdlib ``http.server`` with
    ``Range`` support). The setup message carries the URL and the manifest's content hash;
    the agent downloads ``manifest.json`` and only its own
    ``client-NNNNN.npz`` into ``<data dir>/shards/<hash[:16]>/``, resuming a partial file,
    verifies both, and reuses them next time without any transfer.
``ansible``
    The files are already in ``<data dir>/shards/<hash[:16]>/`` on the device (the
    ``datasets`` role synced what
    :func:`htfl.workstation.datasets.delivery.stage_for_ansible` laid out); the agent only
    verifies them.

This module is the device's half and ships to every device; the workstation's half
(serving, staging, recording the delivery) is :mod:`htfl.workstation.datasets.delivery`.

Why no extra library for HTTP: one thread per connection from ``ThreadingHTTPServer`` is
plenty for tens of devices fetching a few MB each, and ``urllib`` on the device side keeps
the agent's dependencies what they were (boards and Termux phones install nothing new).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htfl.datasets.base import data_dir as default_data_dir
from htfl.datasets.integrity import Checksum, ChecksumError, download
from htfl.datasets.partition import PartitionSpec
from htfl.datasets.shard import ClientShard, client_shard
from htfl.datasets.store import (
    MANIFEST,
    Manifest,
    ManifestError,
    ShardIntegrityError,
    load_shard,
)

__all__ = ["cache_dir", "fetch_client_shard", "obtain_client_shard"]

log = logging.getLogger(__name__)


def cache_dir(content_sha256: str, root: Path | None = None) -> Path:
    """Where a device keeps (or Ansible puts) the shards of one preparation, under the data
    directory ``root`` (default: :func:`htfl.datasets.base.data_dir`, i.e. ``$HTFL_DATA_DIR``)."""
    return (root or default_data_dir()) / "shards" / content_sha256[:16]


# --------------------------------------------------------------------------- agent side


def fetch_client_shard(
    base_url: str,
    client_index: int,
    content_sha256: str,
    directory: Path,
    *,
    num_clients: int | None = None,
    attempts: int = 5,
    timeout: float = 30.0,
) -> Manifest:
    """Download the manifest and client ``client_index``'s shard into ``directory``.

    The manifest is fetched only if ``directory`` has none with the expected content hash;
    the shard only if it is missing or its sha256 differs (a ``.part`` is resumed).
    Returns the verified manifest. Raises :class:`ManifestError` (also when the manifest
    was prepared for other than ``num_clients`` clients, before any shard is fetched) or
    :class:`ShardIntegrityError`, naming the URL, the file and the expected hash.
    """
    directory.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    manifest_path = directory / MANIFEST
    manifest = None
    if manifest_path.is_file():
        try:
            manifest = Manifest.read(manifest_path, expected_sha256=content_sha256)
        except ManifestError as err:
            log.warning("cached manifest unusable (%s); fetching it again", err)
            manifest_path.unlink()
    if manifest is None:
        # The manifest has no external checksum: it verifies itself (content_sha256).
        download(base + MANIFEST, manifest_path, None, attempts=attempts, timeout=timeout)
        try:
            manifest = Manifest.read(manifest_path, expected_sha256=content_sha256)
        except ManifestError:
            manifest_path.unlink(missing_ok=True)
            raise
    _check_clients(manifest, num_clients)
    entry = manifest.client(client_index)
    try:
        result = download(
            base + urllib.parse.quote(entry.file),
            directory / entry.file,
            Checksum("sha256", entry.sha256),
            attempts=attempts,
            timeout=timeout,
        )
    except ChecksumError as err:
        raise ShardIntegrityError(
            f"{base}{entry.file}: client {client_index}'s shard as served does not match its "
            f"manifest: {err}"
        ) from None
    log.info(
        "shard %s: %s (%d bytes fetched%s)",
        entry.file,
        "cached" if result.cached else "downloaded",
        result.bytes_downloaded,
        f", resumed at {result.resumed_from}" if result.resumed_from else "",
    )
    return manifest


def obtain_client_shard(cfg: Mapping[str, Any], data_dir: Path | None = None) -> ClientShard:
    """The shard a ``train.setup`` message asks for, however the experiment delivers it.

    Prepared shards are fetched to (or found in) ``data_dir``, the agent's ``--data-dir``
    (default: :func:`htfl.datasets.base.data_dir`).
    """
    shards = dict(cfg.get("shards") or {})
    delivery = shards.get("delivery", "build")
    index = int(cfg["client_index"])
    if delivery == "build":
        return client_shard(
            cfg["dataset"],
            PartitionSpec(**cfg["partition"]),
            int(cfg["num_clients"]),
            index,
            int(cfg["seed"]),
            float(cfg["train_fraction"]),
        )
    expected = str(shards["content_sha256"])
    directory = cache_dir(expected, data_dir)
    num_clients = int(cfg["num_clients"])
    if delivery == "http":
        manifest = fetch_client_shard(
            str(shards["url"]), index, expected, directory, num_clients=num_clients
        )
    elif delivery == "ansible":
        if not (directory / MANIFEST).is_file():
            raise ShardIntegrityError(
                f"{directory}: no {MANIFEST} here; ansible delivery expects the shards of "
                f"preparation {expected[:16]} in this device's data directory "
                "(htfl data stage, then htfl deploy provision --datasets DIR)"
            )
        manifest = Manifest.read(directory, expected_sha256=expected)
        _check_clients(manifest, num_clients)
    else:
        raise ValueError(f"unknown shard delivery {delivery!r}")
    return load_shard(manifest, index)


def _check_clients(manifest: Manifest, num_clients: int | None) -> None:
    if num_clients is not None and manifest.num_clients != num_clients:
        raise ManifestError(
            f"{manifest.path}: prepared for {manifest.num_clients} clients but the experiment "
            f"has {num_clients}"
        )
