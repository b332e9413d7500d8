"""Dataset loading, federated partitioning and per-client shards.

Typical use on a client::

    from htfl.datasets import PartitionSpec, client_shard, to_loader

    shard = client_shard("digits", PartitionSpec("dirichlet", alpha=0.1), 10, 3, seed=0)
    train = to_loader(shard.train_x, shard.train_y, batch_size=32, shuffle=True, seed=0)

Real datasets (UCI HAR, PAMAP2, CIFAR-10/100, MNIST, Fashion-MNIST, FEMNIST, iWildCam) are
read from their published archives (:mod:`htfl.workstation.datasets`), partitioned once on the
workstation and written as one shard per client with a manifest
(:func:`write_shards`); a device loads only its own (:func:`load_shard`), delivered by
:mod:`htfl.datasets.delivery`. See docs/datasets.md.
"""

from htfl.datasets.base import (
    DatasetLoader,
    LoadedDataset,
    UnknownDatasetError,
    get_loader,
    known_datasets,
    register_loader,
)
from htfl.datasets.digits import DigitsLoader
from htfl.datasets.partition import (
    MAX_DIRICHLET_ATTEMPTS,
    PartitionKind,
    PartitionSpec,
    partition_indices,
    split_train_test,
)
from htfl.datasets.shard import ClientShard, clear_caches, client_shard, partition_summary
from htfl.datasets.store import (
    Manifest,
    ManifestError,
    ShardIntegrityError,
    load_shard,
    write_shards,
)

__all__ = [
    "MAX_DIRICHLET_ATTEMPTS",
    "ClientShard",
    "DatasetLoader",
    "DigitsLoader",
    "LoadedDataset",
    "Manifest",
    "ManifestError",
    "PartitionKind",
    "PartitionSpec",
    "ShardIntegrityError",
    "UnknownDatasetError",
    "clear_caches",
    "client_shard",
    "get_loader",
    "known_datasets",
    "load_shard",
    "partition_indices",
    "partition_summary",
    "register_loader",
    "split_train_test",
    "to_loader",
    "write_shards",
]


def __getattr__(name: str) -> object:
    # torch is imported only when to_loader is first used, so partitioning and
    # summaries (e.g. on the server) do not pay for importing torch.
    if name == "to_loader":
        from htfl.datasets.torch_data import to_loader

        return to_loader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
