"""Emulation benchmark: does a simulated device behave like its class's profile?

Run (as root for the CPU rows; the link rows need no privileges):
``.venv/bin/python -m benchmarks.emulation [--classes a,b] [--work-seconds 1.0]``

One row per device class, for a fleet of one device of each class on this host
(:func:`htfl.workstation.fleet.profiles.plan_fleet`):

* **speed**: the profile's speed relative to the first class vs the measured ratio of training
  times. Each class's worker process imports torch and builds a cnn4 on digits-sized input
  unconstrained, is then moved into a cgroup with its class's quota (the same
  :mod:`htfl.workstation.fleet.cgroups` the local fleet uses, with the class's quota and CFS
  period), and times the same number of SGD steps (one torch thread), the time per step taken
  over whole CFS periods (from the first to the last return from a throttle). The workers run
  one after another, so none competes with another for the host's cores; the classes take
  turns ``--cpu-repeats`` times and each class's median counts. Goal: within 15%.
* **upload**: the profile's bandwidth vs the one measured from a 1 MB upload through the device's
  link relay (:mod:`htfl.workstation.fleet.relay`) to a sink that acknowledges the last byte,
  the bandwidth paced as the local fleet paces it (htb classes on ``lo`` where root and tc
  allow, :mod:`htfl.workstation.fleet.htb`, else the relay; the line under the table says);
  transfer time = time to the acknowledgement minus the measured round trip. Loss is off for
  this row (a loss costs a retransmission timeout; the loss row measures it). Goal: within 10%.
  The relay runs as the local fleet runs it (its own process, in a high-weight cgroup), and
  so does this process while it measures (it is apparatus too, like the relay).
* **RTT**: added round trip (median of 1-byte pings through the relay minus the median without
  it) vs twice the profile's one-way latency. Goal: within 10 ms or 10%.
* **loss**: configured vs observed per-segment loss: pings whose round trip exceeds the median
  by more than half a retransmission timeout were lost on the way out or back
  (p = 1 - sqrt(1 - delayed / pings)).
* **memory cap**: the class's cap, and whether it binds on this host (a cap above the host's
  memory cannot). Below the table, a process given a 64 MiB cap that allocates 256 MiB is
  checked to be OOM-killed and detected as such.

Then, with ``--lab-devices N`` (default 28, the simulated lab's boards; 0 skips it; needs root,
podman, podman-compose and debootstrap), the whole lab in containers on this host, one row:
the time ``htfl fleet up`` takes to bring up N containerised devices (classes in turn, from
deploy/inventory/sim-lab.yml; until the SuperLink answers and every container runs), the idle
memory per device container (its cgroup, as ``podman stats`` reports it), the lab's time
dilation, and one round's wall time (``htfl run``, FedAvg on cnn4 for every class, every
device selected; the round loop's ``round_seconds``, and the whole run's wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from htfl.devices import DEVICE_CLASSES
from htfl.ports import free_ports, wait_for_port
from htfl.workstation.fleet import htb
from htfl.workstation.fleet.cgroups import CgroupTree, unavailable_reason
from htfl.workstation.fleet.profiles import (
    CPU_PERIOD_US,
    DeviceLimits,
    LinkShape,
    plan_fleet,
)
from htfl.workstation.fleet.relay import retransmission_timeout
from tests.support.experiments import cnn4_experiment

MiB = 2**20


# --- CPU: one worker process per class, moved into its cgroup once torch is loaded ---------
def worker(steps: int) -> None:
    """``--worker``: build, warm up, say ``ready``; on ``go``, time ``steps`` SGD steps."""
    import torch

    from htfl.models.zoo import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("cnn4", (1, 8, 8), 10, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), time.process_time()
    ends, cpu = [], []
    for _ in range(steps):
        step()
        ends.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps([ends, cpu]), flush=True)


def whole_periods(ends: list[float], gap: float) -> tuple[int, int] | None:
    """The steps (first, last) that end first after the first and the last return from a
    throttle (a pause between two steps' ends longer than ``gap``): between them lie whole CFS
    periods, so the part-periods at the start and the end of a run (up to one burst each, 5 %
    of a run of 20 bursts) do not skew the rate. None when throttled fewer than twice."""
    marks = [i for i in range(1, len(ends)) if ends[i] - ends[i - 1] > gap]
    return (marks[0], marks[-1]) if len(marks) >= 2 else None


def time_steps(
    steps: int, tree: CgroupTree | None, limits: DeviceLimits | None
) -> tuple[float, float]:
    """Seconds per SGD step (over whole CFS periods when throttled) and the cores the worker
    used, in ``limits``' cgroup when given."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.emulation", "--worker", str(steps)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the training worker did not start")
        if tree is not None and limits is not None:
            group = tree.add(
                limits.name, limits.cpu_quota_us, limits.cpu_period_us, limits.memory_bytes
            )
            for procs in group.procs_files:
                procs.write_text(str(proc.pid))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        ends, cpu = json.loads(proc.stdout.readline())
        first, last = -1, steps - 1  # the whole run (from "go"), unless throttled
        if limits is not None:  # throttled for (period - quota) in each period
            throttled = (limits.cpu_period_us - limits.cpu_quota_us) / 1e6
            first, last = (throttled > 0 and whole_periods(ends, throttled / 2)) or (first, last)
        wall = ends[last] - (ends[first] if first >= 0 else 0.0)
        used = cpu[last] - (cpu[first] if first >= 0 else 0.0)
        return wall / (last - first), used / wall
    finally:
        proc.kill()
        proc.wait()


def steps_for(work_seconds: float) -> int:
    """How many steps take ``work_seconds`` of CPU time here (CPU, not wall: the host may be
    busy, and every class must run for many CFS periods)."""
    probe = 50
    per_step, used = time_steps(probe, None, None)
    return max(5, round(work_seconds / (per_step * used)))


# --- link: an echo and a sink behind the relay process -------------------------------------
async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``e``: echo everything; ``s``: 8 bytes say how many follow, the last one acknowledged.
    (A connection that closes at once, such as the relay's readiness probe, is no error.)"""
    try:
        mode = await reader.readexactly(1)
        if mode == b"s":
            size = int.from_bytes(await reader.readexactly(8), "big")
            await reader.readexactly(size)
            writer.write(b"k")
            await writer.drain()
        else:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _pings(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"e")
    rtts = []
    for _ in range(count + 1):  # the first one opens the line
        t0 = time.perf_counter()
        writer.write(b"p")
        await writer.drain()
        await reader.readexactly(1)
        rtts.append(time.perf_counter() - t0)
    writer.close()
    return rtts[1:]


async def _upload(port: int, size: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"s")
    await writer.drain()
    t0 = time.perf_counter()
    writer.write(size.to_bytes(8, "big") + bytes(size))
    await writer.drain()
    await reader.readexactly(1)
    elapsed = time.perf_counter() - t0
    writer.close()
    return elapsed


def start_relay(
    upstream: int,
    links: dict[str, LinkShape],
    work: Path,
    tree: CgroupTree | None,
    ports: dict[str, int],
    pace: bool,
) -> subprocess.Popen:
    """The relay as the local fleet runs it: its own process, one port per named link (pacing
    the bandwidth itself unless the kernel does)."""
    spec = {
        "upstream": f"127.0.0.1:{upstream}",
        "seed": 1,
        "devices": [
            {"name": n, "port": ports[n], "link": asdict(k), "pace": pace} for n, k in links.items()
        ],
    }
    (work / "relay.json").write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "htfl.workstation.fleet.relay", str(work / "relay.json")]
    if tree is not None:  # as the local fleet runs it: high CPU weight, no quota
        argv = tree.add_service("link-relay").wrap(argv)
    log = open(work / "relay.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    for port in ports.values():
        wait_for_port(port, 60, proc, work / "relay.log", what="link relay")
    return proc


def root_procs_files(tree: CgroupTree) -> list[Path]:
    if tree.version == "v2":
        return [tree.root / "cgroup.procs"]
    return [tree.root / c / "cgroup.procs" for c in ("cpu", "memory")]


def measure_link(link: LinkShape, payload: int, pings: int, loss_pings: int, repeat: int) -> dict:
    async def run(work: Path) -> dict:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        direct = server.sockets[0].getsockname()[1]
        tree = CgroupTree() if unavailable_reason() is None else None
        links = {"lossless": replace(link, loss=0.0), "lossy": link}
        ports = dict(zip(links, free_ports(len(links)), strict=True))
        shaper, paced_by = htb.shape_loopback(
            {ports[n]: link.bandwidth_bit_s for n, link in links.items()}
        )
        try:
            relay = start_relay(direct, links, work, tree, ports, pace=shaper is None)
        except BaseException:
            if shaper is not None:
                shaper.remove()
            raise
        if tree is not None:  # this process (client and server) is apparatus too, like the relay
            for procs in tree.add_service("bench-client").procs_files:
                procs.write_text(str(os.getpid()))
        try:
            base = statistics.median(await _pings(direct, pings))
            rtt = statistics.median(await _pings(ports["lossless"], pings))
            uploads = [await _upload(ports["lossless"], payload) for _ in range(repeat)]
            transfer = statistics.median(uploads) - rtt
            lossy = await _pings(ports["lossy"], loss_pings)
        finally:
            relay.terminate()
            relay.wait()
            if shaper is not None:
                shaper.remove()
            server.close()
            if tree is not None:
                for procs in root_procs_files(tree):  # back out, so the groups can go
                    procs.write_text(str(os.getpid()))
                tree.remove()
        threshold = statistics.median(lossy) + retransmission_timeout(link) / 2
        delayed = sum(r > threshold for r in lossy) / len(lossy)
        return {
            "added_rtt_ms": (rtt - base) * 1e3,
            "bandwidth_mbit_s": (payload + 8) * 8 / transfer / 1e6,
            "observed_loss": 1 - math.sqrt(1 - delayed),
            "paced_by": paced_by,
        }

    with tempfile.TemporaryDirectory(prefix="htfl-emulation-") as work:
        return asyncio.run(run(Path(work)))


def oom_check() -> str:
    """A 64 MiB-capped process allocating 256 MiB: killed, and the OOM kill counted."""
    if (why := unavailable_reason()) is not None:
        return f"not run: {why}"
    tree = CgroupTree()
    try:
        group = tree.add("oom-check", CPU_PERIOD_US, CPU_PERIOD_US, 64 * MiB)
        argv = group.wrap([sys.executable, "-c", "b = bytearray(256 * 2**20); print('alive')"])
        rc = subprocess.run(argv, capture_output=True, timeout=60).returncode
        return f"exit {rc}, OOM kills counted {group.oom_kills()}"
    finally:
        tree.remove()


# --- the whole lab in containers: fleet up, idle memory, dilation, one round ---------------
def lab_experiment(hosts: list, port: int, rounds: int) -> str:
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h.device_class] = counts.get(h.device_class, 0) + 1
    return cnn4_experiment(
        "lab-round",
        counts,
        rounds=rounds,
        train_fraction=0.5,
        deadline_seconds=1800,
        # at a large dilation the slowest classes' agents take minutes to import torch and join
        devices_extra="wait_for_devices_seconds = 1800",
        superlink_port=port,
    )


def lab_round(fleet, plan, hosts: list, workdir: Path, rounds: int = 1) -> dict:  # noqa: ANN001
    """``htfl run`` of ``rounds`` round(s) against the lab: the last round's wall time (the
    round loop's own) and the run's. The lab is recorded where ``htfl fleet up`` records it,
    so the run finds it and records its dilation."""
    from htfl.workstation.fleet.emulation import LABS, plan_record, write_lab

    repo = Path(__file__).resolve().parents[1]
    port = fleet.opts.port
    exp = workdir / "lab-round.toml"
    exp.write_text(lab_experiment(hosts, port, rounds))
    results = workdir / "results"
    applied = {"cpu": "compose cpus", "memory": "compose mem_limit", "link": fleet.opts.link}
    lab = write_lab(
        repo / LABS / fleet.opts.project,
        "compose",
        f"127.0.0.1:{port}",
        {"engine": "compose", **plan_record(plan, applied)},
    )
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "htfl", "run", str(exp), "--results", str(results)]
            + ["--timeout", "3600"]
            # 28 containers on 2 cores: the SuperLink's container may not answer for a while
            + ["--superlink-lost-after", "900"],
            capture_output=True,
            text=True,
            timeout=4000,
            cwd=repo,
        )
    finally:
        lab.unlink(missing_ok=True)
    run_s = time.monotonic() - start
    out = results / "lab-round"
    events = (
        [
            json.loads(line)
            for line in (out / "progress.jsonl").read_text().splitlines()
            if line.strip()
        ]
        if (out / "progress.jsonl").exists()
        else []
    )
    rounds_done = [e for e in events if e.get("event") == "round"]
    if done.returncode != 0 or not rounds_done:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"htfl run against the lab failed (exit {done.returncode}):\n{tail}")
    last = rounds_done[-1]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "round_s": last["round_seconds"],
        "answered": last["answered"],
        "run_s": run_s,
        "recorded_dilation": summary.get("time_dilation"),
    }


def lab_table(devices: int, settle: float) -> None:
    from benchmarks.containers import measure
    from htfl.workstation.fleet.image import IMAGE, build_image

    build_image(IMAGE)
    with tempfile.TemporaryDirectory(prefix="htfl-lab-") as tmp:
        r = measure(devices, settle, Path(tmp), during=lab_round)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nthe simulated lab in containers on {os.cpu_count()} host cores (load {load}):")
    print(
        "| devices | fleet up (s) | idle memory/device median (MB) | max (MB) "
        "| time dilation | recorded in summary.json | one round (s) | devices answered "
        "| htfl run, 1 round (s) | fleet down (s) |"
    )
    print("|" + "---|" * 10)
    print(
        f"| {r['devices']} | {r['up_s']:.0f} | {r['mem_median_mb']:.0f} | {r['mem_max_mb']:.0f} "
        f"| {r['dilation']:.3g} | {r['recorded_dilation']} | {r['round_s']:.1f} "
        f"| {r['answered']}/{r['devices']} | {r['run_s']:.0f} | {r['down_s']:.0f} |",
        flush=True,
    )


def pct(measured: float, expected: float) -> str:
    return f"{(measured / expected - 1) * 100:+.1f}%" if expected else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(DEVICE_CLASSES))
    parser.add_argument("--work-seconds", type=float, default=1.0, help="CPU work per class")
    parser.add_argument("--cpu-repeats", type=int, default=3, help="timed runs per class (median)")
    parser.add_argument("--payload-bytes", type=int, default=1_000_000)
    parser.add_argument("--pings", type=int, default=40)
    parser.add_argument("--loss-pings", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=9, help="uploads per class (median)")
    parser.add_argument(
        "--lab-devices",
        type=int,
        default=28,
        help="the containerised lab's size for its row (0: skip it)",
    )
    parser.add_argument("--lab-settle", type=float, default=30.0, help="idle seconds before memory")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker)
        return 0
    classes = [c for c in args.classes.split(",") if c]
    plan = plan_fleet([(f"{c}-01", c) for c in classes])
    no_cgroups = unavailable_reason()
    times: dict[str, float] = {}
    achieved: dict[str, float] = {}  # CPU seconds per wall second: the quota as it bound
    if no_cgroups is None:
        steps = steps_for(args.work_seconds)
        tree = CgroupTree()
        # per class: (seconds per step, cores used) of each run
        runs: dict[str, list[tuple[float, float]]] = {d.device_class: [] for d in plan.devices}
        try:
            # the classes in turn, --cpu-repeats times: a change in the host's load between
            # one class's run and the next's falls on every class alike, and the median drops it
            for _ in range(args.cpu_repeats):
                for d in plan.devices:
                    runs[d.device_class].append(time_steps(steps, tree, d))
        finally:
            tree.remove()
        for c, pairs in runs.items():
            times[c] = statistics.median(per_step for per_step, _ in pairs)
            achieved[c] = statistics.median(used for _, used in pairs)
    # The profile fixes ratios only: scale the measured speeds so their geometric mean is the
    # profile's (no single class is the yardstick and carries all the noise).
    speeds = {}
    if times:
        scale = math.exp(
            statistics.mean(
                math.log(d.relative_speed * times[d.device_class]) for d in plan.devices
            )
        )
        speeds = {c: scale / t for c, t in times.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"host load average (1, 5, 15 min) at the end of the CPU runs: {load}")
    print(
        f"fleet: one device of each of {len(classes)} classes on {plan.host_cores:g} host cores;"
        f" time dilation {plan.time_dilation:.3g}; measured speeds scaled to the profile's "
        "geometric mean"
    )
    print(
        "| class | CPU quota (cores) | CFS period (ms) | used (cores) | speed: profile "
        "| speed: measured | err "
        "| link Mbit/s | measured Mbit/s | err | added RTT: profile ms | measured ms "
        "| loss: profile | observed (pings) | memory cap MiB | binds here |"
    )
    print("|" + "---|" * 16)
    paced_by = set()
    for d in plan.devices:
        link = measure_link(d.link, args.payload_bytes, args.pings, args.loss_pings, args.repeat)
        paced_by.add(link["paced_by"])
        expected_speed = d.relative_speed
        if speeds:
            measured_speed = speeds[d.device_class]
            speed = (
                f"{achieved[d.device_class]:.3f} | {expected_speed:.3f} | {measured_speed:.3f} "
                f"| {pct(measured_speed, expected_speed)}"
            )
        else:
            speed = f"- | {expected_speed:.3f} | not measured ({no_cgroups}) | -"
        bw = d.link.bandwidth_bit_s / 1e6
        binds = "yes" if d.memory_bytes < plan.host_memory_bytes else "no (above host memory)"
        print(
            f"| {d.device_class} | {d.cpu_cores:.3f} | {d.cpu_period_us / 1e3:g} | {speed} "
            f"| {bw:g} | {link['bandwidth_mbit_s']:.1f} | {pct(link['bandwidth_mbit_s'], bw)} "
            f"| {2 * d.link.latency_s * 1e3:.1f} | {link['added_rtt_ms']:.1f} "
            f"| {d.link.loss:g} | {link['observed_loss']:.4f} ({args.loss_pings}) "
            f"| {d.memory_bytes // MiB} | {binds} |"
        )
    print(f"link bandwidth: {', '.join(sorted(paced_by))}; latency, jitter, loss: the relay")
    print(f"memory cap enforcement (64 MiB cap, 256 MiB allocated): {oom_check()}")
    print(f"emulation_time_dilation={plan.time_dilation:.3g}", flush=True)
    if args.lab_devices > 0:
        lab_table(args.lab_devices, args.lab_settle)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
