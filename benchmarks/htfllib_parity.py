"""htfl against HtFLlib, method by method, on the same clients, samples, models and settings.

Given a HtFLlib checkout (``--htfllib PATH``, its code unmodified) and the name of one of its
dataset folders (``PATH/dataset/NAME``, as its ``dataset/generate_*.py`` write them), this
imports the folder into htfl shards (``htfl data import-pfllib``: the same clients with the
same samples in the same order), then for every method runs

* HtFLlib: ``main.py`` run by ``--python`` (an environment with HtFLlib's imports: torch,
  torchvision, scikit-learn, h5py, higher, calmsize, click, requests) in a scratch copy of
  ``PATH/system`` (HtFLlib writes ``temp/`` and ``../results/`` beside its code), on the CPU
  with ``total.sh``'s flags (``-lr 0.01 -jr 1 -lbs 10 -ls 1 -fd D -m FAMILY``, plus the
  method's own), ``-gr ROUNDS``; its "Averaged Test Accuracy" after each round and its
  seconds per round are read from its output (kept in ``--work``);
* htfl: the method's real client and server sides in this process (no Flower, as
  ``benchmarks/in_process.py``), client i on its imported shard with ``family[i % k]``, under
  ``preset = "htfllib"`` (HtFLlib's setup and each method's defaults and choices).

``--subset CLIENTS:TRAIN:TEST`` (and ``--rgb32``) first writes a smaller folder in the same
format, the first clients and the first samples of each, which both sides then read: HtFLlib's
image families need 3x32x32 inputs, and a small split keeps a run to minutes on a few cores.

``--first-client K`` takes the clients from K on (a second split of the same folder).
``--seeds`` averages htfl over model seeds; ``--htfllib-seeds`` averages HtFLlib over seed
offsets: its ``main.py`` runs unmodified under a small wrapper (:data:`SEEDED_MAIN`) that adds
the offset to every ``torch.manual_seed`` it calls (HtFLlib seeds only with the constant 0)
and seeds numpy's and Python's global RNGs (its client order; unseeded in HtFLlib, so two of
its runs differ even at offset 0 without the wrapper). ``--same-init`` starts htfl's clients
from HtFLlib's own initial weights (:data:`HTFLLIB_INIT`: its ``BaseHeadSplit`` after
``torch.manual_seed``, loaded by position; FedGH's server head from client 0's, as
``servergh.py``), so the two sides differ only in their code from there on.

FedKTL: HtFLlib's ``FedKTL-stylegan-3`` reads a pickled StyleGAN (``-GPath``); total.sh's
pre-trained pickles are downloads from outside any package registry, so both sides get an
*untrained* generator with w 64: HtFLlib a small StyleGAN2 built by its own bundled
``stylegan-utils`` code (:data:`HTFLLIB_GENERATOR`), htfl its ``example_generator``. The row
compares the method's mechanics (ETF + ArcFace clients, server alignment, images), not
knowledge transfer. FedL2G: ``FedL2G-feat`` with no warm-up on either side (main.py's 50
warm-up rounds would leave a short run untrained).

Both report accuracy as HtFLlib does: correct predictions over all clients' test samples after
each round. Prints per method: best and final accuracy of each, the differences, and seconds
per round. Without ``--htfllib`` (or with ``--htfl-only``) only the htfl side runs (what CI's
smoke test does, on a tiny folder written by ``--toy`` in PFLlib's format from the bundled
digits).

Usage:
    python -m benchmarks.htfllib_parity --htfllib ~/HtFLlib --dataset Cifar10 \\
        --family HtFE-img-4 --rounds 20 [--methods local,fedproto,...]
    python -m benchmarks.htfllib_parity --htfllib ~/HtFLlib --python ~/htfllib-venv/bin/python \\
        --dataset mnist --subset 4:100:100 --rgb32 --family HtFE-img-2 --rounds 10
    python -m benchmarks.htfllib_parity --toy --rounds 2 --methods local,fedproto
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from htfl.algorithms import get_method
from htfl.datasets import load_shard
from htfl.models import build_model
from htfl.models.htfllib import family_members
from htfl.workstation.config.experiment import experiment_from_dict
from htfl.workstation.datasets.pfllib import import_pfllib, read_client_file
from tests.support.rounds import evaluate_round, run_round

#: htfl method -> (HtFLlib's -algo, its flags from system/total.sh)
HTFLLIB: dict[str, tuple[str, list[str]]] = {
    "local": ("Local", []),
    "fedproto": ("FedProto", ["-lam", "10"]),
    "fedgen": ("FedGen", ["-nd", "32", "-glr", "0.1", "-hd", "512", "-se", "100"]),
    "fd": ("FD", ["-lam", "1"]),
    "fml": ("FML", ["-al", "0.5", "-bt", "0.5"]),
    "fedkd": ("FedKD", ["-mlr", "0.01", "-Ts", "0.95", "-Te", "0.98"]),
    "lg_fedavg": ("LG-FedAvg", []),
    "fedgh": ("FedGH", ["-slr", "0.01", "-se", "1"]),
    "fedtgp": ("FedTGP", ["-lam", "10", "-se", "100", "-mart", "100"]),
    "fedmrl": ("FedMRL", ["-sfd", "128"]),
    "fedl2g": ("FedL2G-feat", ["-wu", "0"]),  # not in total.sh: main.py's defaults
    # total.sh's FedKTL-stylegan-xl flags (the preset's); -GPath: see HTFLLIB_GENERATOR
    "fedktl": (
        "FedKTL-stylegan-3",
        ["-slr", "0.01", "-sbs", "100", "-se", "100", "-lam", "1", "-mu", "50"],
    ),
}
#: htfl parameters over the preset that the flags above also set on HtFLlib's side: FedL2G's
#: 50 warm-up rounds (main.py's default) would leave a short run without one trained round
SHORT_RUN: dict[str, dict] = {"fedl2g": {"warm_up_rounds": 0}}
#: runs HtFLlib's main.py (argv[2:]) unmodified with every ``torch.manual_seed(s)`` it calls
#: made ``s + argv[1]``, and numpy's and Python's global RNGs seeded with argv[1]: HtFLlib seeds
#: only with the constant 0 (main.py, every Client), so this is how its side gets more seeds.
SEEDED_MAIN = """
import random, runpy, sys
import numpy as np, torch
offset = int(sys.argv[1])
sys.argv = sys.argv[2:]
_seed = torch.manual_seed
torch.manual_seed = lambda s: _seed(int(s) + offset)
np.random.seed(offset)
random.seed(offset)
runpy.run_path(sys.argv[0], run_name="__main__")
"""
#: writes (npz) the initial weights of every client's model as HtFLlib's Client builds them
#: (``torch.manual_seed(0 + offset)``, then ``BaseHeadSplit(args, i)``), with main.py's model
#: list for the family; argv: family, clients, classes, feature_dim, offset, out
HTFLLIB_INIT = """
import ast, re, sys, types
import numpy as np, torch
from flcore.trainmodel.models import BaseHeadSplit
family, n, classes, dim, offset, out = sys.argv[1:7]
src = open("main.py").read()
pattern = r'model_family == "%s":\\s*args\\.models = (\\[.*?\\])' % re.escape(family)
found = re.search(pattern, src, re.S)
if found is None:
    raise SystemExit(f"main.py has no model list for {family}")
args = types.SimpleNamespace(
    models=ast.literal_eval(found.group(1)), feature_dim=int(dim), num_classes=int(classes)
)
arrays = {}
for i in range(int(n)):
    torch.manual_seed(0 + int(offset))
    for j, t in enumerate(BaseHeadSplit(args, i).state_dict().values()):
        arrays[f"{i}_{j}"] = t.numpy()
np.savez(out, **arrays)
"""
#: writes (pickle, as HtFLlib's FedKTL servers read ``-GPath``: ``{'G_ema': G}``) an
#: *untrained* StyleGAN2 generator built by HtFLlib's own bundled ``stylegan/stylegan-utils``
#: code (z 64, w 64, 32x32 RGB): the pre-trained pickles total.sh names are downloads from
#: outside any package registry, and htfl's side has only an untrained generator too; argv: out
HTFLLIB_GENERATOR = """
import pickle, sys, torch
from training import networks_stylegan2  # run with -c in stylegan-utils: its dir is on the path
torch.manual_seed(0)
G = networks_stylegan2.Generator(
    z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
    mapping_kwargs={"num_layers": 2}, channel_base=2048, channel_max=64,
)
with open(sys.argv[1], "wb") as f:
    pickle.dump({"G_ema": G}, f)
"""
_ACC = re.compile(r"Averaged Test Accuracy: ([0-9.]+)")
#: a server's per-round seconds: "--- time cost --- S", or "------ S" (FD, FedGH, FedProto, FedTGP)
_COST = re.compile(r"^-{25}(?: time cost -{25}|-{25}) ([0-9.e+-]+)$", re.M)


def write_toy_folder(root: Path, num_clients: int = 3) -> Path:
    """A tiny PFLlib-format folder (np.savez_compressed of {'x','y'}, config.json) from the
    bundled digits, so the smoke test runs without any download."""
    from htfl.datasets.digits import DigitsLoader

    loaded = DigitsLoader().load()
    rng = np.random.default_rng(0)
    order = rng.permutation(loaded.num_samples)[: num_clients * 60]
    sizes = []
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(order, num_clients)):
        x, y = loaded.x[part], loaded.y[part]
        cut = int(0.75 * len(part))
        for split, sl in (("train", slice(0, cut)), ("test", slice(cut, None))):
            with open(root / split / f"{i}.npz", "wb") as f:
                np.savez_compressed(f, data={"x": x[sl], "y": y[sl]})
        values, counts = np.unique(y, return_counts=True)
        sizes.append([[int(v), int(c)] for v, c in zip(values, counts, strict=True)])
    config = {
        "num_clients": num_clients,
        "num_classes": loaded.num_classes,
        "non_iid": False,
        "balance": True,
        "partition": "-",
        "Size of samples for labels in clients": sizes,
        "alpha": 0.1,
        "batch_size": 10,
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


def derive_folder(
    source: Path,
    dest: Path,
    clients: int,
    train: int,
    test: int,
    rgb32: bool,
    first_client: int = 0,
) -> Path:
    """A smaller folder in PFLlib's format from ``source``: ``clients`` clients from
    ``first_client`` on (renumbered from 0; a second split of the same folder), the
    first ``train``/``test`` samples of each (in order), and, with ``rgb32``, 1x28x28 images
    padded to 32x32 with the background value and repeated over 3 channels (HtFLlib's image
    families start with 3-channel 32x32 layers: FedAvgCNN's ``dim=1600``, torchvision's
    ``conv1``). Both sides then read this one folder, so they see the same samples."""
    config = json.loads((source / "config.json").read_text())
    sizes = []
    for split in ("train", "test"):
        (dest / split).mkdir(parents=True, exist_ok=True)
    for i in range(clients):
        ys = []
        for split, keep in (("train", train), ("test", test)):
            x, y = read_client_file(source / split / f"{first_client + i}.npz")
            x, y = x[:keep], y[:keep]
            if rgb32:
                if x.shape[1:] != (1, 28, 28):
                    raise SystemExit(
                        f"--rgb32: {source}/{split}/{first_client + i}.npz has {x.shape[1:]}"
                    )
                x = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=float(x.min()))
                x = np.repeat(x, 3, axis=1)
            with open(dest / split / f"{i}.npz", "wb") as f:
                np.savez_compressed(f, data={"x": x, "y": y})
            ys.append(y)
        values, counts = np.unique(np.concatenate(ys), return_counts=True)
        sizes.append([[int(v), int(c)] for v, c in zip(values, counts, strict=True)])
    config.update({"num_clients": clients, "Size of samples for labels in clients": sizes})
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def htfllib_tree(checkout: Path, work: Path) -> Path:
    """A scratch copy of the checkout's ``system/`` (HtFLlib writes ``temp/`` and
    ``../results/`` beside its code, and the checkout stays untouched); returns the copy's
    root, whose ``dataset/`` the caller fills."""
    shutil.copytree(checkout / "system", work / "system", ignore=shutil.ignore_patterns("temp"))
    (work / "dataset").mkdir()
    return work


def run_htfl(
    method: str,
    manifest_dir: Path,
    family: list[str],
    feature_dim: int,
    rounds: int,
    seed: int,
    params: dict | None = None,
    init: dict[str, np.ndarray] | None = None,
):
    """Best, final accuracy, seconds per round and the curve of htfl's method under the
    htfllib preset; ``seed`` picks the models' initial weights as htfl's trainer does
    (``torch.manual_seed(seed)`` before each model: clients of one architecture start alike,
    as in HtFLlib; client i's own seed is ``seed + i``) unless ``init`` gives them (HtFLlib's
    own, from :data:`HTFLLIB_INIT`; FedGH's server head then starts from client 0's, as
    HtFLlib's does); ``params`` are explicit method parameters (they win over the preset)."""
    exp = experiment_from_dict(
        {
            "experiment": {"id": "parity", "rounds": rounds, "preset": "htfllib"},
            "algorithm": {"name": method, "params": dict(params or {})},
            "data": {"dataset": "imported", "partition": "imported", "manifest": "x"},
            "devices": {"classes": {"jetson-agx-orin": 1}},
            "models": {"feature_dim": feature_dim, "family": family},
        }
    )
    m = get_method(method)
    clients = []
    shard0 = load_shard(manifest_dir, 0)
    n = int(json.loads((manifest_dir / "manifest.json").read_text())["num_clients"])
    for i in range(n):
        shard = shard0 if i == 0 else load_shard(manifest_dir, i)
        torch.manual_seed(seed)  # htfl/device/trainer.py: same init for one arch
        arch = family[i % len(family)]
        model = build_model(arch, shard.input_shape, shard.num_classes, feature_dim)
        if init is not None:
            load_positional(model, [init[f"{i}_{j}"] for j in range(len(model.state_dict()))])
        clients.append(m.client(model, shard, exp.training, exp.algorithm_params, seed + i))
    server = m.server(exp.algorithm_params, shard0.num_classes, feature_dim, seed=seed)
    if init is not None and isinstance(getattr(server, "head", None), torch.nn.Linear):
        server.head.load_state_dict(clients[0].model.head.state_dict())  # servergh.py
    curve, start = [], time.perf_counter()
    for _ in range(rounds):
        run_round(server, clients)
        curve.append(evaluate_round(server, clients))
    return max(curve), curve[-1], (time.perf_counter() - start) / rounds, curve


def load_positional(model: torch.nn.Module, arrays: list[np.ndarray]) -> None:
    """Loads HtFLlib's state_dict entries in order: htfl's members register their layers in
    torchvision's / HtFLlib's order, under other names; every shape must agree."""
    state = model.state_dict()
    if len(arrays) != len(state):
        raise SystemExit(f"HtFLlib's model has {len(arrays)} tensors, htfl's {len(state)}")
    for (name, tensor), array in zip(state.items(), arrays, strict=True):
        if tuple(tensor.shape) != array.shape:
            raise SystemExit(f"{name}: htfl {tuple(tensor.shape)}, HtFLlib {array.shape}")
        tensor.copy_(torch.from_numpy(array))


def htfllib_init(
    tree: Path, python: str, family: str, clients: int, classes: int, dim: int, offset: int
) -> dict[str, np.ndarray]:
    """HtFLlib's initial client weights (see :data:`HTFLLIB_INIT`)."""
    out = (tree / f"init-{offset}.npz").resolve()  # the helper runs in tree/system
    cmd = [python, "-c", HTFLLIB_INIT, family, str(clients), str(classes), str(dim), str(offset)]
    subprocess.run([*cmd, str(out)], cwd=tree / "system", check=True, timeout=600)
    with np.load(out) as arrays:
        return dict(arrays)


def generators(tree: Path | None, python: str, work: Path) -> tuple[dict, tuple[str, ...]]:
    """FedKTL's generators: htfl's parameter and HtFLlib's flag (None: no HtFLlib side); each
    untrained, w 64 (see :data:`HTFLLIB_GENERATOR`)."""
    from htfl.algorithms.fedktl import example_generator, save_generator

    save_generator(example_generator(seed=0, w_dim=64), work / "generator.pt")
    flags: tuple[str, ...] = ()
    if tree is not None:
        out = (work / "generator.pkl").resolve()  # HtFLlib runs in its tree
        cmd = [python, "-c", HTFLLIB_GENERATOR, str(out)]
        stylegan = tree / "system" / "stylegan" / "stylegan-utils"
        subprocess.run(cmd, cwd=stylegan, check=True, timeout=600, capture_output=True)
        flags = ("-GPath", str(out))
    return {"generator_path": str(work / "generator.pt")}, flags


def run_htfllib(
    method: str,
    tree: Path,
    python: str,
    dataset: str,
    family: str,
    feature_dim: int,
    rounds: int,
    num_clients: int,
    num_classes: int,
    timeout: float,
    seed: int = 0,
    extra: tuple[str, ...] = (),
):
    """Best, final accuracy and seconds per round of HtFLlib's own run, from its output;
    ``seed`` > 0 offsets every seed it sets (:data:`SEEDED_MAIN`).

    ``tree`` holds ``system/`` (HtFLlib's code, unmodified) and ``dataset/<dataset>``. The
    environment only points the run at the CPU, one thread (as htfl's side), and lets
    ``torch.load`` read the whole-module pickles HtFLlib saves each round (torch >= 2.6 loads
    weights only by default; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is torch's documented switch)."""
    algo, flags = HTFLLIB[method]
    cmd = [
        python, "-u", "-c", SEEDED_MAIN, str(seed), "main.py",
        "-data", dataset, "-m", family, "-algo", algo,
        "-gr", str(rounds), "-nc", str(num_clients), "-ncl", str(num_classes),
        "-fd", str(feature_dim), "-lr", "0.01", "-jr", "1", "-lbs", "10", "-ls", "1",
        "-eg", "1", "-t", "1", "-dev", "cpu", "-did", "", *flags, *extra,
    ]  # fmt: skip
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1")
    env["MKL_NUM_THREADS"] = "1"
    out = subprocess.run(
        cmd, cwd=tree / "system", capture_output=True, text=True, timeout=timeout, env=env
    )
    (tree / f"{method}-{seed}.log").write_text(out.stdout + out.stderr)
    accs = [float(a) for a in _ACC.findall(out.stdout)]
    costs = [float(c) for c in _COST.findall(out.stdout)]
    if out.returncode != 0 or len(accs) < rounds + 1:
        done = accs[1:]
        tail = (out.stdout + out.stderr).strip().splitlines()[-1:]
        raise RuntimeError(
            f"HtFLlib {algo} stopped after {len(done)} rounds (exit {out.returncode}; accuracy "
            f"{', '.join(f'{a:.4f}' for a in done) or '-'}): {' | '.join(tail)}"
        )
    after = accs[1 : rounds + 1]  # accs[i]: evaluated at the start of round i, after i rounds
    return max(after), after[-1], sum(costs[1:]) / max(len(costs) - 1, 1), after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--htfllib", type=Path, default=None, help="a HtFLlib checkout")
    parser.add_argument("--python", default=sys.executable, help="the Python to run HtFLlib")
    parser.add_argument("--dataset", default="", help="folder name under HtFLlib's dataset/")
    parser.add_argument(
        "--subset", default="", help="CLIENTS:TRAIN:TEST: first clients/samples of the folder"
    )
    parser.add_argument("--rgb32", action="store_true", help="1x28x28 -> 3x32x32 (see above)")
    parser.add_argument("--toy", action="store_true", help="a tiny digits folder (htfl only)")
    parser.add_argument("--htfl-only", action="store_true", help="do not run HtFLlib")
    parser.add_argument("--family", default="HtFE-img-4", help="family name or a,b,c")
    parser.add_argument("--feature-dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--methods", default=",".join(HTFLLIB))
    parser.add_argument("--seeds", default="0", help="htfl's model seeds, e.g. 0,1,2 (mean)")
    parser.add_argument(
        "--htfllib-seeds", default="0", help="HtFLlib's seed offsets, e.g. 0,1,2 (mean)"
    )
    parser.add_argument(
        "--same-init",
        action="store_true",
        help="htfl's clients start from HtFLlib's initial weights (htfl seed s: HtFLlib's at s)",
    )
    parser.add_argument(
        "--first-client", type=int, default=0, help="with --subset: clients from this one on"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="an htfl method parameter over the preset (TOML value), e.g. fedgen.lamda=0",
    )
    parser.add_argument(
        "--htfllib-args",
        default="",
        help="more main.py flags for HtFLlib's side, after the method's (the later wins), "
        "e.g. '-mu 0' beside --set fedktl.mu=0",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep scratch files and logs here")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="per HtFLlib run, s")
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = list(family_members(args.family if "," not in args.family else args.family.split(",")))
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in HTFLLIB]
    if unknown:
        parser.error(f"--methods: not compared: {', '.join(unknown)} (known: {', '.join(HTFLLIB)})")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    h_seeds = [int(x) for x in args.htfllib_seeds.split(",") if x]
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if not name or not value:
            parser.error(f"--set {item!r}: expected METHOD.KEY=VALUE")
        overrides.setdefault(method, {})[name] = tomllib.loads(f"v = {value}")["v"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tree = None
        if args.toy:
            folder = write_toy_folder(work / "digits")
        elif args.htfllib and args.dataset:
            folder = args.htfllib / "dataset" / args.dataset
            tree = htfllib_tree(args.htfllib, work / "htfllib")
            if args.subset or args.rgb32:
                c, tr, te = (int(v) for v in (args.subset or "0:0:0").split(":"))
                cfg = json.loads((folder / "config.json").read_text())
                folder = derive_folder(
                    folder, tree / "dataset" / args.dataset, c or int(cfg["num_clients"]),
                    tr or 10**9, te or 10**9, args.rgb32, args.first_client,
                )  # fmt: skip
            else:
                shutil.copytree(folder, tree / "dataset" / args.dataset)
                folder = tree / "dataset" / args.dataset
        else:
            parser.error("give --htfllib PATH and --dataset NAME, or --toy")
        manifest = import_pfllib(folder, work / "shards")
        print(
            f"# {folder}: {manifest.num_clients} clients, {manifest.num_classes} classes, "
            f"input {manifest.input_shape}; family {family}; d = {args.feature_dim}; "
            f"{args.rounds} rounds; htfl seeds {seeds}, HtFLlib seeds {h_seeds}"
            f"{', same initial weights' if args.same_init else ''}; torch {torch.__version__}, "
            "CPU, 1 thread"
        )
        short_run = dict(SHORT_RUN)
        h_extra: dict[str, tuple[str, ...]] = {}
        if "fedktl" in methods:
            short_run["fedktl"], h_extra["fedktl"] = generators(
                None if args.htfl_only else tree, args.python, work
            )
        inits: dict[int, dict[str, np.ndarray] | None] = {s: None for s in seeds}
        if args.same_init:
            if tree is None:
                parser.error("--same-init needs --htfllib and --dataset")
            for s in seeds:
                inits[s] = htfllib_init(
                    tree, args.python, args.family, manifest.num_clients, manifest.num_classes,
                    args.feature_dim, s,
                )  # fmt: skip
        rows = []
        for method in methods:
            runs = [
                run_htfl(
                    method,
                    work / "shards",
                    family,
                    args.feature_dim,
                    args.rounds,
                    seed,
                    {**short_run.get(method, {}), **overrides.get(method, {})},
                    inits[seed],
                )  # fmt: skip
                for seed in seeds
            ]
            row: dict = {
                "method": method,
                "htfl_best": float(np.mean([r[0] for r in runs])),
                "htfl_final": float(np.mean([r[1] for r in runs])),
                "htfl_s": float(np.mean([r[2] for r in runs])),
                "htfl_curves": [[round(a, 4) for a in r[3]] for r in runs],
            }
            if tree is not None and not args.htfl_only:
                try:
                    h_runs = [
                        run_htfllib(
                            method, tree, args.python, args.dataset, args.family,
                            args.feature_dim, args.rounds, manifest.num_clients,
                            manifest.num_classes, args.timeout, s,
                            (*h_extra.get(method, ()), *shlex.split(args.htfllib_args)),
                        )
                        for s in h_seeds
                    ]  # fmt: skip
                    row.update(
                        h_best=float(np.mean([r[0] for r in h_runs])),
                        h_final=float(np.mean([r[1] for r in h_runs])),
                        h_s=float(np.mean([r[2] for r in h_runs])),
                        h_curves=[[round(a, 4) for a in r[3]] for r in h_runs],
                    )
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
                    row["error"] = str(err)[:200]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    head = "| method | htfl best | htfl final | HtFLlib best | HtFLlib final | diff best | diff final | htfl s/round | HtFLlib s/round |"  # noqa: E501
    print(head)
    print("|---" * 9 + "|")
    for r in rows:
        h = "h_best" in r

        def f(key: str, row: dict = r) -> str:
            return f"{row[key]:.4f}" if key in row else "-"

        print(
            f"| {r['method']} | {f('htfl_best')} | {f('htfl_final')} | {f('h_best')} | "
            f"{f('h_final')} | {r['htfl_best'] - r['h_best']:+.4f} | "
            if h
            else f"| {r['method']} | {f('htfl_best')} | {f('htfl_final')} | - | - | - | ",
            end="",
        )
        print(
            (f"{r['htfl_final'] - r['h_final']:+.4f} | " if h else "- | ")
            + f"{r['htfl_s']:.2f} | "
            + (f"{r['h_s']:.2f} |" if h else "- |")
            + (f" {r['error']}" if "error" in r else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
