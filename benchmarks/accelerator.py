"""Training step time, peak memory and accuracy per architecture, batch size, device and precision.

Each row trains one client side (the method ``local``: the device's own training loop,
:meth:`htfl.algorithms.base.ClientSide.train`, nothing else) from the same seed on the same
digits shard (IID, client 0 of 2) for ``--epochs`` local epochs, then evaluates it on that
shard's test split. Rows: the CPU in fp32 and bf16, and, where torch sees a GPU, CUDA in fp32,
fp16 (with loss scaling) and bf16. Accuracy should agree within noise across a row group;
step time is the mean wall time of one optimiser step over the epochs after a warm-up epoch.
Peak memory is torch's peak allocation on CUDA; on the CPU it is the process's peak resident
set (``ru_maxrss``), which only grows, so a CPU row shows the peak so far, not its own.

Usage: python -m benchmarks.accelerator [--archs cnn4,resnet8] [--batch-sizes 10,64]
       [--epochs 5] [--devices cpu,cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from htfl.algorithms import get_method
from htfl.algorithms.base import TrainSettings
from htfl.datasets import PartitionSpec, client_shard
from htfl.models import build_model

SEED = 0
FEATURE_DIM = 64
PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}


def one_row(arch: str, batch: int, device: str, precision: str, epochs: int) -> dict:
    shard = client_shard("digits", PartitionSpec("iid"), 2, 0, SEED)
    torch.manual_seed(SEED)
    model = build_model(arch, tuple(shard.input_shape), shard.num_classes, FEATURE_DIM)
    method = get_method("local")
    settings = TrainSettings(
        local_epochs=1,
        batch_size=batch,
        learning_rate=0.05,
        momentum=0.9,
        device=device,
        precision=precision,
    )
    client = method.client(model, shard, settings, method.params(), SEED)
    on_cuda = client.device.type == "cuda"
    client.train()  # warm-up epoch: allocator, kernels, autotuning
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    steps_per_epoch = sum(1 for _, y in client._train_loader if len(y) >= 2)
    t0 = time.perf_counter()
    for _ in range(max(epochs - 1, 1)):
        client.train()
    if on_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    steps = steps_per_epoch * max(epochs - 1, 1)
    if on_cuda:
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = client.evaluate()
    return {
        "arch": arch,
        "batch": batch,
        "device": device,
        "precision": precision,
        "step_ms": 1000 * elapsed / max(steps, 1),
        "peak_mib": peak_mib,
        "accuracy": result.accuracy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="cnn4,resnet4,resnet8,resnet18,mobilenet_v2")
    parser.add_argument("--batch-sizes", default="10,64")
    parser.add_argument("--epochs", type=int, default=5, help="local epochs (the first warms up)")
    parser.add_argument(
        "--devices", default="cpu,cuda", help="cuda rows only where torch sees a GPU"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"# local training on digits (IID shard 0 of 2), {args.epochs} epochs, SGD lr 0.05 "
        f"momentum 0.9, d = {FEATURE_DIM}; {platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} CPU thread(s), GPU: {gpu}\n"
    )
    if "cuda" in args.devices and not torch.cuda.is_available():
        print("(no CUDA GPU here: the CUDA rows are missing)\n")
    print("| arch | batch | device | precision | step ms | peak MiB | accuracy |")
    print("|---|---:|---|---|---:|---:|---:|")
    for arch in args.archs.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for device in devices:
                for precision in PRECISIONS[device]:
                    row = one_row(arch, batch, device, precision, args.epochs)
                    print(
                        f"| {arch} | {batch} | {device} | {precision} | {row['step_ms']:.2f} "
                        f"| {row['peak_mib']:.0f} | {row['accuracy']:.3f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
