"""benchmarks.htfllib_parity's smaller split: the same samples, in PFLlib's format, both sides
read it (the benchmark's run itself is smoke-tested in tests/test_benchmarks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.htfllib_parity import _COST, SEEDED_MAIN, derive_folder, load_positional
from htfl.datasets import load_shard
from htfl.models import build_model
from htfl.workstation.datasets.pfllib import import_pfllib


def _source(root: Path, clients: int = 3) -> Path:
    """A folder as HtFLlib's generate_mnist.py writes it: 1x28x28 in [-1, 1]."""
    rng = np.random.default_rng(0)
    sizes = []
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
    for i in range(clients):
        ys = []
        for split, n in (("train", 12), ("test", 6)):
            x = rng.uniform(-1, 1, size=(n, 1, 28, 28)).astype(np.float32)
            y = rng.integers(0, 10, size=n).astype(np.int64)
            with open(root / split / f"{i}.npz", "wb") as f:
                np.savez_compressed(f, data={"x": x, "y": y})
            ys.append(y)
        v, c = np.unique(np.concatenate(ys), return_counts=True)
        sizes.append([[int(a), int(b)] for a, b in zip(v, c, strict=True)])
    config = {"num_clients": clients, "num_classes": 10, "non_iid": True, "balance": False,
              "partition": "dir", "alpha": 0.1, "batch_size": 10,
              "Size of samples for labels in clients": sizes}  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_the_derived_folder_keeps_the_first_samples_padded_to_rgb32(tmp_path: Path) -> None:
    source = _source(tmp_path / "mnist")
    out = derive_folder(source, tmp_path / "small", clients=2, train=5, test=3, rgb32=True)
    manifest = import_pfllib(out, tmp_path / "shards")  # config.json agrees with the files
    assert (manifest.num_clients, manifest.input_shape) == (2, (3, 32, 32))
    for i in range(2):
        shard = load_shard(tmp_path / "shards", i)
        original = np.load(source / "train" / f"{i}.npz", allow_pickle=True)["data"].item()
        assert shard.num_train == 5 and len(shard.test_y) == 3
        np.testing.assert_array_equal(shard.train_y, original["y"][:5])
        for c in range(3):  # the same image in every channel, centred, padded with -1
            np.testing.assert_array_equal(shard.train_x[:, c, 2:30, 2:30], original["x"][:5, 0])
        assert float(shard.train_x[:, :, :2].max()) == float(original["x"][:5].min())


def test_both_of_htfllibs_round_time_lines_are_read() -> None:
    """serverlocal.py prints ``'-'*25, 'time cost', '-'*25, t``; serverfd.py ``'-'*50, t``."""
    out = "-" * 25 + " time cost " + "-" * 25 + " 1.5\n" + "-" * 50 + " 2.25\n"
    out += "-" * 50 + " Receiving client grads ...\n"
    assert _COST.findall(out) == ["1.5", "2.25"]


def test_a_second_split_starts_at_first_client(tmp_path: Path) -> None:
    source = _source(tmp_path / "mnist", clients=3)
    out = derive_folder(source, tmp_path / "b", clients=2, train=4, test=2, rgb32=False,
                        first_client=1)  # fmt: skip
    import_pfllib(out, tmp_path / "shards")
    for i in range(2):  # renumbered from 0: client i is the source's client 1 + i
        original = np.load(source / "train" / f"{1 + i}.npz", allow_pickle=True)["data"].item()
        np.testing.assert_array_equal(load_shard(tmp_path / "shards", i).train_y, original["y"][:4])


def test_htfllibs_seeds_are_offset_by_the_wrapper(tmp_path: Path) -> None:
    """SEEDED_MAIN runs a script unmodified, every torch.manual_seed(s) in it made s + offset."""
    (tmp_path / "main.py").write_text(
        "import sys, torch\ntorch.manual_seed(0)\nprint(torch.rand(1).item(), sys.argv[1:])\n"
    )

    def run(offset: int) -> str:
        cmd = [sys.executable, "-c", SEEDED_MAIN, str(offset), "main.py", "-x", "1"]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    torch.manual_seed(2)
    assert run(2) == f"{torch.rand(1).item()} ['-x', '1']\n"  # seed 0 + 2, its own argv
    torch.manual_seed(0)
    assert run(0) == f"{torch.rand(1).item()} ['-x', '1']\n"


def test_htfllibs_initial_weights_load_by_position_with_shapes_checked() -> None:
    torch.manual_seed(0)
    source = build_model("fedavgcnn", (3, 32, 32), 10, 64)
    torch.manual_seed(1)
    target = build_model("fedavgcnn", (3, 32, 32), 10, 64)
    load_positional(target, [t.numpy() for t in source.state_dict().values()])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target(x), source(x))
    other = build_model("fedavgcnn", (3, 32, 32), 7, 64)  # a 7-class head
    with pytest.raises(SystemExit, match=r"head\.weight: htfl \(7, 64\), HtFLlib \(10, 64\)"):
        load_positional(other, [t.numpy() for t in source.state_dict().values()])
