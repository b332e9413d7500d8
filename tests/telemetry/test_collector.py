"""The custom collector's output, parsed back with prometheus_client.parser."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.telemetry.collector import (
    DEVICE_LABELS,
    DIRECTIONS,
    METRICS,
    PHASES,
    DeviceCollector,
    RoundPhaseMetrics,
)
from htfl.device.telemetry.probes import SysReader, build_probes
from htfl.device.telemetry.sampler import Sampler

from .helpers import denying_opener
from .trees import EXPECTED, bump_proc_stat


def _scrape(collector) -> dict:
    """``{family name: family}`` parsed from the text exposition of *collector*."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(families, sample_name) -> dict:
    out = {}
    for family in families.values():
        for s in family.samples:
            if s.name == sample_name:
                extra = {k: v for k, v in s.labels.items() if k not in DEVICE_LABELS}
                out[tuple(sorted(extra.items()))] = s.value
    return out


@pytest.fixture
def rk3588_collector(make_tree):
    root = make_tree("rk3588")
    sampler = Sampler(build_probes("rk3588", SysReader(root)))
    bump_proc_stat(root, 8, step=0)
    sampler.sample_once()
    bump_proc_stat(root, 8, step=1)
    sampler.sample_once()
    return DeviceCollector("opi5b-01", "rk3588-opi5b", sampler, platform="rk3588")


def test_output_parses_and_carries_device_labels(rk3588_collector):
    families = _scrape(rk3588_collector)
    assert families
    for family in families.values():
        for s in family.samples:
            assert s.labels["device"] == "opi5b-01", s
            assert s.labels["device_class"] == "rk3588-opi5b", s
            assert not any("round" in k for k in s.labels), s


def test_parsed_values_match_the_fixture(rk3588_collector):
    families = _scrape(rk3588_collector)
    exp = EXPECTED["rk3588"]
    freqs = _samples(families, "htfl_device_cpu_frequency_hertz")
    assert {dict(k)["cpu"]: v for k, v in freqs.items()} == exp["freq_hz"]
    assert _samples(families, "htfl_device_gpu_utilisation_ratio") == {(("gpu", "0"),): 0.37}
    assert _samples(families, "htfl_device_gpu_frequency_hertz") == {(("gpu", "0"),): 6e8}
    npu = _samples(families, "htfl_device_npu_utilisation_ratio")
    assert {dict(k)["core"]: v for k, v in npu.items()} == exp["npu"]
    temps = _samples(families, "htfl_device_temperature_celsius")
    assert temps[(("sensor", "bigcore0-thermal"), ("zone", "thermal_zone1"))] == 46.23
    assert _samples(families, "htfl_device_cpu_utilisation_ratio") == {(): pytest.approx(0.4)}
    rx = _samples(families, "htfl_device_network_receive_bytes_total")
    assert rx[(("interface", "eth0"),)] == 987654321
    assert _samples(families, "htfl_device_info") == {
        (("gpu_memory", "shared"), ("platform", "rk3588")): 1.0
    }
    up = _samples(families, "htfl_device_probe_up")
    assert {dict(k)["probe"]: v for k, v in up.items()} == {
        "cpu": 1,
        "cpufreq": 1,
        "memory": 1,
        "thermal": 1,
        "netdev": 1,
        "process": 1,
        "rk3588_gpu": 1,
        "rk3588_npu": 1,
    }


def test_types_and_names_follow_the_spec(rk3588_collector):
    families = _scrape(rk3588_collector)
    for family in families.values():
        sample_names = {s.name for s in family.samples}
        for name in sample_names:
            spec = METRICS[name]
            assert family.type == spec.type, name
            for s in family.samples:
                assert set(s.labels) == set(spec.all_labels), (name, s.labels)


def test_openmetrics_rendering_is_valid_too(rk3588_collector):
    registry = CollectorRegistry()
    registry.register(rk3588_collector)
    text = generate_openmetrics(registry).decode()
    names = {f.name for f in parse_openmetrics(text)}
    assert "htfl_device_phase_seconds" in names  # counters lose _total in OpenMetrics families
    assert "# UNIT htfl_device_temperature_celsius celsius" in text


@pytest.mark.parametrize("spec", list(METRICS.values()), ids=lambda s: s.name)
def test_metric_naming_conventions(spec):
    assert re.fullmatch(r"htfl_device_[a-z0-9_]+", spec.name)
    assert spec.name.endswith("_total") == (spec.type == "counter")
    if spec.unit:
        base = spec.name.removesuffix("_total")
        assert base.endswith("_" + spec.unit)
        assert spec.unit in {"seconds", "bytes", "ratio", "hertz", "celsius", "watts"}
    for bad in ("_milliseconds", "_kilobytes", "_percent", "_mhz", "_khz", "_millicelsius"):
        assert bad not in spec.name
    assert "round" not in spec.labels
    assert spec.help


def test_scrape_never_reads_the_filesystem(make_tree):
    root = make_tree("jetson_nano")
    opener = denying_opener(root, [])
    sampler = Sampler(build_probes("jetson", SysReader(root, opener)))
    sampler.sample_once()
    collector = DeviceCollector("nano-01", "jetson-nano", sampler, platform="jetson")
    reads_after_sampling = len(opener.calls)
    assert reads_after_sampling > 0
    for _ in range(3):
        _scrape(collector)
    assert len(opener.calls) == reads_after_sampling


def test_device_labels_are_required():
    for device, device_class in [("", "c"), ("d", ""), ("  ", "c"), (None, "c")]:
        with pytest.raises(ValueError):
            DeviceCollector(device, device_class, lambda: None)  # type: ignore[arg-type]


# ----------------------------------------------------------------- RoundPhaseMetrics
def _phase_collector():
    from htfl.device.telemetry.sampler import Snapshot

    phases = RoundPhaseMetrics()
    return phases, DeviceCollector("dev", "cls", lambda: Snapshot(), phases=phases)


def test_phase_counters_start_at_zero_and_optional_gauges_absent():
    _, collector = _phase_collector()
    families = _scrape(collector)
    totals = _samples(families, "htfl_device_phase_seconds_total")
    assert {dict(k)["phase"]: v for k, v in totals.items()} == dict.fromkeys(PHASES, 0.0)
    payload = _samples(families, "htfl_device_network_payload_bytes_total")
    assert {dict(k)["direction"]: v for k, v in payload.items()} == dict.fromkeys(DIRECTIONS, 0.0)
    for absent in (
        "htfl_device_last_round_phase_seconds",
        "htfl_device_clock_offset_seconds",
        "htfl_device_round",
        "htfl_device_sample_timestamp_seconds",
    ):
        assert absent not in families


def test_phase_metrics_semantics():
    phases, collector = _phase_collector()
    phases.set_round(1)
    phases.observe_phase("download", 2.0)
    phases.observe_phase("train", 10.0)
    phases.observe_phase("train", 5.0)  # same round: adds up
    phases.add_bytes("down", 1_000_000)
    phases.set_round(2)
    phases.observe_phase("train", 7.5)  # new round: replaces
    phases.add_bytes("up", 250_000)
    phases.add_bytes("down", 1_000_000)
    phases.set_clock_offset(-0.0125)

    families = _scrape(collector)
    totals = {
        dict(k)["phase"]: v
        for k, v in _samples(families, "htfl_device_phase_seconds_total").items()
    }
    assert totals == {**dict.fromkeys(PHASES, 0.0), "train": 22.5, "download": 2.0}
    last = {
        dict(k)["phase"]: v
        for k, v in _samples(families, "htfl_device_last_round_phase_seconds").items()
    }
    # download was last observed in round 1 and keeps that value.
    assert last == {"train": 7.5, "download": 2.0}
    payload = _samples(families, "htfl_device_network_payload_bytes_total")
    assert payload == {(("direction", "up"),): 250_000, (("direction", "down"),): 2_000_000}
    assert _samples(families, "htfl_device_clock_offset_seconds") == {(): -0.0125}
    assert _samples(families, "htfl_device_round") == {(): 2}


def test_time_phase_context_manager():
    phases, _ = _phase_collector()
    ticks = iter([10.0, 13.25])
    with phases.time_phase("evaluate", clock=lambda: next(ticks)):
        pass
    assert phases.state().totals["evaluate"] == 3.25
    with pytest.raises(KeyError), phases.time_phase("upload"):
        raise KeyError("failure inside the phase still records its time")
    assert phases.state().totals["upload"] >= 0
    assert "upload" in phases.state().last_round


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("observe_phase", ("training", 1.0)),
        ("observe_phase", ("train", -1.0)),
        ("observe_phase", ("train", math.nan)),
        ("observe_phase", ("train", math.inf)),
        ("add_bytes", ("sideways", 1)),
        ("add_bytes", ("up", -1)),
        ("add_bytes", ("up", 1.5)),
        ("add_bytes", ("up", True)),
        ("set_round", (-1,)),
        ("set_round", ("3",)),
        ("set_clock_offset", (math.nan,)),
    ],
)
def test_invalid_worker_calls_rejected(call, args):
    phases = RoundPhaseMetrics()
    with pytest.raises(ValueError):
        getattr(phases, call)(*args)
    state = phases.state()
    assert sum(state.totals.values()) == 0 and sum(state.payload_bytes.values()) == 0


def test_describe_lists_every_spec_without_collecting():
    calls = []

    def source():
        calls.append(1)
        raise AssertionError("describe() must not take a snapshot")

    collector = DeviceCollector("d", "c", source)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    described = {m.name for m in collector.describe()}
    assert {n.removesuffix("_total") for n in METRICS} == described
    assert calls == []
