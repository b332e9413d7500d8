"""Upstream archives: where each dataset is published, its checksums, and how to read it.

:data:`UPSTREAM` is the table of published files. A loader asks :func:`resolve_files` for
its archive(s); the answer is a verified local path, found in this order:

1. ``source`` — a file (or, for multi-file datasets such as MNIST, a directory) the user
   names, e.g. ``htfl data prepare har --source ./UCI_HAR_Dataset.zip``;
2. ``<data dir>/archives/<dataset>/<file>`` from an earlier download;
3. a download from the published URLs, when ``download=True`` (resumable; verified before
   it takes its final name).

Every path is checked against the table's checksum, or against ``expected`` when the caller
overrides it (tests pass the checksum of the fixture they built). A mismatch raises
:class:`~htfl.datasets.integrity.ChecksumError` naming the file and the expected checksum;
nothing is extracted or written on the way. Datasets whose publishers give no checksum, and
for which none is pinned here, need an explicit ``expected`` (the error prints the file's
sha256 so the user can check it and pass it).

Archives are read in place with :class:`Archive` (zip or tar, optionally nested one level,
as UCI now wraps its zips in another zip): nothing is extracted to disk.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from htfl.datasets.base import LoadedDataset, data_dir
from htfl.datasets.integrity import Checksum, ChecksumError, download, verify_file

__all__ = [
    "UPSTREAM",
    "Archive",
    "ArchiveLoader",
    "ChecksumError",
    "ResolvedFile",
    "UnverifiedSourceError",
    "UpstreamFile",
    "data_dir",
    "keep_top_groups",
    "layout_error",
    "resolve_files",
]


@dataclass(frozen=True)
class UpstreamFile:
    """One published file. ``checksums`` are alternatives (any one matching is accepted)."""

    name: str
    urls: tuple[str, ...]
    checksums: tuple[Checksum, ...]
    note: str = ""


def _c(*texts: str) -> tuple[Checksum, ...]:
    return tuple(Checksum.parse(t) for t in texts)


_UCI = "https://archive.ics.uci.edu"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: Published files per dataset, with the checksums they are verified against. Sources: the
#: MD5s CIFAR's and MNIST's publishers list (as torchvision uses them); for UCI HAR the
#: sha256 of the UCI download and of the zip inside it (UCI publishes none; these are the
#: values widely pinned for those exact byte counts, 61,005,872 and 60,999,314).
UPSTREAM: dict[str, tuple[UpstreamFile, ...]] = {
    "har": (
        UpstreamFile(
            "UCI HAR Dataset.zip",
            (
                f"{_UCI}/static/public/240/human+activity+recognition+using+smartphones.zip",
                f"{_UCI}/ml/machine-learning-databases/00240/UCI%20HAR%20Dataset.zip",
            ),
            _c(
                "sha256:c00b803081a5c797cd5e4b83700a9810b38d53d9d84e01917e090e1fdbc81031",
                "sha256:2045e435c955214b38145fb5fa00776c72814f01b203fec405152dac7d5bfeb0",
            ),
            "either the UCI download (a zip holding 'UCI HAR Dataset.zip') or that inner zip",
        ),
    ),
    "pamap2": (
        UpstreamFile(
            "PAMAP2_Dataset.zip",
            (
                f"{_UCI}/static/public/231/pamap2+physical+activity+monitoring.zip",
                f"{_UCI}/ml/machine-learning-databases/00231/PAMAP2_Dataset.zip",
            ),
            (),
            "UCI publishes no checksum and none is pinned here: pass --expected-sha256",
        ),
    ),
    "cifar10": (
        UpstreamFile(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            _c("md5:c58f30108f718f92721af3b95e74349a"),
        ),
    ),
    "cifar100": (
        UpstreamFile(
            "cifar-100-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
            _c("md5:eb9058c3a382ffc7106e4002c42a8d85"),
        ),
    ),
    "mnist": tuple(
        UpstreamFile(name, (_MNIST + name,), _c(md5))
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"),
        )
    ),
    "fashion-mnist": tuple(
        UpstreamFile(name, (_FASHION + name,), _c(md5))
        for name, md5 in (
            ("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
        )
    ),
    "femnist": (
        UpstreamFile(
            "femnist-leaf.zip",
            (),
            (),
            "LEAF generates FEMNIST's json from NIST SD19 (no published archive): zip or tar "
            "LEAF's data/femnist/data directory and pass --expected-sha256",
        ),
    ),
    "iwildcam": (
        UpstreamFile(
            "iwildcam_v2.0.tar.gz",
            (
                "https://worksheets.codalab.org/rest/bundles/"
                "0x6313da2b204647e79a14b468131fcd64/contents/blob/",
            ),
            (),
            "WILDS iWildCam2020 v2.0 (about 12 GB, no published checksum): pass --expected-sha256",
        ),
    ),
}


class UnverifiedSourceError(ValueError):
    """No checksum is known for a file and the caller did not give one."""


@dataclass(frozen=True)
class ResolvedFile:
    """A verified local copy of one upstream file."""

    name: str
    path: Path
    sha256: str

    def record(self) -> dict[str, str]:
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256}


def _expected_for(
    upstream: UpstreamFile, single: bool, expected: str | Mapping[str, str] | None
) -> tuple[Checksum, ...]:
    if expected is None:
        return upstream.checksums
    if isinstance(expected, str):
        if not single:
            raise ValueError(
                f"{upstream.name}: this dataset has several files; give expected checksums "
                "as NAME=HEX for each"
            )
        return (Checksum.parse(expected),)
    if upstream.name in expected:
        return (Checksum.parse(expected[upstream.name]),)
    return upstream.checksums


def resolve_files(
    dataset: str,
    source: str | os.PathLike | None = None,
    expected: str | Mapping[str, str] | None = None,
    *,
    download_missing: bool = False,
    root: Path | None = None,
) -> list[ResolvedFile]:
    """Verified local paths of ``dataset``'s upstream files (see the module docstring)."""
    files = UPSTREAM[dataset]
    single = len(files) == 1
    root = (root or data_dir()) / "archives" / dataset
    out: list[ResolvedFile] = []
    for upstream in files:
        wanted = _expected_for(upstream, single, expected)
        path = _locate(dataset, upstream, source, single, root, wanted, download_missing)
        if not wanted:
            from htfl.datasets.integrity import sha256_file

            raise UnverifiedSourceError(
                f"{path}: no checksum is known for {dataset}'s {upstream.name!r} "
                f"({upstream.note or 'none published'}); its sha256 is {sha256_file(path)}: "
                "check it and pass it with --expected-sha256 (expected_sha256=...)"
            )
        digests = verify_file(path, wanted)
        out.append(ResolvedFile(upstream.name, path, digests["sha256"]))
    return out


def _locate(
    dataset: str,
    upstream: UpstreamFile,
    source: str | os.PathLike | None,
    single: bool,
    root: Path,
    wanted: tuple[Checksum, ...],
    download_missing: bool,
) -> Path:
    if source is not None:
        src = Path(source).expanduser()
        if src.is_dir():
            path = src / upstream.name
            if not path.is_file():
                raise FileNotFoundError(f"{src}: {upstream.name} not found in this directory")
            return path
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no such file or directory")
        if not single:
            raise ValueError(
                f"{dataset} has {len(UPSTREAM[dataset])} files "
                f"({', '.join(u.name for u in UPSTREAM[dataset])}): give the directory "
                "holding them as the source"
            )
        return src
    cached = root / upstream.name
    if cached.is_file():
        return cached
    if download_missing and upstream.urls:
        if not wanted:
            raise UnverifiedSourceError(
                f"{dataset}: refusing to download {upstream.name} without a checksum to verify "
                "it against; pass --expected-sha256"
            )
        return download(upstream.urls, cached, wanted).path
    how = "or pass --download" if upstream.urls else f"({upstream.note})"
    raise FileNotFoundError(
        f"{dataset}: {upstream.name} is not in {root}; name a local copy with --source {how}"
    )


# --------------------------------------------------------------------------- archives


@dataclass
class Archive:
    """Read members of a zip or tar archive (any compression tarfile knows) in place.

    Member names are normalised to forward slashes without a leading ``./``. A zip that
    contains exactly one further ``*.zip`` member and nothing else of interest (UCI's
    downloads) can be opened with :meth:`nested`.
    """

    path: Path
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)
    _fileobj: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike, fileobj: IO[bytes] | None = None) -> Archive:
        path = Path(path)
        target = fileobj if fileobj is not None else path
        if zipfile.is_zipfile(target):
            if fileobj is not None:
                fileobj.seek(0)
            return cls(path, zipfile.ZipFile(target), fileobj)
        if fileobj is not None:
            fileobj.seek(0)
        try:
            with tarfile.open(path if fileobj is None else None, "r:*", fileobj=fileobj):
                pass
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{path}: not a zip or tar archive ({err})") from None
        return cls(path, None, fileobj)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _norm(name: str) -> str:
        name = name.replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        return name

    def _tar(self) -> tarfile.TarFile:
        if self._fileobj is not None:
            self._fileobj.seek(0)
            return tarfile.open(None, "r:*", fileobj=self._fileobj)
        return tarfile.open(self.path, "r:*")

    def names(self) -> list[str]:
        """Every regular file's name."""
        if self._zip is not None:
            return [self._norm(i.filename) for i in self._zip.infolist() if not i.is_dir()]
        with self._tar() as tar:
            return [self._norm(m.name) for m in tar if m.isfile()]

    def iter_members(self, want: Callable[[str], bool]) -> Generator[tuple[str, bytes], None, None]:
        """``(name, bytes)`` of every file for which ``want(name)``, in archive order.

        One sequential pass: cheap for compressed tars, which cannot seek.
        """
        if self._zip is not None:
            for info in self._zip.infolist():
                name = self._norm(info.filename)
                if not info.is_dir() and want(name):
                    yield name, self._zip.read(info)
            return
        with self._tar() as tar:
            for member in tar:
                name = self._norm(member.name)
                if member.isfile() and want(name):
                    fh = tar.extractfile(member)
                    if fh is None:
                        continue
                    yield name, fh.read()

    def read_all(self, names: Sequence[str]) -> dict[str, bytes]:
        """Bytes of each named member; KeyError naming the archive and the missing ones."""
        wanted = set(names)
        found = dict(self.iter_members(lambda n: n in wanted))
        missing = sorted(wanted - set(found))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise KeyError(f"{self.path}: not in the archive (layout changed?): {shown}")
        return found

    def nested(self, suffix: str = ".zip") -> Archive | None:
        """The archive inside this one (a member ending in ``suffix``), or None if none.

        The inner archive is held in memory (UCI's inner zips are tens of MB).
        """
        names = [n for n in self.names() if n.endswith(suffix) and not n.startswith("__MACOSX")]
        if len(names) != 1:
            return None
        (name,) = names
        data = dict(self.iter_members(lambda n: n == name))[name]
        return Archive.open(Path(f"{self.path}!{name}"), io.BytesIO(data))


def layout_error(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what} (is this the published archive?)")


# --------------------------------------------------------------------------- loaders


class ArchiveLoader:
    """Base of loaders that read a published archive (see :func:`resolve_files`).

    Subclasses set ``name`` and implement :meth:`parse`; their own options (window length,
    image size, class subset ...) are keyword arguments recorded by :meth:`options`. The
    registry holds one instance per dataset with no ``source`` (it looks in the data
    directory); ``htfl data prepare`` builds one with the user's ``source``.
    """

    name = ""

    def __init__(
        self,
        source: str | os.PathLike | None = None,
        expected_sha256: str | Mapping[str, str] | None = None,
        download: bool = False,
        root: str | os.PathLike | None = None,
    ) -> None:
        self.source = source
        self.expected_sha256 = expected_sha256
        self.download = download
        self.root = Path(root) if root is not None else None

    def options(self) -> dict:
        """The loader's own options (recorded in a shard manifest)."""
        return {}

    def resolve(self) -> list[ResolvedFile]:
        return resolve_files(
            self.name,
            self.source,
            self.expected_sha256,
            download_missing=self.download,
            root=self.root,
        )

    def parse(self, files: list[ResolvedFile]) -> LoadedDataset:
        raise NotImplementedError

    def load(self) -> LoadedDataset:
        files = self.resolve()
        loaded = self.parse(files)
        return dataclasses.replace(
            loaded,
            provenance={"files": [f.record() for f in files], "options": self.options()},
        )


def keep_top_groups(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, top: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``top`` groups with the most samples (ties: smaller key first)."""
    if top is None:
        return x, y, groups
    keys, counts = np.unique(groups, return_counts=True)
    if top < 1:
        raise ValueError(f"the number of groups to keep must be >= 1, got {top}")
    order = sorted(range(keys.size), key=lambda i: (-counts[i], i))[:top]
    keep = np.isin(groups, keys[order])
    return x[keep], y[keep], groups[keep]
