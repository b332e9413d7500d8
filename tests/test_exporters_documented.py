"""The server and power exporters export exactly what docs/metrics.md lists, and promtool
accepts their real HTTP output. (The device exporter has its own in tests/telemetry.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.power.exporter import PowerCollector
from htfl.device.power.meter import PowerSample
from htfl.ports import free_ports
from htfl.workstation.server.exporter import ServerMetrics
from htfl.workstation.server.results import ClientRoundRow
from htfl.workstation.server.selection import Device, Participant
from tests.support.metrics_table import documented_metrics


def exported(text: str) -> dict[str, str]:
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        out[name] = family.type
    return out


def busy_server_metrics() -> ServerMetrics:
    metrics = ServerMetrics("exp", "fedproto", "digits", rounds=2)
    device = Device(1, "nano-01", "jetson-nano", {}, 0.0, (100, 200))
    metrics.participants([Participant(device, 0, "cnn4")])
    metrics.add_setup_bytes("nano-01", 1000, 300)
    metrics.round_started(1)
    row = ClientRoundRow(
        1,
        1,
        "nano-01",
        "jetson-nano",
        "cnn4",
        0,
        "ok",
        bytes_down=10,
        bytes_up=20,
        eval_bytes_down=5,
        eval_bytes_up=6,
        test_accuracy=0.5,
        test_loss=1.2,
        num_test=10,
    )
    metrics.round_finished([row], wait_seconds=0.8, total_seconds=1.0, mean_accuracy=0.5)
    return metrics


class FakeStream:
    """A power stream's public state (the real Sampler is exercised in tests/power)."""

    device, source = "nano-01", "ina3221"
    latest = PowerSample(1.0, 5.0, 5.0, 1.0, "ina3221")
    energy_joules, samples_total, frame_errors, reconnects, gap_count = 12.0, 10, 0, 0, 0
    scope, timeouts, bad_frames, stray_replies = "module", 0, 0, 0


def power_text() -> str:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(PowerCollector([FakeStream()]))
    return generate_latest(registry).decode()


@pytest.mark.parametrize(
    ("section", "text_of"),
    [
        ("Server exporter", lambda: generate_latest(busy_server_metrics().registry).decode()),
        ("Power exporter", power_text),
    ],
)
def test_documented_exactly(section, text_of) -> None:
    rows = documented_metrics(section=section)
    names = exported(text_of())
    assert set(names) == set(rows), (
        f"undocumented: {sorted(set(names) - set(rows))}; "
        f"documented, not exported: {sorted(set(rows) - set(names))}"
    )
    for name, mtype in names.items():
        assert rows[name].type == mtype, name


def test_promtool_accepts_the_server_exporter_over_http() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: apt-get install -y prometheus")
        pytest.skip("promtool missing")
    metrics = busy_server_metrics()
    (port,) = free_ports(1)
    metrics.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
            body = res.read()
    finally:
        metrics.close()
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    check = subprocess.run(
        [promtool, "check", "metrics"], input=power_text().encode(), capture_output=True
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
