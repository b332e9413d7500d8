"""Prometheus exporter output, parsed back with the official text parser."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.power.drivers.um import UMMeter
from htfl.device.power.exporter import PowerCollector, serve
from htfl.device.power.meter import PowerSample
from htfl.device.power.sampler import Sampler, SerialSampler
from htfl.ports import free_port
from tests.support.meter_emulators import UMEmulator, constant

from .helpers import ScriptedMeter, wait_for


def scrape(registry: CollectorRegistry) -> dict[str, dict]:
    """{family name: {"type": ..., "samples": {(sample name, labels): value}}}"""
    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        out[fam.name] = {
            "type": fam.type,
            "samples": {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples},
        }
    return out


def test_metric_names_types_labels_and_values():
    script = [PowerSample(float(t), 2.0 + t, 5.0, None, "um25c") for t in range(4)]
    meter = ScriptedMeter(script, device="nano-01", source="um25c")
    meter.frame_errors = 3
    meter.reconnects = 2
    meter.timeouts, meter.bad_frames, meter.stray_replies = 1, 1, 1
    sampler = Sampler(meter, interval=0.0, scope="board")
    sampler.start()
    assert wait_for(lambda: meter.exhausted > 0)
    sampler.stop()
    sampler.gap_count = 5  # as if five gaps had been recorded

    idle = Sampler(ScriptedMeter([], device="panda-01", source="rapl"), scope="cpu-package")

    registry = CollectorRegistry()
    registry.register(PowerCollector([sampler, idle]))
    m = scrape(registry)
    nano = (("device", "nano-01"), ("scope", "board"), ("source", "um25c"))
    panda = (("device", "panda-01"), ("scope", "cpu-package"), ("source", "rapl"))

    assert m["htfl_power_watts"]["type"] == "gauge"
    assert m["htfl_power_watts"]["samples"] == {("htfl_power_watts", nano): 5.0}
    assert m["htfl_energy_joules"]["type"] == "counter"
    # 2..5 W ramp over 3 s = 10.5 J
    assert m["htfl_energy_joules"]["samples"][("htfl_energy_joules_total", nano)] == 10.5
    assert m["htfl_energy_joules"]["samples"][("htfl_energy_joules_total", panda)] == 0.0
    expected = {
        "htfl_power_frame_errors": 3,
        "htfl_power_reconnects": 2,
        "htfl_power_sample_gaps": 5,
        "htfl_power_samples": 4,
        "htfl_power_timeouts": 1,
        "htfl_power_bad_frames": 1,
        "htfl_power_stray_replies": 1,
    }
    for family, value in expected.items():
        assert m[family]["type"] == "counter"
        assert m[family]["samples"][(f"{family}_total", nano)] == value
        assert m[family]["samples"][(f"{family}_total", panda)] == 0


def test_collector_reads_live_streams_and_serves_http():
    with UMEmulator("um25c", constant(5.0, 0.3)) as emu:
        meter = UMMeter(emu.port, timeout=0.5, device="orin-01")
        sampler = SerialSampler(meter, interval=0.005, scope="board")
        streams = [sampler]
        registry = CollectorRegistry()
        registry.register(PowerCollector(lambda: streams))  # streams looked up at scrape time
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 10)
            m = scrape(registry)
        finally:
            sampler.stop()
    labels = (("device", "orin-01"), ("scope", "board"), ("source", "um25c"))
    assert m["htfl_power_watts"]["samples"][("htfl_power_watts", labels)] == pytest.approx(1.5)
    assert m["htfl_energy_joules"]["samples"][("htfl_energy_joules_total", labels)] > 0


def test_http_endpoint(unused_tcp_port):
    sampler = Sampler(ScriptedMeter([], device="d", source="s"))
    registry = serve([sampler], port=unused_tcp_port, addr="127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics", timeout=5).read()
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"htfl_energy_joules", "htfl_power_reconnects", "htfl_power_sample_gaps"} <= names
    assert registry is not None


@pytest.fixture
def unused_tcp_port() -> int:
    return free_port()
