"""Power-measurement benchmark: serial stream throughput/CPU and energy integration error.

Run: ``.venv/bin/python -m benchmarks.power [--seconds 3]``

Throughput. An emulated meter runs in a *child process* on a pseudo-terminal; the reader is
the real driver + :class:`~htfl.device.power.sampler.SerialSampler` thread in this process, with a
consumer thread draining its buffer every 250 ms. Reported: samples/s, drops and this
process's CPU time (``resource.getrusage``, all threads) as a share of one core.

* request/response (UM25C byte protocol, WT310 SCPI): the emulator answers each request as
  soon as it arrives; unpaced (the pty maximum) and paced at 1,000 requests/s (split-phase:
  request, sleep, collect). Drops = replies the emulator sent that did not become samples +
  frame errors + buffer overflows.
* continuous stream (``t_us,volts,amps`` lines pushed by the emulator in 10 ms bursts):
  drops = gaps in the device's sample counter + frame errors + buffer overflows.

Energy error. A square wave between idle and busy watts, whose energy is known analytically,
goes through the UM25C pty pipeline (1 kS/s) and through the continuous stream (1 kS/s); the
samples are integrated with :func:`htfl.device.power.energy.attribute` over their span. A third row
samples the wave synthetically at a real UM meter's rate (5 S/s) for reference.

Per meter kind at its real rate. Each UM model with its emulator paced at 9600 baud 8N1 (a
frame takes 135 ms on the wire), read back to back; the WT310 polled every 100 ms (its update
rate); Shelly and Tasmota plugs (HTTP emulators) polled every second. Each run measures a
2.0/7.5 W square wave of 2 s period: samples/s, CPU of this process, and the energy error
against the wave's exact energy over the same span.

Faults. A UM meter (UM34C; UM25C for the corrupted byte, the model without a checksum) paced
at 9600 baud, whose current encodes the moment the reading was latched (1 mA per ms), read
back to back by a sampler; each fault is injected once: detected (which counter moved),
resynchronised (every sample after it carries its own request's reading, none shifted),
gap reported (the sampler's gap count), and samples lost (missing slots at the meter's period
over the run: a re-request costs one, a pause of a fraction of a period may round to one).

The last line is ``power_energy_error_pct=<x>``: the larger of the two pipeline errors.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass

from htfl.device.power.config import MeterSpec, open_meter
from htfl.device.power.drivers.scpi import ScpiMeter
from htfl.device.power.drivers.stream import StreamMeter
from htfl.device.power.drivers.um import UMMeter
from htfl.device.power.energy import attribute
from htfl.device.power.meter import Meter, PowerSample
from htfl.device.power.sampler import Sampler, SerialSampler
from htfl.ports import free_port
from tests.support.meter_emulators import (
    PtyEmulator,
    ScpiEmulator,
    StreamEmulator,
    UMEmulator,
    constant,
    square_wave,
    square_wave_energy,
)
from tests.support.plug_emulators import PlugEmulator

IDLE_W, BUSY_W, PERIOD_S = 2.0, 7.5, 0.5


UM_KINDS = ("um24c@9600", "um25c@9600", "um34c@9600")
PLUG_KINDS = ("shelly", "tasmota")


def _make_emulator(
    kind: str, link: str, wave: tuple | None, rate_hz: float
) -> PtyEmulator | PlugEmulator:
    waveform = square_wave(*wave) if wave else constant(5.0, 0.5)
    if kind == "um25c":
        return UMEmulator("um25c", waveform, link, baud=None)  # the pty's own speed
    if kind in UM_KINDS:
        return UMEmulator(kind.split("@")[0], waveform, link)
    if kind in PLUG_KINDS:  # link is the port number here
        return PlugEmulator(kind, square_wave(*wave[:4], 230.0, wave[5]) if wave else waveform,
                            port=int(link))  # fmt: skip
    if kind == "scpi":
        return ScpiEmulator(waveform, link)
    return StreamEmulator(waveform, link, rate_hz=rate_hz, start_command="START")


def _emulator_main(kind, link, wave, rate_hz, ready, stop, results) -> None:
    emu = _make_emulator(kind, link, wave, rate_hz)
    emu.start()
    ready.set()
    stop.wait()
    emu.stop()
    sent = {"scpi": "queries_answered", "stream": "lines_sent"}.get(kind, "frames_sent")
    results.put({"sent": getattr(emu, sent)})


def _make_meter(kind: str, link: str, rate_hz: float) -> Meter:
    if kind == "um25c":
        return UMMeter(link, model="um25c", timeout=0.5, device="bench")
    if kind in UM_KINDS:
        return UMMeter(link, model=kind.split("@")[0], timeout=1.0, device="bench")
    if kind in PLUG_KINDS:
        spec = MeterSpec.from_mapping({"driver": kind, "url": f"http://127.0.0.1:{link}"}, "bench")
        return open_meter(spec, open_now=False)
    if kind == "scpi":
        return ScpiMeter(link, timeout=0.5, device="bench")
    return StreamMeter(link, rate_hz=rate_hz, start_command="START", timeout=0.5, device="bench")


@dataclass
class StreamResult:
    samples: int
    seconds: float
    drops: int
    cpu_pct: float
    collected: list[PowerSample]

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def run_stream(
    kind: str, interval: float, seconds: float, wave: tuple | None = None, rate_hz: float = 1000.0
) -> StreamResult:
    ctx = mp.get_context("fork")
    link = os.path.join(tempfile.mkdtemp(prefix="htfl-power-bench-"), "meter")
    tmpdir = os.path.dirname(link)
    if kind in PLUG_KINDS:
        link = str(free_port())
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(
        target=_emulator_main, args=(kind, link, wave, rate_hz, ready, stop, results)
    )
    child.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("emulator did not start")
        meter = _make_meter(kind, link, rate_hz)
        cls = Sampler if kind in PLUG_KINDS else SerialSampler
        sampler = cls(meter, interval=interval, buffer_size=1_000_000)
        collected: list[PowerSample] = []
        sampler.start()
        while sampler.samples_total == 0:  # connected and streaming
            time.sleep(0.01)
        start_samples = sampler.samples_total
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            time.sleep(0.25)
            collected.extend(sampler.drain())  # the consumer
        t1 = time.perf_counter()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        measured = sampler.samples_total - start_samples
        sampler.stop()
        collected.extend(sampler.drain())
    finally:
        stop.set()
        child.join(10)
        with contextlib.suppress(OSError):
            os.rmdir(tmpdir)
    stats = results.get(timeout=10)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if isinstance(meter, StreamMeter):
        lost = meter.missed_samples  # lines still in flight at stop are not losses
    else:
        lost = stats["sent"] - sampler.samples_total  # every reply must become a sample
    return StreamResult(
        samples=measured,
        seconds=t1 - t0,
        drops=lost + meter.frame_errors + sampler.dropped,
        cpu_pct=100.0 * cpu / (t1 - t0),
        collected=collected,
    )


def energy_error_pct(
    samples: list[PowerSample], wave: tuple, gap_factor: float = math.inf
) -> tuple[float, float, float, float]:
    """(error %, measured J, exact J, covered %) over the span of the samples.

    With the default ``gap_factor=inf`` nothing counts as a gap: this is the integration
    error of the sampled stream. With the library default (3) gaps are left out of the
    measured energy and the exact energy is taken over the covered stretches only.
    """
    start, end = samples[0].t, samples[-1].t
    (measured,) = attribute(samples, [("bench", start, end)], gap_factor=gap_factor)
    idle, busy, period, duty, _volts, t0 = wave

    def exact_between(a: float, b: float) -> float:
        return square_wave_energy(idle, busy, period, a, b, duty=duty, t0=t0)

    exact = exact_between(start, end) - sum(exact_between(g.start, g.end) for g in measured.gaps)
    covered = 100.0 * measured.covered_seconds / (end - start)
    return 100.0 * abs(measured.joules - exact) / exact, measured.joules, exact, covered


FAULTS = (
    "bad frame",
    "late reply",
    "silence at start",
    "garbage",
    "corrupted data byte",
    "split reply",
)


@dataclass
class FaultResult:
    detected: str
    mispaired: int  # samples carrying another request's reading
    resynchronised: bool
    gaps: int
    lost: int


def run_fault(fault: str, seconds: float) -> FaultResult:
    """One UM meter at 9600 baud read back to back; ``fault`` injected once (see the docstring)."""
    model = "um25c" if fault == "corrupted data byte" else "um34c"
    t0 = time.time()
    ramp = lambda t: (5.0, round((t - t0) % 60, 3))  # noqa: E731 - 1 mA per ms since t0
    with UMEmulator(model, ramp) as emu:
        meter = UMMeter(emu.port, model=model, timeout=0.5, device="bench")
        sampler = SerialSampler(meter)
        if fault == "silence at start":
            emu.silence_for(1.0, after=2)
        sampler.start()
        try:
            while sampler.samples_total < 3 and time.time() - t0 < 10:
                time.sleep(0.01)
            if fault == "bad frame":
                emu.inject_bad_frame()
            elif fault == "late reply":
                emu.inject_late(0.6)  # past the 0.5 s timeout
            elif fault == "garbage":
                emu.send_unsolicited(b"\x0d\x4c" + bytes(range(40)))
            elif fault == "corrupted data byte":
                emu.inject_corrupt_byte(offset=3, xor=0x40)
            elif fault == "split reply":
                emu.inject_split(at=64, pause=0.08)
            time.sleep(max(seconds, 1.2))
        finally:
            sampler.stop()
    samples = sampler.drain()
    # a reading latched before its sample's request was sent answers an earlier request
    off = [s for s in samples if s.amps - (s.t - t0) < -0.01]  # type: ignore[operator]
    counters = {
        "bad_frames": meter.bad_frames,
        "timeouts": meter.timeouts,
        "stray_replies": meter.stray_replies,
        "frame_errors": meter.frame_errors,
        "gaps": sampler.gap_count,
    }
    moved = [k for k, v in counters.items() if v]
    period = meter.nominal_period
    span = samples[-1].t - samples[0].t if samples else 0.0
    lost = max(0, round(span / period) + 1 - len(samples)) if samples else 0
    return FaultResult(
        detected=", ".join(moved) if moved else "no",
        mispaired=len(off),
        resynchronised=len(samples) >= 5 and not any(s in off for s in samples[-5:]),
        gaps=sampler.gap_count,
        lost=lost,
    )


def synthetic_energy_error(rate_hz: float, period: float, seconds: float) -> float:
    wave = (IDLE_W, BUSY_W, period, 0.5, 5.0, 0.123)
    fn = square_wave(*wave)
    samples = []
    for k in range(int(seconds * rate_hz) + 1):
        volts, amps = fn(k / rate_hz)
        samples.append(PowerSample(k / rate_hz, volts * amps, volts, amps, "synthetic"))
    return energy_error_pct(samples, wave)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="htfl power-measurement benchmark")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each stream run")
    args = ap.parse_args(argv)
    secs = args.seconds
    rows: list[tuple[str, str, str, str]] = []

    def stream_row(name: str, r: StreamResult, paced: bool) -> None:
        ok = r.drops == 0 and (not paced or (r.rate >= 995 and r.cpu_pct <= 5.0))
        rows.append(
            (
                name,
                f"{r.rate:,.0f} samples/s, drops {r.drops}, CPU {r.cpu_pct:.1f}% of one core",
                ">=1000/s, 0 drops, <=5%" if paced else "0 drops",
                "pass" if ok else "FAIL",
            )
        )

    stream_row("UM25C pty, request/response, unpaced", run_stream("um25c", 0.0, secs), False)
    stream_row("UM25C pty, request/response, 1 kS/s", run_stream("um25c", 0.001, secs), True)
    stream_row("WT310 SCPI pty, query/reply, unpaced", run_stream("scpi", 0.0, secs), False)
    stream_row("WT310 SCPI pty, query/reply, 1 kS/s", run_stream("scpi", 0.001, secs), True)
    stream_row("continuous stream pty, 1 kS/s", run_stream("stream", 0.0, secs), True)
    fast = run_stream("stream", 0.0, secs, rate_hz=10_000.0)
    stream_row("continuous stream pty, 10 kS/s", fast, False)

    wave = (IDLE_W, BUSY_W, PERIOD_S, 0.5, 5.0, 0.0)
    errors = []
    for kind, interval, label in (
        ("um25c", 0.001, "UM25C pty 1 kS/s"),
        ("stream", 0.0, "continuous stream 1 kS/s"),
    ):
        run = run_stream(kind, interval, max(secs, 4.0), wave=wave)
        err, measured, exact, _ = energy_error_pct(run.collected, wave)
        gap_err, _, _, covered = energy_error_pct(run.collected, wave, gap_factor=3.0)
        errors.append(err)
        rows.append(
            (
                f"energy {IDLE_W}/{BUSY_W} W square {PERIOD_S} s, {label}",
                f"error {err:.3f}% ({measured:.3f} vs {exact:.3f} J, {len(run.collected)} samples)",
                "<=0.5%",
                "pass" if err <= 0.5 else "FAIL",
            )
        )
        rows.append(
            (
                "  same, gaps >3x median period left out",
                f"error {gap_err:.3f}% over the covered {covered:.1f}% of the time",
                "(info)",
                "-",
            )
        )
    # per meter kind at its real rate (emulators paced like the meters)
    real_wave = (IDLE_W, BUSY_W, 2.0, 0.5, 5.0, 0.0)
    for kind, interval, label, run_secs in (
        *((k, 0.0, f"{k[:5].upper()} at 9600 baud, back to back", 2 * secs) for k in UM_KINDS),
        ("scpi", 0.1, "WT310 SCPI, every 100 ms", 2 * secs),
        ("shelly", 1.0, "Shelly Gen2 plug (HTTP), every 1 s", 3 * secs),
        ("tasmota", 1.0, "Tasmota plug (HTTP), every 1 s", 3 * secs),
    ):  # fmt: skip
        r = run_stream(kind, interval, run_secs, wave=real_wave)
        if len(r.collected) >= 2:
            err, measured, exact, _ = energy_error_pct(r.collected, real_wave)
            energy = f"energy error {err:.2f}% ({measured:.2f} vs {exact:.2f} J)"
        else:
            energy = "energy: too few samples for this run length"
        rows.append(
            (
                f"real rate: {label}",
                f"{r.rate:,.1f} samples/s, CPU {r.cpu_pct:.1f}%, drops {r.drops}; {energy}",
                "(info: 2 s square wave)",
                "-",
            )
        )
    for fault in FAULTS:
        f = run_fault(fault, secs)
        ok = f.detected != "no" and f.resynchronised and f.mispaired <= 1
        if fault == "split reply":  # not a fault of the data: reassembled, no error counted
            ok = f.mispaired == 0 and f.detected == "no"
        rows.append(
            (
                f"fault: {fault}",
                f"detected: {f.detected}; resynchronised: {'yes' if f.resynchronised else 'NO'}"
                f" ({f.mispaired} mispaired); gap reported: {f.gaps}; samples lost: {f.lost}",
                "detected, resynced",
                "pass" if ok else "FAIL",
            )
        )
    syn = synthetic_energy_error(5.0, 10.0, 600.0)
    rows.append(("energy, 10 s square, synthetic 5 S/s, 600 s", f"error {syn:.3f}%", "(info)", "-"))

    head = ("case", "result", "target", "ok")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    load = os.getloadavg()
    print(
        f"power benchmark: {os.cpu_count()} cores, load average {load[0]:.2f}, "
        f"python {sys.version.split()[0]}, {secs:g} s per stream run"
    )
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r).rstrip())
    print()
    print("notes:")
    print("  * CPU = this process (sampler thread + consumer); each emulator is a child process.")
    print("  * Request/response costs a wake-up of the reader per sample; a loop that only")
    print("    sleeps 1 ms costs 2-4% of a core on a loaded VM, so <=5% at 1 kS/s is only met")
    print("    in continuous-stream mode, which reads ~10 samples per wake-up.")
    print("  * A real UM24C/25C/34C at 9600 baud 8N1 cannot exceed ~7 samples/s: 1 request")
    print("    byte + 130 reply bytes = 1,310 bits per sample (the meter refreshes ~2/s).")
    print("    A WT310 updates at most every 100 ms. 1 kS/s needs a continuous-output source.")
    print(f"power_energy_error_pct={max(errors):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
