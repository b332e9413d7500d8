"""`htfl data`: prepare per-client shards, inspect them, serve them, stage them for Ansible."""

from __future__ import annotations

import argparse
import ast
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from htfl.cli import LazyConsole, add_group, integer

console = LazyConsole(stderr=True)


def _error(err: object) -> None:
    # Unwrapped and unstyled inside: messages name files and checksums worth copying.
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(
        subparsers,
        "data",
        help="prepare, inspect and deliver dataset shards",
        description="Prepare per-client shards of a dataset once, on the workstation; the "
        "devices fetch theirs over HTTP during a run, or get them from Ansible "
        "(docs/datasets.md).",
    )

    prep = sub.add_parser(
        "prepare",
        help="read a dataset's upstream archive, partition it, write per-client shards",
        description="Read DATASET from its published archive (verified by checksum), "
        "partition it across clients and write one shard per client plus manifest.json "
        "into --out, atomically. Prints the [data] section for an experiment file.",
    )
    prep.add_argument(
        "dataset",
        help="har, pamap2, cifar10, cifar100, mnist, fashion-mnist, "
        "femnist, iwildcam or digits (see `htfl data list`)",
    )
    prep.add_argument(
        "--source",
        type=Path,
        default=None,
        metavar="PATH",
        help="the archive, or for MNIST the directory with its files "
        "(default: the data directory's archives/DATASET/, see --download)",
    )
    prep.add_argument(
        "--expected-sha256",
        action="append",
        default=None,
        metavar="[NAME=]HEX",
        help="accept this checksum instead of the table's (NAME=HEX per file "
        "for multi-file datasets; default: the table's, see `htfl data list`)",
    )
    prep.add_argument(
        "--download",
        action="store_true",
        help="download the archive if it is not in the data directory",
    )
    prep.add_argument(
        "--partition",
        default="natural",
        choices=["natural", "iid", "pathological", "dirichlet", "exdir"],
        help="how samples are split across clients: natural (by subject/writer/camera), "
        "iid, pathological (--classes-per-client), dirichlet (--alpha), exdir (both)",
    )
    prep.add_argument(
        "--num-clients",
        type=integer(1),
        default=None,
        metavar="N",
        help="clients (default: for natural, one per subject/writer/camera; required otherwise)",
    )
    # None: not given. Given for a partition that does not use it is an error, not ignored.
    prep.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="Dirichlet concentration; smaller is more skewed (dirichlet, exdir; default: 0.1)",
    )
    prep.add_argument(
        "--classes-per-client",
        type=int,
        default=None,
        metavar="N",
        help="classes each client holds (pathological; at most, exdir; default: 2)",
    )
    prep.add_argument(
        "--min-samples",
        type=int,
        default=None,
        metavar="N",
        help="fewest samples per client (iid, pathological, dirichlet, exdir; default: 10)",
    )
    prep.add_argument(
        "--balanced",
        action="store_true",
        default=None,
        help="equal client sizes (iid) or equal per-class shares (pathological)",
    )
    prep.add_argument(
        "--train-fraction",
        type=float,
        default=0.75,
        metavar="F",
        help="share of each client's samples used for training (the rest tests)",
    )
    prep.add_argument("--seed", type=int, default=0, help="seed of the partition and split")
    prep.add_argument(
        "-o",
        "--option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="loader option, e.g. -o top_subjects=10, -o classes=10 "
        "(see docs/datasets.md; default: none)",
    )
    prep.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to create")
    prep.add_argument("--force", action="store_true", help="replace --out if it exists")
    prep.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the label-distribution plot here (default: no plot)",
    )
    prep.set_defaults(func=prepare)

    stats = sub.add_parser(
        "stats",
        help="per-client sizes and label counts; a PNG plot",
        description="Print a prepared directory's per-client table and write its "
        "label-distribution plot.",
    )
    stats.add_argument("manifest", type=Path, help="manifest.json or its directory")
    stats.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="FILE",
        help="plot path (default: label-distribution.png beside the manifest)",
    )
    stats.add_argument("--json", action="store_true", help="print the rows as JSON")
    stats.set_defaults(func=stats_cmd)

    serve = sub.add_parser(
        "serve",
        help="serve a prepared directory over HTTP (Range)",
        description="Serve a prepared directory's files over HTTP, as `htfl run` does during "
        'an experiment with delivery = "http"; Ctrl-C to stop.',
    )
    serve.add_argument("directory", type=Path, help="the prepared directory (with manifest.json)")
    serve.add_argument("--host", default="0.0.0.0", metavar="ADDRESS", help="address to listen on")
    serve.add_argument(
        "--port", type=integer(0, 65535), default=8090, help="port to listen on (0: any free)"
    )
    serve.set_defaults(func=serve_cmd)

    stage = sub.add_parser(
        "stage",
        help="lay shards out for the ansible datasets role (DIR/common, DIR/<host>)",
        description="Lay a preparation out per inventory host, for "
        '`htfl deploy provision --datasets DIR` (experiments with delivery = "ansible").',
    )
    stage.add_argument("manifest", type=Path, help="manifest.json or its directory")
    stage.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory to lay the shards out in"
    )
    group = stage.add_mutually_exclusive_group(required=True)
    group.add_argument("--hosts", help="inventory host names in client order, comma-separated")
    group.add_argument(
        "--experiment",
        type=Path,
        metavar="FILE",
        help="take the hosts from this experiment's [devices] names",
    )
    stage.set_defaults(func=stage_cmd)

    listing = sub.add_parser(
        "list",
        help="known datasets, upstream files and checksums",
        description="The datasets `htfl data prepare` knows, their upstream files and checksums.",
    )
    listing.set_defaults(func=list_cmd)

    imp = sub.add_parser(
        "import-pfllib",
        help="read a PFLlib/HtFLlib dataset folder into shards (same clients, same samples)",
        description="Read DIR (config.json, train/<i>.npz, test/<i>.npz as PFLlib and HtFLlib "
        "write them) into one shard per client plus manifest.json in --out, atomically: "
        "client i keeps exactly its samples, in their order. Every file is checked first "
        "(shapes, dtypes, label range, counts against config.json); pickles are loaded "
        "with a restricted unpickler (NumPy arrays in a dict only). Prints the [data] "
        "section for an experiment file.",
    )
    imp.add_argument(
        "folder", type=Path, metavar="DIR", help="the dataset folder, e.g. dataset/Cifar10"
    )
    imp.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to create")
    imp.add_argument(
        "--name", default="", help="dataset name in the manifest (default: the folder's name)"
    )
    imp.add_argument("--force", action="store_true", help="replace --out if it exists")
    imp.set_defaults(func=import_pfllib_cmd)


def _partition_options(args: argparse.Namespace) -> dict[str, Any]:
    """The partition options given on the command line; one the partition does not use is a
    mistake (it would be silently ignored)."""
    from htfl.datasets.partition import RELEVANT_FIELDS

    given = {
        key: getattr(args, key)
        for key in ("alpha", "classes_per_client", "min_samples", "balanced")
        if getattr(args, key) is not None
    }
    relevant = RELEVANT_FIELDS[args.partition]
    for key in given:
        if key not in relevant:
            raise ValueError(
                f"--{key.replace('_', '-')} does not apply to --partition {args.partition} "
                f"(it uses: {', '.join('--' + k.replace('_', '-') for k in relevant) or 'none'})"
            )
    return given


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = _value(value.strip())
    return out


def _expected(values: list[str]):
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    out = {}
    for value in values:
        name, sep, digest = value.rpartition("=")
        if not sep:
            raise ValueError(f"--expected-sha256 {value!r}: give NAME=HEX for each file")
        out[name] = digest
    return out


def prepare(args: argparse.Namespace) -> int:
    from htfl.datasets.integrity import ChecksumError
    from htfl.datasets.partition import PartitionSpec
    from htfl.datasets.store import write_shards
    from htfl.workstation.datasets.catalog import make_loader
    from htfl.workstation.datasets.upstream import UnverifiedSourceError

    try:
        spec = PartitionSpec(args.partition, **_partition_options(args))
        kwargs = _options(args.option or [])
        if args.dataset != "digits":
            kwargs.update(
                source=args.source,
                expected_sha256=_expected(args.expected_sha256 or []),
                download=args.download,
            )
        elif args.source or args.expected_sha256 or args.download:
            raise ValueError(
                "digits ships with htfl: no source to read "
                "(it takes no --source, --expected-sha256 or --download)"
            )
        loader = make_loader(args.dataset, **kwargs)
        console.print(f"loading {args.dataset} ...")
        loaded = loader.load()
        console.print(
            f"{loaded.num_samples} samples of shape {tuple(loaded.input_shape)}, "
            f"{loaded.num_classes} classes"
            + (f", {len(set(loaded.groups.tolist()))} groups" if loaded.groups is not None else "")
        )
        manifest = write_shards(
            loaded,
            spec,
            args.out,
            num_clients=args.num_clients,
            seed=args.seed,
            train_fraction=args.train_fraction,
            force=args.force,
        )
    except (ChecksumError, UnverifiedSourceError, FileNotFoundError, FileExistsError) as err:
        _error(err)
        return 2
    except (ValueError, KeyError) as err:
        _error(err)
        return 2
    _print_table(manifest)
    if args.png:
        from htfl.workstation.datasets.stats import plot_label_distribution

        console.print(f"plot: {plot_label_distribution(manifest, args.png)}")
    print(
        f"manifest {manifest.path}\ncontent_sha256 {manifest.content_sha256}\n\n"
        "[data] for an experiment file:\n"
        f'dataset = "{manifest.dataset}"\n'
        f'partition = "{manifest.partition["kind"]}"\n'
        + "".join(
            f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}\n"
            for k, v in manifest.partition.items()
            if k != "kind"
        )
        + f"train_fraction = {manifest.train_fraction}\n"
        f'manifest = "{manifest.path}"\n'
        f'shards_sha256 = "{manifest.content_sha256}"\n'
        'delivery = "http"'
    )
    return 0


def import_pfllib_cmd(args: argparse.Namespace) -> int:
    from htfl.workstation.datasets.pfllib import PfllibFormatError, import_pfllib

    try:
        manifest = import_pfllib(args.folder, args.out, name=args.name, force=args.force)
    except (PfllibFormatError, FileExistsError, OSError) as err:
        _error(err)
        return 2
    _print_table(manifest)
    print(
        f"manifest {manifest.path}\ncontent_sha256 {manifest.content_sha256}\n\n"
        "[data] for an experiment file:\n"
        f'dataset = "{manifest.dataset}"\n'
        'partition = "imported"\n'
        f'manifest = "{manifest.path}"\n'
        f'shards_sha256 = "{manifest.content_sha256}"\n'
        'delivery = "http"'
    )
    return 0


def _print_table(manifest) -> None:
    from htfl.workstation.datasets.stats import summary_rows

    rows = summary_rows(manifest)
    part = manifest.partition
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{manifest.dataset}: {part['kind']} "
        + " ".join(f"{k}={v}" for k, v in part.items() if k != "kind")
        + f", {manifest.num_clients} clients, seed {manifest.seed}"
    )
    for col in ("client", "group", "train", "test", "classes", "label counts (train+test)"):
        table.add_column(col, justify="left" if col.startswith(("group", "label")) else "right")
    for row in rows:
        table.add_row(
            str(row["client_index"]),
            "-" if row["group"] is None else str(row["group"]),
            str(row["num_train"]),
            str(row["num_test"]),
            str(row["num_classes_held"]),
            " ".join(f"{k}:{v}" for k, v in row["label_counts"].items()),
        )
    sizes = [r["num_train"] + r["num_test"] for r in rows]
    table.caption = (
        f"samples per client: min {min(sizes)}, mean {sum(sizes) / len(sizes):.1f}, "
        f"max {max(sizes)}; content {manifest.content_sha256[:16]}"
    )
    Console(width=200).print(table)


def stats_cmd(args: argparse.Namespace) -> int:
    from htfl.datasets.store import Manifest, ManifestError
    from htfl.workstation.datasets.stats import plot_label_distribution, summary_rows

    try:
        manifest = Manifest.read(args.manifest)
    except ManifestError as err:
        _error(err)
        return 2
    if args.json:
        print(json.dumps(summary_rows(manifest), indent=1))
    else:
        _print_table(manifest)
    png = args.png or manifest.directory / "label-distribution.png"
    console.print(f"plot: {plot_label_distribution(manifest, png)}")
    return 0


def serve_cmd(args: argparse.Namespace) -> int:
    from htfl.datasets.store import ManifestError
    from htfl.workstation.datasets.delivery import ShardServer

    try:
        server = ShardServer(args.directory, args.host, args.port)
    except (ManifestError, OSError) as err:
        _error(err)
        return 2
    console.print(
        f"serving {server.manifest.path} ({server.manifest.num_clients} shards) at "
        f"{server.url()}  content_sha256 {server.manifest.content_sha256}; Ctrl-C to stop"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def stage_cmd(args: argparse.Namespace) -> int:
    from htfl.datasets.store import ManifestError
    from htfl.workstation.datasets.delivery import stage_for_ansible

    if args.hosts:
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    else:
        from htfl.workstation.config.experiment import ConfigError, load_experiment

        try:
            hosts = list(load_experiment(args.experiment).devices.names)
        except ConfigError as err:
            _error(err)
            return 2
        if not hosts:
            _error(
                f"{args.experiment}: [devices] has no names; client order is only fixed by "
                "names (or give --hosts)"
            )
            return 2
    try:
        written = stage_for_ansible(args.manifest, hosts, args.out)
    except (ManifestError, ValueError) as err:
        _error(err)
        return 2
    console.print(
        f"staged {len(written) - 1} hosts under {args.out}; deliver with: "
        f"htfl deploy provision --datasets {args.out}"
    )
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from htfl.workstation.datasets.catalog import describe
    from htfl.workstation.datasets.upstream import UPSTREAM

    table = Table(title="datasets")
    for col in ("name", "what", "upstream file", "checksum"):
        table.add_column(col)
    for name, text in describe().items():
        files = UPSTREAM.get(name, ())
        if not files:
            table.add_row(name, text, "-", "-")
        for i, f in enumerate(files):
            table.add_row(
                name if i == 0 else "",
                text if i == 0 else "",
                f.name,
                " or ".join(str(c) for c in f.checksums) or "(none: --expected-sha256)",
            )
    Console(width=200, file=sys.stdout).print(table)
    return 0
