"""docs/metrics.md lists exactly what the device exporter exports."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.telemetry import DeviceTelemetry
from htfl.device.telemetry.collector import DEVICE_LABELS, METRICS
from tests.support.metrics_table import documented_metrics

from .helpers import denying_opener
from .trees import ANDROID_UNREADABLE, EXPECTED, PLATFORM_TREES, bump_proc_stat

SECTION = "Device exporter"


def _exported_names(telemetry: DeviceTelemetry) -> dict[str, str]:
    """``{sample name: type}`` of one scrape of *telemetry*'s registry."""
    text = generate_latest(telemetry.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = family.type
    return out


def test_table_matches_the_collector_spec():
    rows = documented_metrics(section=SECTION)
    assert set(rows) == set(METRICS), (
        f"undocumented: {sorted(set(METRICS) - set(rows))}; "
        f"documented but not exported: {sorted(set(rows) - set(METRICS))}"
    )
    for name, spec in METRICS.items():
        row = rows[name]
        assert row.type == spec.type, name
        assert row.labels == spec.all_labels, name
        assert row.unit == spec.unit, name
        assert row.meaning, name


def test_table_matches_what_the_exporters_really_export(make_tree):
    """Union over every platform fixture (plus the worker's calls) == the table."""
    exported: dict[str, str] = {}
    for name in PLATFORM_TREES:
        root = make_tree(name)
        opener = denying_opener(root, ANDROID_UNREADABLE) if name == "android" else None
        telemetry = DeviceTelemetry(f"{name}-01", name, root, opener=opener)
        phases = telemetry.phases
        phases.set_round(1)
        for phase in ("train", "evaluate", "serialise", "download", "upload", "idle"):
            phases.observe_phase(phase, 1.0)
        phases.add_bytes("up", 10)
        phases.set_clock_offset(0.5)
        bump_proc_stat(root, EXPECTED[name]["ncores"], step=0)
        telemetry.sampler.sample_once()
        bump_proc_stat(root, EXPECTED[name]["ncores"], step=1)
        telemetry.sampler.sample_once()
        for sample_name, mtype in _exported_names(telemetry).items():
            assert exported.setdefault(sample_name, mtype) == mtype
            # Every device series is in the device section, under its own name.
            assert sample_name.startswith("htfl_device_")

    # A discrete NVIDIA GPU: no NVML here, so the NVML stand-in of tests/telemetry/test_nvml.py
    from htfl.device.telemetry.probes import NvmlGpuProbe, SysReader

    from .test_nvml import FakeNvml

    gpu = DeviceTelemetry(
        "gpu-01",
        "x86",
        "/nonexistent-root",
        platform="x86",
        probes=[NvmlGpuProbe(SysReader("/nonexistent-root"), nvml=FakeNvml())],
    )
    gpu.sampler.sample_once()
    for sample_name, mtype in _exported_names(gpu).items():
        assert exported.setdefault(sample_name, mtype) == mtype

    rows = documented_metrics(section=SECTION)
    missing = set(exported) - set(rows)
    phantom = set(rows) - set(exported)
    assert not missing, f"exported but not in docs/metrics.md: {sorted(missing)}"
    assert not phantom, f"in docs/metrics.md but never exported: {sorted(phantom)}"
    for name, mtype in exported.items():
        assert rows[name].type == mtype


def test_every_documented_device_metric_has_the_device_labels():
    for row in documented_metrics(section=SECTION).values():
        assert row.labels[: len(DEVICE_LABELS)] == DEVICE_LABELS, row.name


def test_power_section_is_parsed_separately():
    power = documented_metrics(section="Power exporter")
    assert set(power) == {
        "htfl_power_watts",
        "htfl_energy_joules_total",
        "htfl_power_frame_errors_total",
        "htfl_power_reconnects_total",
        "htfl_power_sample_gaps_total",
        "htfl_power_samples_total",
        "htfl_power_timeouts_total",
        "htfl_power_bad_frames_total",
        "htfl_power_stray_replies_total",
    }
    assert all(r.labels == ("device", "source", "scope") for r in power.values())
    everything = documented_metrics()
    assert set(power) | set(documented_metrics(section=SECTION)) <= set(everything)


def test_parser_details(tmp_path):
    doc = tmp_path / "m.md"
    doc.write_text(
        "# Metrics\n\n## Device exporter\n\nText | with a pipe.\n\n"
        "| Name | Type | Unit | Labels | Meaning |\n|---|:---:|---|---|---|\n"
        "| `a_total` | Counter | bytes | `device`, `x` | A. |\n"
        "| b | gauge | — | — | B. |\n\n"
        "| Probe | Files |\n|---|---|\n| cpu | /proc/stat |\n\n"
        "## Other exporter\n\n| Name | Type |\n|---|---|\n| c | gauge |\n"
    )
    rows = documented_metrics(doc, section="Device exporter")
    assert set(rows) == {"a_total", "b"}
    assert rows["a_total"].type == "counter" and rows["a_total"].labels == ("device", "x")
    assert rows["b"].labels == () and rows["b"].unit == ""
    assert set(documented_metrics(doc)) == {"a_total", "b", "c"}
    doc.write_text(doc.read_text() + "| c | counter |\n")
    with pytest.raises(ValueError, match="twice"):
        documented_metrics(doc)


def test_registry_is_private_to_the_device():
    """No default-registry (process_*, python_*) series leak into the device exporter."""
    telemetry = DeviceTelemetry("d", "c", "/nonexistent-root", platform="linux")
    telemetry.sampler.sample_once()
    assert isinstance(telemetry.registry, CollectorRegistry)
    assert all(n.startswith("htfl_device_") for n in _exported_names(telemetry))
