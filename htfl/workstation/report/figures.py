"""The report's figures (matplotlib, no display needed): each function returns one Figure.

Figures are built with matplotlib's object API (no pyplot, no global state), so rendering
needs no display and leaks no figures. Comparison figures put every run on shared axes;
per-run figures show one run's devices and classes.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from htfl.workstation.report.series import Series

#: Above this many devices, per-device lines carry no legend (the classes' figures do).
LEGEND_DEVICES = 12

IDLE = "idle (waiting for others)"
AGGREGATE = "server: aggregate"
PHASES = (  # (label, colour) of a device's round, in the order they happen
    ("wire + Flower (down and up)", "#c7c7c7"),
    ("download (SuperNode to worker)", "#9edae5"),
    ("deserialise", "#ffbb78"),
    ("train", "#1f77b4"),
    ("serialise", "#ff7f0e"),
    ("other handling", "#8c564b"),
    ("evaluate", "#2ca02c"),
)


def _marker(s: Series) -> str:
    """Points on a line only when there are few (a lone round is otherwise invisible)."""
    return "." if len(s.run.rounds) <= 50 else ""


def _figure(ncols: int = 2, height: float = 3.6) -> tuple[Figure, list]:
    # fixed margins: constrained layout measured every tick label, the largest cost of a report
    fig = Figure(figsize=(6.0 * ncols, height))
    fig.subplots_adjust(left=0.09 / ncols * 2, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    return fig, axes


def _label(s: Series) -> str:
    return f"{s.run.id} ({s.run.method})"


def _legend(ax, n: int) -> None:
    if 0 < n <= LEGEND_DEVICES:
        ax.legend(fontsize="small")


def _mark_carried(ax, x: np.ndarray, s: Series, colour) -> None:
    carried = s.evaluated() & (s.carried > 0)
    if np.any(carried):
        ax.plot(
            x[carried],
            s.mean[carried],
            "o",
            mfc="none",
            color=colour,
            label=f"{s.run.id}: a device's last accuracy carried forward",
        )


def accuracy(all_series: list[Series]) -> Figure:
    fig, (by_round, by_time) = _figure()
    for s in all_series:
        ok = s.evaluated()
        (line,) = by_round.plot(s.run.rounds[ok], s.mean[ok], marker=_marker(s), label=_label(s))
        _mark_carried(by_round, s.run.rounds.astype(float), s, line.get_color())
        timed = ok & ~np.isnan(s.elapsed)
        by_time.plot(s.elapsed[timed], s.mean[timed], marker=_marker(s), color=line.get_color())
        _mark_carried(by_time, s.elapsed, s, line.get_color())
    by_round.set(xlabel="round", ylabel="mean test accuracy", title="Accuracy per round")
    by_time.set(xlabel="wall-clock time (s)", ylabel="mean test accuracy", title="Accuracy in time")
    by_round.legend(fontsize="small")
    return fig


def accuracy_detail(s: Series) -> Figure:
    fig, (by_class, by_device) = _figure()
    for cls, mean in s.class_mean.items():
        ok = ~np.isnan(mean)
        by_class.plot(s.run.rounds[ok], mean[ok], marker=_marker(s), label=cls)
    acc = s.run.grid["test_accuracy"]
    for j, device in enumerate(s.run.devices):
        ok = ~np.isnan(acc[:, j])
        by_device.plot(s.run.rounds[ok], acc[ok, j], lw=0.8, label=device)
    by_class.set(xlabel="round", ylabel="mean test accuracy", title="Per device class")
    by_device.set(xlabel="round", ylabel="test accuracy", title="Per device (own test split)")
    by_class.legend(fontsize="small")
    _legend(by_device, len(s.run.devices))
    return fig


def energy(all_series: list[Series]) -> Figure:
    fig, (cumulative, versus) = _figure()
    for s in all_series:
        if not s.has_energy:
            continue
        (line,) = cumulative.plot(s.run.rounds, s.cumulative_energy, label=_label(s))
        ok = s.evaluated()
        versus.plot(s.cumulative_energy[ok], s.mean[ok], marker=_marker(s), color=line.get_color())
    cumulative.set(xlabel="round", ylabel="energy, all devices (J)", title="Cumulative energy")
    versus.set(
        xlabel="cumulative energy, all devices (J)",
        ylabel="mean test accuracy",
        title="Accuracy against energy",
    )
    cumulative.legend(fontsize="small")
    return fig


def energy_detail(s: Series) -> Figure:
    fig, (by_device, by_class) = _figure()
    for j, device in enumerate(s.run.devices):
        by_device.plot(s.run.rounds, s.energy[:, j], lw=0.8, label=device)
    for cls in s.classes:
        by_class.plot(s.run.rounds, s.class_energy(cls), label=cls)
    by_device.set(xlabel="round", ylabel="energy (J)", title="Energy per round, per device")
    by_class.set(xlabel="round", ylabel="energy (J)", title="Energy per round, per device class")
    _legend(by_device, len(s.run.devices))
    by_class.legend(fontsize="small")
    return fig


def to_target(all_series: list[Series], target: float) -> Figure:
    height = 1.2 + 0.45 * len(all_series)
    fig, (time_ax, energy_ax) = _figure(height=height)
    fig.subplots_adjust(left=0.16, wspace=0.6, bottom=0.55 / height, top=1 - 0.35 / height)
    labels = [_label(s) for s in all_series]
    y = np.arange(len(all_series))
    for ax, k, unit in ((time_ax, 1, "s"), (energy_ax, 2, "J")):
        values = [s.to_target(target)[k] for s in all_series]
        ax.barh(y, [v if v is not None else 0.0 for v in values], color="#1f77b4")
        for yi, v in zip(y, values, strict=True):
            ax.annotate(
                "not reached" if v is None else f"{v:.4g} {unit}",
                (v or 0.0, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
    time_ax.set(xlabel="seconds", title=f"Time to mean accuracy {target:.3f}")
    energy_ax.set(xlabel="joules, all devices", title=f"Energy to mean accuracy {target:.3f}")
    return fig


def round_time(all_series: list[Series]) -> Figure:
    fig, axes = _figure(ncols=len(all_series))
    for ax, s in zip(axes, all_series, strict=True):
        rt = s.run.grid["round_trip_seconds"]
        answered = np.where(np.isin(s.run.status, ("ok", "set_aside")), rt, np.nan)
        fastest = np.full(len(s.run.rounds), np.nan)
        has = np.any(~np.isnan(answered), axis=1)
        fastest[has] = np.nanmin(answered[has], axis=1)
        fastest = np.minimum(np.nan_to_num(fastest), np.nan_to_num(s.wait_seconds))
        slowest = np.nan_to_num(s.wait_seconds) - fastest
        server = np.maximum(0.0, np.nan_to_num(s.round_seconds - s.wait_seconds))
        ax.stackplot(
            s.run.rounds,
            fastest,
            slowest,
            server,
            labels=("until the fastest device replied", "waiting for the slowest", "server work"),
            step="mid",
        )
        ax.set(xlabel="round", ylabel="seconds", title=f"Round time: {_label(s)}")
        ax.legend(fontsize="small")
    return fig


def bytes_per_round(all_series: list[Series]) -> Figure:
    fig, (down, up) = _figure()
    for s in all_series:
        down.plot(s.run.rounds, np.nansum(s.bytes_down, axis=1), label=_label(s))
        up.plot(s.run.rounds, np.nansum(s.bytes_up, axis=1), label=_label(s))
    down.set(xlabel="round", ylabel="bytes, all devices", title="Bytes down per round")
    up.set(xlabel="round", ylabel="bytes, all devices", title="Bytes up per round")
    down.legend(fontsize="small")
    return fig


def bytes_detail(s: Series) -> Figure:
    fig, (down, up) = _figure()
    for j, device in enumerate(s.run.devices):
        down.plot(s.run.rounds, s.bytes_down[:, j], lw=0.8, label=device)
        up.plot(s.run.rounds, s.bytes_up[:, j], lw=0.8, label=device)
    down.set(xlabel="round", ylabel="bytes", title="Bytes down per round, per device")
    up.set(xlabel="round", ylabel="bytes", title="Bytes up per round, per device")
    _legend(down, len(s.run.devices))
    return fig


def gantt_round(s: Series) -> int | None:
    """The round the timeline shows: the last in which every device answered, else the last."""
    if not len(s.run.rounds):
        return None
    complete = np.all(np.isin(s.run.status, ("ok", "set_aside")), axis=1)
    index = np.nonzero(complete)[0]
    return int(index[-1]) if len(index) else len(s.run.rounds) - 1


def _val(x: float) -> float:
    return 0.0 if math.isnan(x) else float(x)


def gantt(s: Series) -> Figure:
    i = gantt_round(s)
    n = len(s.run.devices)
    height = 1.4 + 0.3 * (n + 1)
    fig = Figure(figsize=(12.0, height))
    fig.subplots_adjust(left=0.16, right=0.78, bottom=0.6 / height, top=1 - 0.4 / height)
    ax = fig.add_subplot()
    if i is None:
        return fig
    g = {k: v[i] for k, v in s.run.grid.items()}
    answered = np.isin(s.run.status[i], ("ok", "set_aside"))
    trips = g["round_trip_seconds"][answered]
    train_exchange = float(np.nanmax(trips)) if len(trips) and np.any(~np.isnan(trips)) else 0.0
    aggregate = _val(s.aggregate_seconds[i])
    eval_start = train_exchange + aggregate
    end = _val(s.round_seconds[i]) or eval_start + _val(float(np.nanmax(g["evaluate_seconds"])))
    colours = {IDLE: "#f2f2f2", **dict(PHASES), AGGREGATE: "#d62728"}  # drawn in this order
    boxes: dict[str, list[tuple[float, float, int]]] = {p: [] for p in colours}

    def bar(y: int, start: float, width: float, phase: str) -> None:
        if width > 0:
            boxes[phase].append((start, width, y))

    for j in range(n):
        bar(j, 0.0, end, IDLE)
        if not answered[j]:
            status = s.run.status[i, j] or "no row"
            ax.annotate(status, (end / 2, j), ha="center", va="center", fontsize="small")
            continue
        rt, download, handle = (
            _val(g[k][j]) for k in ("round_trip_seconds", "download_seconds", "handle_seconds")
        )
        parts = [
            _val(g[k][j]) for k in ("deserialise_seconds", "train_seconds", "serialise_seconds")
        ]
        t = 0.0
        for phase, width in (
            (PHASES[0][0], max(0.0, rt - download - handle)),
            (PHASES[1][0], download),
            (PHASES[2][0], parts[0]),
            (PHASES[3][0], parts[1]),
            (PHASES[4][0], parts[2]),
            (PHASES[5][0], max(0.0, handle - sum(parts))),
        ):
            bar(j, t, width, phase)
            t += width
        bar(j, eval_start, _val(g["evaluate_seconds"][j]), "evaluate")
    bar(n, train_exchange, aggregate, AGGREGATE)
    # one collection per phase (a patch per box took seconds for 50 devices)
    for phase, items in boxes.items():
        if items:
            verts = [
                [(x, y - 0.35), (x + w, y - 0.35), (x + w, y + 0.35), (x, y + 0.35)]
                for x, w, y in items
            ]
            ax.add_collection(PolyCollection(verts, facecolors=colours[phase], label=phase))
    ax.set_xlim(0.0, max(end, eval_start) * 1.02 or 1.0)
    ax.set_ylim(n + 0.6, -0.6)
    ax.set_yticks(range(n + 1), [*s.run.devices, "server"])
    ax.set(
        xlabel="seconds since the round's training messages were sent",
        title=f"Round {int(s.run.rounds[i])}: {_label(s)}",
    )
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def power(s: Series) -> Figure | None:
    """Each device's raw power trace (one line per meter scope), from the run's start."""
    traces = {d: t for d, t in s.run.power.items() if len(t["t"])}
    if not traces:
        return None
    fig, (ax,) = _figure(ncols=1)
    fig.set_size_inches(12.0, 3.6)
    fig.subplots_adjust(left=0.07, right=0.8)
    t0 = min(float(t["t"].min()) for t in traces.values())
    lines = 0
    for device, trace in traces.items():
        for scope in sorted(set(trace["scope"])):
            at = trace["scope"] == scope
            label = f"{device} ({scope})" if scope else device
            ax.plot(trace["t"][at] - t0, trace["watts"][at], lw=0.7, label=label)
            lines += 1
    ax.set(xlabel="seconds", ylabel="watts", title=f"Power traces: {_label(s)}")
    if lines <= LEGEND_DEVICES:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
