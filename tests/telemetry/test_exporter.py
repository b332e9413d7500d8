"""The real HTTP /metrics endpoint, checked by promtool.

promtool comes from Debian's ``prometheus`` package (``apt-get install -y
prometheus``).  Without it these checks skip, except when ``CI`` is set, where
they fail (see the ``promtool`` fixture in conftest.py).
"""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.telemetry import DeviceTelemetry, start_exporter

from .helpers import denying_opener
from .trees import ANDROID_UNREADABLE, bump_proc_stat


def _fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.headers.get("Content-Type", ""), resp.read().decode()


def _promtool_check(promtool: str, body: str) -> None:
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
    )
    # promtool exits 1 on lint problems *and* prints them; require a clean run.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.returncode,
        proc.stdout,
        proc.stderr,
    )


def _exercise_phases(telemetry: DeviceTelemetry) -> None:
    phases = telemetry.phases
    phases.set_round(7)
    for phase, seconds in [("download", 1.5), ("train", 42.0), ("serialise", 0.25)]:
        phases.observe_phase(phase, seconds)
    phases.add_bytes("down", 4_000_000)
    phases.add_bytes("up", 3_900_000)
    phases.set_clock_offset(0.0042)


@pytest.mark.parametrize("case", ["real-root", "rk3588", "lattepanda", "android-degraded"])
def test_promtool_accepts_http_output(make_tree, promtool, case):
    if case == "real-root":
        telemetry = DeviceTelemetry("ci-host", "x86-vm", rate_hz=10)
    elif case == "android-degraded":
        root = make_tree("android")
        opener = denying_opener(root, ANDROID_UNREADABLE)
        telemetry = DeviceTelemetry("pixel-6", "android-phone", root, opener=opener)
    else:
        root = make_tree(case)
        telemetry = DeviceTelemetry(f"{case}-01", case, root)
    _exercise_phases(telemetry)
    server = telemetry.start(0, host="127.0.0.1")
    try:
        if case in ("rk3588", "lattepanda"):
            bump_proc_stat(root, 8 if case == "rk3588" else 4)
            telemetry.sampler.sample_once()  # second sample: utilisation series
        content_type, body = _fetch(server.url)
    finally:
        telemetry.stop()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert "htfl_device_phase_seconds" in families and "htfl_device_probe_up" in families
    _promtool_check(promtool, body)


def test_promtool_rejects_a_bad_exposition(promtool):
    """Guards the check above: promtool must flag e.g. a counter without _total."""
    bad = "# HELP bad_bytes x\n# TYPE bad_bytes counter\nbad_bytes 1\n"
    proc = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, text=True)
    assert proc.returncode != 0 or proc.stdout.strip() or proc.stderr.strip()


def test_telemetry_start_stop_releases_port_and_threads(make_tree):
    telemetry = DeviceTelemetry("nano-01", "jetson-nano", make_tree("jetson_nano"), rate_hz=10)
    assert telemetry.platform == "jetson"
    with telemetry:
        server = telemetry.start(0, host="127.0.0.1")
        assert server.port > 0
        _, body = _fetch(server.url)
        labels = 'device="nano-01",device_class="jetson-nano",gpu="0"'
        assert f"htfl_device_gpu_utilisation_ratio{{{labels}}} 0.153" in body
        with pytest.raises(RuntimeError):
            telemetry.start(0, host="127.0.0.1")
    assert not telemetry.sampler.running
    with pytest.raises(urllib.error.URLError):
        _fetch(server.url)
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))
    telemetry.stop()  # idempotent


def test_start_exporter_serves_a_given_registry():
    registry = CollectorRegistry()
    Gauge("htfl_test_gauge_ratio", "test", registry=registry).set(0.5)
    server = start_exporter(0, host="127.0.0.1", registry=registry)
    try:
        _, body = _fetch(server.url)
    finally:
        server.close()
        server.close()
    assert "htfl_test_gauge_ratio 0.5" in body
