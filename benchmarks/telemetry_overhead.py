"""Overhead of the device telemetry (sampler + /metrics exporter) on this machine.

1. The sampler at 1 Hz and at 10 Hz, ~10 s each, on the machine's real /proc and
   /sys, each in a dedicated child process that runs nothing but
   ``DeviceTelemetry`` (sampler thread + HTTP server on loopback).  Reported:
   CPU share of one core of the sampler thread (``time.thread_time`` inside
   every sample) and of the whole child process (``os.times`` delta, which also
   covers the idle HTTP server thread), CPU per sample, and the child's RSS.
2. The latency of one scrape of ``/metrics`` over HTTP on loopback with ~100
   series (a synthetic 8-core RK3588-like tree), median and p95 of 50 scrapes.

Targets: <= 1 % of one core at 1 Hz, <= 5 % at 10 Hz, scrape < 50 ms.
The last line is ``telemetry_scrape_ms=<median>``.

Usage: python -m benchmarks.telemetry_overhead [--seconds 10] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TARGET_CPU_PCT = {1.0: 1.0, 10.0: 5.0}
TARGET_SCRAPE_MS = 50.0


# ----------------------------------------------------------------------------- child
def child(rate_hz: float, seconds: float) -> None:
    import psutil

    from htfl.device.telemetry import DeviceTelemetry

    telemetry = DeviceTelemetry("bench", "bench", "/", rate_hz=rate_hz)
    telemetry.start(0, host="127.0.0.1")
    time.sleep(1.0)  # settle: imports, first samples, thread start-up
    t0, wall0 = os.times(), time.monotonic()
    cpu0, seq0 = telemetry.sampler.cpu_seconds, telemetry.sampler.latest.seq
    time.sleep(seconds)
    t1, wall1 = os.times(), time.monotonic()
    cpu1, seq1 = telemetry.sampler.cpu_seconds, telemetry.sampler.latest.seq
    rss = psutil.Process().memory_info().rss
    telemetry.stop()
    print(
        json.dumps(
            {
                "wall": wall1 - wall0,
                "process_cpu": (t1.user + t1.system) - (t0.user + t0.system),
                "sampler_cpu": cpu1 - cpu0,
                "samples": seq1 - seq0,
                "rss": rss,
                "platform": telemetry.platform,
                "probes_up": sorted(p for p, up in telemetry.sampler.latest.probes.items() if up),
            }
        )
    )


def run_child(rate_hz: float, seconds: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(rate_hz), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- scrape
def _synthetic_tree(root: Path, cores: int = 8, zones: int = 12, ifaces: int = 15) -> None:
    def put(rel: str, text: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def stat(step: int) -> str:
        rows = [[1000 + 70 * step, 0, 300 + 10 * step, 9000 + 100 * step, 20, 0, 0, 0]] * cores
        agg = [sum(c) for c in zip(*rows, strict=True)]
        lines = ["cpu  " + " ".join(map(str, agg))]
        lines += [f"cpu{i} " + " ".join(map(str, r)) for i, r in enumerate(rows)]
        return "\n".join(lines) + "\n"

    put("proc/stat", stat(0))
    put("proc/meminfo", "MemTotal: 16139932 kB\nMemAvailable: 15000000 kB\n")
    dev = ["Inter-| Receive | Transmit", " face |bytes packets|bytes packets"]
    dev += [f"  eth{i}: {i * 1000} 1 0 0 0 0 0 0 {i * 500} 1 0 0 0 0 0 0" for i in range(ifaces)]
    put("proc/net/dev", "\n".join(dev) + "\n")
    for c in range(cores):
        put(f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq", "1800000\n")
    for z in range(zones):
        put(f"sys/class/thermal/thermal_zone{z}/type", f"zone{z}-thermal\n")
        put(f"sys/class/thermal/thermal_zone{z}/temp", f"{45000 + z}\n")
    put("sys/class/devfreq/fb000000.gpu/load", "37@600000000Hz\n")
    put("sys/kernel/debug/rknpu/load", "NPU load:  Core0: 25%, Core1:  0%, Core2:  7%,\n")
    root.joinpath("proc/stat.next").write_text(stat(1))


def scrape_latency(scrapes: int) -> dict:
    from htfl.device.telemetry import DeviceTelemetry

    with tempfile.TemporaryDirectory(prefix="htfl-bench-") as tmp:
        root = Path(tmp)
        _synthetic_tree(root)
        telemetry = DeviceTelemetry("bench", "rk3588-opi5b", root, platform="rk3588")
        phases = telemetry.phases
        phases.set_round(1)
        for phase in ("train", "evaluate", "serialise", "download", "upload", "idle"):
            phases.observe_phase(phase, 1.0)
        phases.set_clock_offset(0.001)
        server = telemetry.start(0, host="127.0.0.1")
        try:
            (root / "proc/stat.next").replace(root / "proc/stat")
            telemetry.sampler.sample_once()
            timings = []
            body = b""
            for i in range(scrapes + 5):
                t0 = time.perf_counter()
                with urllib.request.urlopen(server.url, timeout=10) as resp:
                    body = resp.read()
                if i >= 5:  # warm-up
                    timings.append((time.perf_counter() - t0) * 1000.0)
        finally:
            telemetry.stop()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
    return {"series": series, "median": statistics.median(timings), "p95": p95, "n": len(timings)}


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration per rate")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument(
        "--child", nargs=2, type=float, metavar=("RATE", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    rows: list[tuple[str, str, str, str]] = []

    def status(ok: bool) -> str:
        return "ok" if ok else "MISS"

    platform = "?"
    for rate in (1.0, 10.0):
        r = run_child(rate, args.seconds)
        platform = r["platform"]
        thread_pct = 100.0 * r["sampler_cpu"] / r["wall"]
        proc_pct = 100.0 * r["process_cpu"] / r["wall"]
        per_sample_ms = 1000.0 * r["sampler_cpu"] / max(1, r["samples"])
        target = TARGET_CPU_PCT[rate]
        label = f"sampler {rate:g} Hz"
        rows += [
            (
                f"{label}: sampler thread CPU, % of one core",
                f"{thread_pct:.3f} %",
                f"<= {target:g} %",
                status(thread_pct <= target),
            ),
            (
                f"{label}: whole process CPU, % of one core",
                f"{proc_pct:.3f} %",
                f"<= {target:g} %",
                status(proc_pct <= target),
            ),
            (
                f"{label}: samples in {r['wall']:.1f} s / CPU per sample",
                f"{r['samples']} / {per_sample_ms:.3f} ms",
                "-",
                "-",
            ),
            (f"{label}: RSS of the telemetry process", f"{r['rss'] / 2**20:.1f} MiB", "-", "-"),
        ]
    s = scrape_latency(args.scrapes)
    rows += [
        (
            f"scrape /metrics ({s['series']} series): median of {s['n']}",
            f"{s['median']:.2f} ms",
            f"< {TARGET_SCRAPE_MS:g} ms",
            status(s["median"] < TARGET_SCRAPE_MS),
        ),
        (
            f"scrape /metrics ({s['series']} series): p95 of {s['n']}",
            f"{s['p95']:.2f} ms",
            f"< {TARGET_SCRAPE_MS:g} ms",
            status(s["p95"] < TARGET_SCRAPE_MS),
        ),
    ]

    python = sys.version.split()[0]
    cpus = os.cpu_count()
    print(f"htfl device telemetry overhead: platform={platform}, cpus={cpus}, python {python}")
    header = ("measurement", "value", "target", "status")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))
    print(f"telemetry_scrape_ms={s['median']:.2f}")


if __name__ == "__main__":
    main()
