"""Dataset loading and federated partitioning.

Typical use on a client::

    from htfl.datasets import PartitionSpec, client_shard, to_loader

    shard = client_shard("digits", PartitionSpec("dirichlet", alpha=0.1), 10, 3, seed=0)
    train = to_loader(shard.train_x, shard.train_y, batch_size=32, shuffle=True, seed=0)
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

__all__ = [
    "MAX_DIRICHLET_ATTEMPTS",
    "ClientShard",
    "DatasetLoader",
    "DigitsLoader",
    "LoadedDataset",
    "PartitionKind",
    "PartitionSpec",
    "UnknownDatasetError",
    "clear_caches",
    "client_shard",
    "get_loader",
    "known_datasets",
    "partition_indices",
    "partition_summary",
    "register_loader",
    "split_train_test",
    "to_loader",
]


def __getattr__(name: str) -> object:
    # torch is imported only when to_loader is first used, so partitioning and
    # summaries (e.g. on the server) do not pay for importing torch.
    if name == "to_loader":
        from htfl.datasets.torch_data import to_loader

        return to_loader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
