"""Payload per method: declared upload bytes vs. the bytes Flower puts on the wire.

For every registered method, real client sides train two rounds (so the upload is a
steady-state one: FedGen's one-off label counts went in round 1, FedKD compresses a real
update) on digits upsampled to CIFAR's shape (3 x 32 x 32, 10 classes), at ``d = 512``. The
second upload of client 0 is put in a real Flower reply built with ``htfl.protocol.content``
(with the metrics a device adds) and pushed through Flower's own SuperNode push step, with
htfl's adapter counting it as an agent does: the object bodies of the reply's content that
Flower sends. The server's download after round 2 is pulled through the SuperNode's pull step
the same way (``tests/support/flower_wire.py``).

Models, at realistic sizes for this input: the private model is ``resnet18`` for FedAvg
(homogeneous) and ``resnet8`` for the others (their upload does not depend on it); shared
models are ``cnn4`` (FML, FedKD; FedMRL at d/4 = 128 features). FedKTL's generator is an
untrained ``StyleGenerator`` with StyleGAN's latent width (w_dim = 512): its size only changes
the download.

Usage: python benchmarks/payload.py [--feature-dim 512] [--clients 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from htfl import protocol
from htfl.algorithms import METHODS, fedktl, get_method
from htfl.algorithms.base import TrainSettings
from htfl.datasets import ClientShard, PartitionSpec, client_shard
from htfl.models import build_model
from tests.support.flower_wire import pull_message, push_reply
from tests.support.rounds import run_round

INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
METRICS = {  # what a device adds to every training reply
    "deserialise_seconds": 0.01,
    "train_seconds": 1.5,
    "train_loss": 0.5,
    "num_train": 60.0,
    "serialise_seconds": 0.01,
    "handle_seconds": 1.6,
}


def cifar_shaped_shard(index: int, clients: int) -> ClientShard:
    """A digits shard, bilinearly upsampled to 32 x 32 and repeated to 3 channels."""
    shard = client_shard("digits", PartitionSpec("dirichlet", alpha=0.5), clients, index, 0)

    def up(x: np.ndarray) -> np.ndarray:
        t = F.interpolate(torch.from_numpy(np.array(x)), size=INPUT_SHAPE[1:], mode="bilinear")
        return t.expand(-1, 3, -1, -1).contiguous().numpy()

    return ClientShard(
        index, up(shard.train_x), shard.train_y, up(shard.test_x), shard.test_y, 10, INPUT_SHAPE
    )


def message_pair(download, upload):
    """A real train message and its real reply, as the ServerApp and a device build them."""
    from flwr.app import Message, Metadata

    metadata = Metadata(7_305_512_944_101_337_111, "", 1, 12_754_901_843_201_554_733, "", "",
                        1.0e9, 3600.0, "train", 1, None)  # fmt: skip
    train = Message(content=protocol.content({"round": 2}, download), metadata=metadata)
    train.metadata.__dict__["_message_id"] = train.object_id
    return train, Message(protocol.content(None, upload, METRICS), reply_to=train)


def measure(name: str, feature_dim: int, clients: int, generator: Path) -> dict:
    method = get_method(name)
    kwargs = {}
    if name == "fedktl":
        kwargs = {"generator_path": str(generator), "server_epochs": 20}
    params = method.params(**kwargs)
    arch = "resnet18" if method.homogeneous else "resnet8"
    settings = TrainSettings(batch_size=16, learning_rate=0.05, momentum=0.9)
    sides = []
    for i in range(clients):
        shard = cifar_shaped_shard(i, 10 * clients)  # ~1/10 of digits each: quick rounds
        torch.manual_seed(0)
        model = build_model(arch, INPUT_SHAPE, NUM_CLASSES, feature_dim)
        sides.append(method.client(model, shard, settings, params, i))
    server = method.server(params, NUM_CLASSES, feature_dim, 0)
    for _ in range(2):  # the second upload is a steady-state one
        uploads = run_round(server, sides)
    model_bytes = sum(v.numel() * v.element_size() for v in sides[0].model.state_dict().values())
    declared = method.declared_upload_bytes(
        params, NUM_CLASSES, feature_dim, model_bytes, input_shape=INPUT_SHAPE
    )
    train, reply = message_pair(server.global_payload(), uploads[0].payload)
    return {
        "method": name,
        "declared": declared,
        "raw": protocol.payload_nbytes(uploads[0].payload),
        "arrays": len(uploads[0].payload),
        "wire_up": push_reply(reply).counted,
        "wire_down": pull_message(train, train.metadata.dst_node_id).counted,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-dim", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument(
        "--methods", default=",".join(sorted(METHODS)), help="comma-separated (default: all)"
    )
    args = parser.parse_args()
    names = [n for n in args.methods.split(",") if n]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        generator = Path(tmp) / "generator.pt"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            g = fedktl.StyleGenerator(z_dim=512, w_dim=512, mapping_layers=2, channels=[64, 32])
        fedktl.save_generator(g, generator)
        rows = [measure(n, args.feature_dim, args.clients, generator) for n in names]
    print(
        f"# payload per method: d={args.feature_dim}, {NUM_CLASSES} classes, input "
        f"{'x'.join(map(str, INPUT_SHAPE))}; flwr {protocol_version()}, "
        f"{platform.machine()}, {time.time() - started:.0f} s"
    )
    print()
    print("| method | arrays | declared B | payload B | wire up B | wire/declared | wire down B |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['wire_up'] / r['declared']:.3f}" if r["declared"] else "-"
        print(
            f"| {r['method']} | {r['arrays']} | {r['declared']:,} | {r['raw']:,} | "
            f"{r['wire_up']:,} | {ratio} | {r['wire_down']:,} |"
        )
    print()
    print("payload B: the raw bytes of the upload's arrays; FedKD's declared size is the dense")
    print("update (an upper bound), its payload the SVD-compressed one.")
    return 0


def protocol_version() -> str:
    import flwr

    return flwr.__version__


if __name__ == "__main__":
    raise SystemExit(main())
