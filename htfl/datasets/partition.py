"""Federated partitioning of a labelled dataset across clients (PFLlib/HtFLlib semantics).

Kinds:

* ``iid``: shuffle all samples and deal them out; equal sizes (within one) when
  ``balanced``, otherwise random sizes of at least ``min_samples`` each.
* ``pathological``: every client holds exactly ``classes_per_client`` distinct classes.
  Classes are handed out greedily to the least-held ones first (ties broken at random),
  so every class is held by some client when ``num_clients * classes_per_client >=
  num_classes`` and holder counts differ by at most one. Each class's samples are split
  among its holders: evenly when ``balanced``, otherwise at random (every holder gets at
  least one sample of each of its classes). Samples of classes nobody holds (only
  possible when ``num_clients * classes_per_client < num_classes``) are left out.
* ``dirichlet``: for each class, proportions ~ Dir(alpha) over clients; clients that
  already hold ``N / num_clients`` samples get no more of later classes (the NIID-Bench /
  PFLlib balancing rule). The whole draw is repeated until every client has at least
  ``min_samples`` samples, up to :data:`MAX_DIRICHLET_ATTEMPTS` times, then a ValueError.
  ``balanced`` is ignored.
* ``exdir`` (extended Dirichlet, PFLlib's "exdir", after Li et al. 2023): first every
  client draws ``classes_per_client`` distinct classes at random, redrawn until every class
  has at least ``max(classes_per_client * num_clients // num_classes // 2, 1)`` holders;
  then each class is split by Dir(alpha) among its holders only, with the same fair-share
  cap and ``min_samples`` retry rule as ``dirichlet``. A client therefore holds at most
  ``classes_per_client`` classes, in Dirichlet-skewed amounts. ``balanced`` is ignored.
* ``natural``: one client per distinct value of ``groups`` (subject, writer, ...), in
  sorted group order, so client ``i`` is always the ``i``-th group whatever the seed.
  ``min_samples`` and ``balanced`` are ignored.

``min_samples`` is a guarantee for iid, pathological, dirichlet and exdir: if it cannot be met,
:func:`partition_indices` raises ValueError rather than returning a starved client.

Every partition is a list of ``num_clients`` sorted int64 index arrays into ``labels``;
they are pairwise disjoint, and together they cover every index except in the
pathological case noted above. Results depend only on the inputs and ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

__all__ = [
    "MAX_DIRICHLET_ATTEMPTS",
    "MAX_EXDIR_ASSIGNMENTS",
    "RELEVANT_FIELDS",
    "exdir_class_holders",
    "PartitionKind",
    "PartitionSpec",
    "partition_indices",
    "split_train_test",
]

#: ``imported``: made elsewhere (``htfl data import-pfllib``); only a manifest holds it.
PartitionKind = Literal["iid", "pathological", "dirichlet", "exdir", "natural", "imported"]
_KINDS: tuple[str, ...] = get_args(PartitionKind)

#: How many full Dirichlet draws to try before giving up on ``min_samples``.
MAX_DIRICHLET_ATTEMPTS = 1000
#: How many class-to-client assignments exdir tries before giving up on class coverage.
MAX_EXDIR_ASSIGNMENTS = 1000

#: The spec fields each kind uses (the rest are ignored, so they are not recorded).
RELEVANT_FIELDS: dict[str, tuple[str, ...]] = {
    "iid": ("balanced", "min_samples"),
    "pathological": ("classes_per_client", "balanced", "min_samples"),
    "dirichlet": ("alpha", "min_samples"),
    "exdir": ("classes_per_client", "alpha", "min_samples"),
    "natural": (),
    "imported": (),
}


@dataclass(frozen=True)
class PartitionSpec:
    """How to split a dataset across clients. Validated on construction.

    Attributes:
        kind: ``"iid"``, ``"pathological"``, ``"dirichlet"``, ``"exdir"`` or ``"natural"``.
        classes_per_client: Distinct classes per client (pathological; at most, exdir).
        alpha: Dirichlet concentration (dirichlet, exdir); smaller is more skewed.
        min_samples: Minimum samples per client (iid, pathological, dirichlet, exdir).
        balanced: Equal client sizes (iid) / equal per-class shares (pathological).
    """

    kind: PartitionKind
    classes_per_client: int = 2
    alpha: float = 0.1
    min_samples: int = 10
    balanced: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError describing the first invalid field, if any."""
        if self.kind not in _KINDS:
            raise ValueError(
                f"PartitionSpec.kind must be one of {', '.join(_KINDS)}; got {self.kind!r}"
            )
        if not _is_int(self.classes_per_client) or self.classes_per_client < 1:
            raise ValueError(
                "PartitionSpec.classes_per_client must be an integer >= 1; "
                f"got {self.classes_per_client!r}"
            )
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not math.isfinite(self.alpha)
            or self.alpha <= 0
        ):
            raise ValueError(f"PartitionSpec.alpha must be a finite number > 0; got {self.alpha!r}")
        if not _is_int(self.min_samples) or self.min_samples < 1:
            raise ValueError(
                f"PartitionSpec.min_samples must be an integer >= 1; got {self.min_samples!r}"
            )
        if not isinstance(self.balanced, bool):
            raise ValueError(f"PartitionSpec.balanced must be a bool; got {self.balanced!r}")

    def relevant(self) -> dict[str, object]:
        """``kind`` and the fields this kind uses: what a manifest records and compares."""
        out: dict[str, object] = {"kind": self.kind}
        for name in RELEVANT_FIELDS[self.kind]:
            value = getattr(self, name)
            out[name] = float(value) if name == "alpha" else value
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def partition_indices(
    labels: np.ndarray,
    num_clients: int,
    spec: PartitionSpec,
    seed: int,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``num_clients`` index arrays according to ``spec``.

    ``groups`` (one key per sample) is required for, and only used by, ``"natural"``.
    See the module docstring for the semantics of each kind.
    """
    spec.validate()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if not _is_int(num_clients) or num_clients < 1:
        raise ValueError(f"num_clients must be an integer >= 1; got {num_clients!r}")
    num_clients = int(num_clients)
    rng = np.random.default_rng(seed)

    if spec.kind == "natural":
        return _natural(labels, num_clients, groups)
    if spec.kind == "imported":
        raise ValueError(
            "an imported partition is not computed: its shards come from the manifest that "
            "`htfl data import-pfllib` wrote (give [data] manifest)"
        )
    n = labels.shape[0]
    if n < num_clients * spec.min_samples:
        raise ValueError(
            f"cannot give {num_clients} clients at least min_samples={spec.min_samples} "
            f"samples each from only {n} samples; use fewer clients or a lower min_samples"
        )
    if spec.kind == "iid":
        parts = _iid(n, num_clients, spec, rng)
    elif spec.kind == "pathological":
        parts = _pathological(labels, num_clients, spec, rng)
    elif spec.kind == "exdir":
        parts = _exdir(labels, num_clients, spec, rng)
    else:
        parts = _dirichlet(labels, num_clients, spec, rng)

    sizes = [p.size for p in parts]
    if min(sizes) < spec.min_samples:
        worst = int(np.argmin(sizes))
        raise ValueError(
            f"{spec.kind} partition gives client {worst} only {sizes[worst]} samples "
            f"(< min_samples={spec.min_samples}); use fewer clients or a lower min_samples"
        )
    return parts


def _finish(parts: list[np.ndarray] | list[list[int]]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _iid(
    n: int, num_clients: int, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    order = rng.permutation(n)
    if spec.balanced:
        return _finish(np.array_split(order, num_clients))
    # Random sizes: everyone gets min_samples, the rest is dealt by random weights in
    # [0.1, 1], so the largest client is at most ~10x the smallest (plus the floor).
    weights = rng.uniform(0.1, 1.0, size=num_clients)
    extra = rng.multinomial(n - num_clients * spec.min_samples, weights / weights.sum())
    sizes = spec.min_samples + extra
    return _finish(np.split(order, np.cumsum(sizes)[:-1]))


def _pathological(
    labels: np.ndarray, num_clients: int, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(labels)
    k = spec.classes_per_client
    if k > classes.size:
        raise ValueError(
            f"pathological partition wants classes_per_client={k} but the labels have "
            f"only {classes.size} distinct classes"
        )
    # Greedy assignment: each client takes the k least-held classes, ties at random.
    held = np.zeros(classes.size, dtype=np.int64)
    holders: list[list[int]] = [[] for _ in range(classes.size)]
    for client in range(num_clients):
        tiebreak = rng.random(classes.size)
        chosen = np.lexsort((tiebreak, held))[:k]
        held[chosen] += 1
        for c in chosen:
            holders[c].append(client)

    parts: list[list[int]] = [[] for _ in range(num_clients)]
    # Per-holder floor so that k classes' worth of floor meets min_samples where possible.
    floor_target = max(1, -(-spec.min_samples // k))
    for c, owners in enumerate(holders):
        if not owners:
            continue
        idx = rng.permutation(np.flatnonzero(labels == classes[c]))
        h = len(owners)
        if idx.size < h:
            raise ValueError(
                f"class {classes[c]} has {idx.size} samples but {h} clients must hold it; "
                "use fewer clients or fewer classes_per_client"
            )
        if spec.balanced:
            chunks = np.array_split(idx, h)
        else:
            floor = min(idx.size // h, floor_target)
            weights = rng.uniform(0.1, 1.0, size=h)
            sizes = floor + rng.multinomial(idx.size - h * floor, weights / weights.sum())
            chunks = np.split(idx, np.cumsum(sizes)[:-1])
        for owner, chunk in zip(owners, chunks, strict=True):
            parts[owner].extend(chunk.tolist())
    return _finish(parts)


def _dirichlet(
    labels: np.ndarray, num_clients: int, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    n = labels.shape[0]
    class_indices = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    cap = n / num_clients
    concentration = np.full(num_clients, float(spec.alpha))
    smallest = 0
    for _attempt in range(MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for idx in class_indices:
            idx = rng.permutation(idx)
            proportions = rng.dirichlet(concentration)
            room = np.array([len(p) < cap for p in parts])
            masked = proportions * room
            if masked.sum() > 0:
                proportions = masked
            if not np.all(np.isfinite(proportions)) or proportions.sum() <= 0:
                proportions = np.full(num_clients, 1.0)
            proportions = proportions / proportions.sum()
            cuts = (np.cumsum(proportions) * idx.size).astype(np.int64)[:-1]
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        smallest = min(len(p) for p in parts)
        if smallest >= spec.min_samples:
            return _finish(parts)
    raise ValueError(
        f"dirichlet partition (alpha={spec.alpha}) could not give all {num_clients} clients "
        f"at least min_samples={spec.min_samples} samples in {MAX_DIRICHLET_ATTEMPTS} "
        f"attempts (last smallest client: {smallest}); raise alpha, lower min_samples or "
        "use fewer clients"
    )


def _dirichlet_split(
    idx: np.ndarray,
    proportions: np.ndarray,
    eligible: np.ndarray,
    parts: list[list[int]],
    cap: float,
) -> None:
    """Deal ``idx`` to ``parts`` by ``proportions`` among ``eligible`` clients with room."""
    room = np.array([len(p) < cap for p in parts])
    weights = proportions * eligible * room
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        weights = proportions * eligible  # everyone eligible is full: ignore the cap
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        weights = eligible.astype(np.float64)  # proportions underflowed to zero
    share = weights / weights.sum() * idx.size
    counts = np.floor(share).astype(np.int64)
    # Hand the rounding remainder to clients that may receive this class (largest
    # fractions first), so no sample ever reaches a client outside ``eligible``.
    takers = [int(i) for i in np.argsort(-(share - counts), kind="stable") if weights[i] > 0]
    for i in range(int(idx.size - counts.sum())):
        counts[takers[i % len(takers)]] += 1
    for part, chunk in zip(parts, np.split(idx, np.cumsum(counts)[:-1]), strict=True):
        part.extend(chunk.tolist())


def exdir_class_holders(
    num_classes: int, num_clients: int, classes_per_client: int, rng: np.random.Generator
) -> list[list[int]]:
    """exdir's first level: the clients holding each class (see the module docstring)."""
    k = classes_per_client
    if k > num_classes:
        raise ValueError(
            f"exdir partition wants classes_per_client={k} but the labels have only "
            f"{num_classes} distinct classes"
        )
    if num_clients * k < num_classes:
        raise ValueError(
            f"exdir partition needs num_clients * classes_per_client >= {num_classes} "
            f"classes so that every class has a holder; got {num_clients} * {k}"
        )
    need = max(k * num_clients // num_classes // 2, 1)
    for _attempt in range(MAX_EXDIR_ASSIGNMENTS):
        holders: list[list[int]] = [[] for _ in range(num_classes)]
        for client in range(num_clients):
            for c in rng.choice(num_classes, size=k, replace=False):
                holders[int(c)].append(client)
        if min(len(h) for h in holders) >= need:
            return holders
    raise ValueError(
        f"exdir partition could not give every class {need} holders in "
        f"{MAX_EXDIR_ASSIGNMENTS} draws; use more clients or classes_per_client"
    )


def _exdir(
    labels: np.ndarray, num_clients: int, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(labels)
    holders = exdir_class_holders(classes.size, num_clients, spec.classes_per_client, rng)
    class_indices = [np.flatnonzero(labels == c) for c in classes]
    cap = labels.shape[0] / num_clients
    concentration = np.full(num_clients, float(spec.alpha))
    eligible = np.zeros((classes.size, num_clients))
    for c, owners in enumerate(holders):
        eligible[c, owners] = 1.0
    smallest = 0
    for _attempt in range(MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c, idx in enumerate(class_indices):
            _dirichlet_split(
                rng.permutation(idx), rng.dirichlet(concentration), eligible[c], parts, cap
            )
        smallest = min(len(p) for p in parts)
        if smallest >= spec.min_samples:
            return _finish(parts)
    raise ValueError(
        f"exdir partition (alpha={spec.alpha}, classes_per_client={spec.classes_per_client}) "
        f"could not give all {num_clients} clients at least min_samples={spec.min_samples} "
        f"samples in {MAX_DIRICHLET_ATTEMPTS} attempts (last smallest client: {smallest}); "
        "raise alpha or classes_per_client, lower min_samples or use fewer clients"
    )


def _natural(labels: np.ndarray, num_clients: int, groups: np.ndarray | None) -> list[np.ndarray]:
    if groups is None:
        raise ValueError(
            "natural partition needs a groups array (one key per sample), but this "
            "dataset has none; use iid, pathological or dirichlet instead"
        )
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has shape {groups.shape} but labels has {labels.shape}")
    keys, inverse = np.unique(groups, return_inverse=True)
    if num_clients != keys.size:
        raise ValueError(
            f"natural partition has one client per group: the data has {keys.size} "
            f"groups but num_clients={num_clients}; set num_clients={keys.size}"
        )
    return [np.flatnonzero(inverse == i).astype(np.int64) for i in range(keys.size)]


def split_train_test(
    indices: np.ndarray, labels: np.ndarray, train_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's ``indices`` into (train, test) index arrays, both sorted.

    ``labels`` is the full label array that ``indices`` index into (the same array given
    to :func:`partition_indices`). Each class with at least two samples is split
    separately, with ``round(train_fraction * n)`` clamped to ``[1, n - 1]`` samples in
    train, so both sides see every such class. Singleton classes are pooled and split by
    the same fraction. PFLlib uses ``train_fraction=0.75``.
    """
    if not (
        isinstance(train_fraction, (int, float))
        and not isinstance(train_fraction, bool)
        and 0.0 < train_fraction < 1.0
    ):
        raise ValueError(f"train_fraction must be in (0, 1); got {train_fraction!r}")
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
    rng = np.random.default_rng(seed)
    client_labels = labels[indices]
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    singletons: list[np.ndarray] = []
    for c in np.unique(client_labels):
        idx = rng.permutation(indices[client_labels == c])
        if idx.size < 2:
            singletons.append(idx)
            continue
        n_train = min(max(round(train_fraction * idx.size), 1), idx.size - 1)
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    if singletons:
        pool = rng.permutation(np.concatenate(singletons))
        n_train = round(train_fraction * pool.size)
        train.append(pool[:n_train])
        test.append(pool[n_train:])
    empty = np.empty(0, dtype=np.int64)
    return (
        np.sort(np.concatenate(train)) if train else empty,
        np.sort(np.concatenate(test)) if test else empty,
    )
