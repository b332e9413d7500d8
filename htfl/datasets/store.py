"""Per-client shards on disk, described by a manifest.

A *prepared* dataset is a directory::

    manifest.json        dataset, partition, seed, sizes, label counts, hashes (below)
    client-00000.npz     client 0's train_x, train_y, test_x, test_y
    client-00001.npz     ...

One file per client, so a device reads (and is sent) only its own. Shard files are zip
archives of ``.npy`` arrays (``numpy.load`` reads them) written byte-for-byte
deterministically: the same dataset, partition, seed and code give the same bytes and the
same hashes, wherever they are prepared.

The manifest lists every shard's sha256, and its ``content_sha256`` is the sha256 of the
manifest's own canonical JSON without that field and without ``created`` /
``htfl_version``: one hash that pins the data, the partition and every shard. An experiment
names it (``[data] shards_sha256``); an agent refuses a manifest whose content hash differs
and a shard whose sha256 differs from its manifest entry (:class:`ShardIntegrityError`).

Writing is atomic: :func:`write_shards` builds everything in a hidden
``.<name>.partial-*`` directory beside the output, writes the manifest last and renames the
directory into place. An interrupted or failed prepare leaves no directory under the output
name (and never a manifest next to half-written shards).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import htfl
from htfl.datasets.base import LoadedDataset
from htfl.datasets.integrity import sha256_file
from htfl.datasets.partition import PartitionSpec, partition_indices, split_train_test
from htfl.datasets.shard import ClientShard, _label_counts, split_seed

__all__ = [
    "FORMAT",
    "MANIFEST",
    "ClientEntry",
    "Manifest",
    "ManifestError",
    "ShardIntegrityError",
    "content_sha256",
    "load_shard",
    "manifest_content_sha256",
    "manifest_problems",
    "shard_file_name",
    "write_shards",
]

FORMAT = "htfl-shards/1"
MANIFEST = "manifest.json"
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
_UNHASHED = ("content_sha256", "created", "htfl_version")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ManifestError(ValueError):
    """A manifest is missing, unreadable, malformed or not the one expected."""


class ShardIntegrityError(ValueError):
    """A shard file is missing or its bytes are not the ones its manifest lists."""


def shard_file_name(client_index: int) -> str:
    return f"client-{client_index:05d}.npz"


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k not in _UNHASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def content_sha256(doc: dict[str, Any]) -> str:
    """The content hash of a manifest document (see the module docstring)."""
    return hashlib.sha256(_canonical(doc)).hexdigest()


@dataclass(frozen=True)
class ClientEntry:
    client_index: int
    file: str
    sha256: str
    bytes: int
    num_train: int
    num_test: int
    label_counts: dict[int, int]  # train
    test_label_counts: dict[int, int]
    group: str | None  # natural partition key (subject, writer, camera), else None


@dataclass(frozen=True)
class Manifest:
    """A parsed, self-consistent manifest (``content_sha256`` verified on load)."""

    path: Path
    doc: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def content_sha256(self) -> str:
        return str(self.doc["content_sha256"])

    @property
    def dataset(self) -> str:
        return str(self.doc["dataset"])

    @property
    def num_clients(self) -> int:
        return int(self.doc["num_clients"])

    @property
    def num_classes(self) -> int:
        return int(self.doc["num_classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.doc["input_shape"])

    @property
    def partition(self) -> dict[str, Any]:
        return dict(self.doc["partition"])

    @property
    def seed(self) -> int:
        return int(self.doc["seed"])

    @property
    def train_fraction(self) -> float:
        return float(self.doc["train_fraction"])

    def client(self, index: int) -> ClientEntry:
        if not 0 <= index < self.num_clients:
            raise ManifestError(
                f"{self.path}: client_index {index} is out of range: the shards were "
                f"prepared for {self.num_clients} clients (0..{self.num_clients - 1})"
            )
        raw = self.doc["clients"][index]
        return ClientEntry(
            client_index=int(raw["client_index"]),
            file=str(raw["file"]),
            sha256=str(raw["sha256"]),
            bytes=int(raw["bytes"]),
            num_train=int(raw["num_train"]),
            num_test=int(raw["num_test"]),
            label_counts={int(k): int(v) for k, v in raw["label_counts"].items()},
            test_label_counts={int(k): int(v) for k, v in raw["test_label_counts"].items()},
            group=raw.get("group"),
        )

    def clients(self) -> list[ClientEntry]:
        return [self.client(i) for i in range(self.num_clients)]

    @classmethod
    def read(cls, path: str | os.PathLike, expected_sha256: str | None = None) -> Manifest:
        """Read ``path`` (a manifest file or the directory holding ``manifest.json``).

        Raises :class:`ManifestError` if it is missing or malformed, if its recorded content
        hash does not match its content, or if ``expected_sha256`` is given and differs.
        """
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"{path}: no such manifest") from None
        except (OSError, ValueError) as err:
            raise ManifestError(f"{path}: not a readable manifest ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ManifestError(f"{path}: not an {FORMAT} manifest")
        missing = [
            k
            for k in ("dataset", "num_clients", "clients", "partition", "content_sha256")
            if k not in doc
        ]
        if missing:
            raise ManifestError(f"{path}: manifest lacks {', '.join(missing)}")
        actual = content_sha256(doc)
        if actual != doc["content_sha256"]:
            raise ManifestError(
                f"{path}: manifest content hash is {actual} but it records "
                f"{doc['content_sha256']}: the manifest was edited or damaged"
            )
        if expected_sha256 and actual != expected_sha256:
            raise ManifestError(
                f"{path}: these shards have content hash {actual}, but the experiment expects "
                f"{expected_sha256} (shards_sha256): they were prepared differently or are "
                "stale; prepare or deliver the expected ones"
            )
        if len(doc["clients"]) != int(doc["num_clients"]):
            raise ManifestError(f"{path}: num_clients does not match the client list")
        return cls(path, doc)


# --------------------------------------------------------------------------- writing


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic ``.npz``: fixed member order and timestamps, no compression."""
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
        for name in _ARRAYS:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(
                    fh, np.ascontiguousarray(arrays[name]), allow_pickle=False
                )
        zf.close()
        raw.flush()
        os.fsync(raw.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clear_stale_partials(out: Path) -> None:
    """Remove ``.<name>.partial-<pid>-*`` dirs of earlier prepares that are no longer running."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(stale.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A hidden directory beside ``out`` that becomes ``out`` only if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_partials(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --force")
    stage = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
        _fsync_dir(stage)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
        os.replace(stage, out)
        _fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def write_shards(
    loaded: LoadedDataset,
    spec: PartitionSpec,
    out: str | os.PathLike,
    *,
    num_clients: int | None = None,
    seed: int = 0,
    train_fraction: float = 0.75,
    force: bool = False,
) -> Manifest:
    """Partition ``loaded`` and write one shard per client plus the manifest into ``out``.

    ``num_clients`` may be omitted for ``natural`` (one client per group). The per-client
    train/test split uses the same seeds as :func:`htfl.datasets.client_shard`, so a shard
    read back equals the in-memory shard for the same arguments.
    """
    out = Path(out)
    if num_clients is None:
        if spec.kind != "natural" or loaded.groups is None:
            raise ValueError("num_clients is required unless the partition is natural")
        num_clients = int(np.unique(loaded.groups).size)
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1); got {train_fraction!r}")
    parts = partition_indices(loaded.y, num_clients, spec, seed, groups=loaded.groups)
    group_keys = None
    if spec.kind == "natural" and loaded.groups is not None:
        group_keys = np.unique(loaded.groups)
    clients: list[dict[str, Any]] = []
    with _staging(out, force) as stage:
        for index, part in enumerate(parts):
            train, test = split_train_test(part, loaded.y, train_fraction, split_seed(seed, index))
            name = shard_file_name(index)
            path = stage / name
            _write_npz(
                path,
                {
                    "train_x": loaded.x[train],
                    "train_y": loaded.y[train],
                    "test_x": loaded.x[test],
                    "test_y": loaded.y[test],
                },
            )
            clients.append(
                {
                    "client_index": index,
                    "file": name,
                    "sha256": sha256_file(path),
                    "bytes": path.stat().st_size,
                    "num_train": int(train.size),
                    "num_test": int(test.size),
                    "label_counts": _str_keys(_label_counts(loaded.y[train])),
                    "test_label_counts": _str_keys(_label_counts(loaded.y[test])),
                    "group": None if group_keys is None else str(group_keys[index]),
                }
            )
        provenance = loaded.provenance or {}
        doc: dict[str, Any] = {
            "format": FORMAT,
            "dataset": loaded.name,
            "num_classes": int(loaded.num_classes),
            "input_shape": [int(v) for v in loaded.input_shape],
            "num_samples": int(loaded.num_samples),
            "source": provenance.get("files", []),
            "loader_options": provenance.get("options", {}),
            "partition": spec.relevant(),
            "num_clients": int(num_clients),
            "seed": int(seed),
            "train_fraction": float(train_fraction),
            "clients": clients,
        }
        doc["content_sha256"] = content_sha256(doc)
        doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc["htfl_version"] = htfl.__version__
        (stage / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Manifest.read(out / MANIFEST)


def _str_keys(counts: dict[int, int]) -> dict[str, int]:
    return {str(k): v for k, v in counts.items()}


# --------------------------------------------------------------------------- reading


def load_shard(
    where: str | os.PathLike | Manifest,
    client_index: int,
    expected_sha256: str | None = None,
    *,
    verify: bool = True,
) -> ClientShard:
    """Client ``client_index``'s shard from a prepared directory (or its manifest).

    Reads the manifest and that one client's file, nothing else. With ``verify`` (the
    default) the file's sha256 must equal the manifest entry, and with ``expected_sha256``
    the manifest's content hash must equal it; otherwise :class:`ShardIntegrityError` /
    :class:`ManifestError` say which file, which hash was expected and what to do.
    """
    manifest = (
        where
        if isinstance(where, Manifest)
        else Manifest.read(where, expected_sha256=expected_sha256)
    )
    if expected_sha256 and manifest.content_sha256 != expected_sha256:
        raise ManifestError(
            f"{manifest.path}: content hash {manifest.content_sha256} is not the expected "
            f"{expected_sha256}"
        )
    entry = manifest.client(int(client_index))
    path = manifest.directory / entry.file
    if not path.is_file():
        raise ShardIntegrityError(
            f"{path}: client {entry.client_index}'s shard is missing (the manifest lists it "
            f"with sha256 {entry.sha256})"
        )
    if verify:
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ShardIntegrityError(
                f"{path}: client {entry.client_index}'s shard has sha256 {actual} but the "
                f"manifest (content {manifest.content_sha256[:16]}) expects {entry.sha256}; "
                "the file is corrupt or from another preparation: delete it and fetch or "
                "prepare it again"
            )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ShardIntegrityError(f"{path}: not a readable shard ({err})") from None
    if arrays["train_y"].size != entry.num_train or arrays["test_y"].size != entry.num_test:
        raise ShardIntegrityError(f"{path}: sizes differ from the manifest entry")
    return ClientShard(
        client_index=entry.client_index,
        train_x=arrays["train_x"],
        train_y=arrays["train_y"],
        test_x=arrays["test_x"],
        test_y=arrays["test_y"],
        num_classes=manifest.num_classes,
        input_shape=manifest.input_shape,
    )


# --------------------------------------------------------------------------- experiments


def manifest_content_sha256(path: str | os.PathLike) -> str:
    """The content hash of the manifest at ``path``, or "" if it cannot be read."""
    try:
        return Manifest.read(path).content_sha256
    except ManifestError:
        return ""


def manifest_problems(
    path: str | os.PathLike,
    expected_sha256: str,
    dataset: str,
    spec: PartitionSpec,
    train_fraction: float,
) -> list[str]:
    """How an experiment's ``[data]`` disagrees with the prepared shards it names.

    Each message starts with the ``[data]`` key at fault (the experiment validator
    prefixes the section).
    """
    try:
        manifest = Manifest.read(path, expected_sha256=expected_sha256 or None)
    except ManifestError as err:
        return [f"manifest: {err}"]
    out = []
    if manifest.dataset != dataset:
        out.append(f"dataset: {dataset!r} but the manifest holds {manifest.dataset!r}")
    prepared = manifest.partition
    if prepared.get("kind") != spec.kind:
        out.append(f"partition: {spec.kind!r} but the shards are {prepared.get('kind')!r}")
    else:
        for key, value in spec.relevant().items():
            if key != "kind" and prepared.get(key) != value:
                out.append(
                    f"{key}: {value!r} but the shards were prepared with {prepared.get(key)!r}"
                )
    # an imported split (htfl data import-pfllib) was made elsewhere: its fraction is a record
    if spec.kind != "imported" and manifest.train_fraction != float(train_fraction):
        out.append(
            f"train_fraction: {train_fraction} but the shards were prepared with "
            f"{manifest.train_fraction}"
        )
    return out
