"""Per-client statistics of a prepared dataset, and the label-distribution plot.

The plot is the familiar one of PFLlib/HtFLlib papers: clients along x, classes along y,
one circle per (client, class) whose area is proportional to that client's number of
samples of the class (train + test), so iid looks like a full grid of equal dots,
pathological like k dots per column, and Dirichlet like a few big dots per column.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from htfl.datasets.store import Manifest

__all__ = ["count_matrix", "plot_label_distribution", "summary_rows"]


def count_matrix(manifest: Manifest, split: str = "all") -> np.ndarray:
    """``(num_clients, num_classes)`` sample counts; split is "train", "test" or "all"."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    counts = np.zeros((manifest.num_clients, manifest.num_classes), dtype=np.int64)
    for entry in manifest.clients():
        if split in ("train", "all"):
            for label, n in entry.label_counts.items():
                counts[entry.client_index, label] += n
        if split in ("test", "all"):
            for label, n in entry.test_label_counts.items():
                counts[entry.client_index, label] += n
    return counts


def summary_rows(manifest: Manifest) -> list[dict]:
    """One row per client: index, group, sizes, classes held and label counts."""
    rows = []
    for entry in manifest.clients():
        total = {**entry.test_label_counts}
        for label, n in entry.label_counts.items():
            total[label] = total.get(label, 0) + n
        rows.append(
            {
                "client_index": entry.client_index,
                "group": entry.group,
                "num_train": entry.num_train,
                "num_test": entry.num_test,
                "num_classes_held": len(total),
                "label_counts": dict(sorted(total.items())),
                "bytes": entry.bytes,
            }
        )
    return rows


def plot_label_distribution(
    manifest: Manifest, out: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Write the bubble plot (PNG) of samples per client and class; return its path."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "the label-distribution plot needs matplotlib: pip install 'htfl[data]'"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = count_matrix(manifest, "all")
    clients, classes = counts.shape
    xs, ys = np.nonzero(counts)
    sizes = counts[xs, ys].astype(np.float64)
    biggest = sizes.max() if sizes.size else 1.0
    # Area in points^2: the biggest bubble fills about one grid cell.
    cell = max(2.0, min(400.0 / max(clients, 1), 400.0 / max(classes, 1)) * 1.6)
    area = (sizes / biggest) * cell**2
    width = min(max(6.0, clients * 0.25 + 2.0), 30.0)
    height = min(max(4.0, classes * 0.25 + 1.5), 24.0)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.scatter(xs, ys, s=area, c="tab:red", alpha=0.6, edgecolors="none")
    ax.set_xlim(-1, clients)
    ax.set_ylim(-1, classes)
    ax.set_xlabel("client")
    ax.set_ylabel("class")
    step_x = max(1, clients // 25)
    step_y = max(1, classes // 25)
    ax.set_xticks(range(0, clients, step_x))
    ax.set_yticks(range(0, classes, step_y))
    ax.grid(True, linewidth=0.3, alpha=0.5)
    part = manifest.partition
    detail = ", ".join(f"{k}={v}" for k, v in part.items() if k != "kind")
    heading = title or (
        f"{manifest.dataset}: {part['kind']}"
        + (f" ({detail})" if detail else "")
        + f", {clients} clients, seed {manifest.seed}"
    )
    heading = textwrap.fill(heading, width=int(width * 12))
    ax.set_title(
        f"{heading}\ncircle area = samples of the class on the client (largest: {int(biggest)})",
        fontsize=10,
    )
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
