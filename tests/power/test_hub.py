"""``htfl power hub``: the workstation reads a UM34C (pty) and a Shelly plug (HTTP) for two
devices, tags the samples with them, serves them on /metrics and writes the raw traces; the
meters the devices read themselves are left to them."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.power.config import MeterSpec
from htfl.workstation.power.hub import PowerHub
from htfl.workstation.power.traces import TraceWriter, read_trace
from tests.support.meter_emulators import UMEmulator, constant
from tests.support.plug_emulators import PlugEmulator

from .helpers import wait_for


def test_hub_reads_only_workstation_meters_and_prices_intervals(tmp_path: Path):
    with (
        UMEmulator("um34c", constant(5.0, 1.0)) as um,
        PlugEmulator("shelly", constant(230.0, 0.1)) as plug,
    ):
        specs = {
            "nano-02": MeterSpec.from_mapping(
                {"driver": "um34c", "port": um.port, "read_by": "workstation", "timeout": 0.5},
                "nano-02",
            ),
            "panda-01": MeterSpec.from_mapping(
                {"driver": "shelly", "url": plug.url, "read_by": "workstation", "interval": 0.1},
                "panda-01",
            ),
            "orin-01": MeterSpec.from_mapping({"driver": "rapl"}, "orin-01"),
        }
        hub = PowerHub(specs, TraceWriter(tmp_path))
        assert hub.devices == ["nano-02", "panda-01"]
        with hub:
            assert wait_for(
                lambda: all(s.samples_total >= 5 for s in hub.samplers.values()), timeout=20
            )
            latest = hub.samplers["nano-02"].latest
            assert latest is not None
            t = latest.t
            priced = hub.energy("nano-02", [("busy", t - 0.5, t)])
        assert priced is not None and priced[0].joules == pytest.approx(2.5, rel=0.02)
        assert hub.energy("orin-01", [("busy", t - 0.5, t)]) is None
    for device, meter, scope in (("nano-02", "um34c", "board"), ("panda-01", "shelly", "wall")):
        rows = list(read_trace(tmp_path / "power" / f"{device}.csv"))
        assert len(rows) >= 5 and {(r.meter, r.scope) for r in rows} == {(meter, scope)}
    assert not (tmp_path / "power" / "orin-01.csv").exists()


def test_hub_command_serves_metrics_with_scope_and_writes_traces(tmp_path: Path):
    with PlugEmulator("tasmota", constant(230.0, 0.05)) as plug:
        inventory = tmp_path / "bench.yml"
        meter = {"driver": "tasmota", "url": plug.url, "read_by": "workstation", "interval": 0.1}
        inventory.write_text(
            yaml.safe_dump({"all": {"hosts": {"panda-01": {"htfl_meter": meter}}}})
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "htfl", "power", "hub", "--inventory", str(inventory),
             "--traces", str(tmp_path), "--metrics-port", "0", "--seconds", "60"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            port = int(re.search(r":(\d+)$", first.strip()).group(1))  # type: ignore[union-attr]
            assert "panda-01" in first

            def scraped() -> dict:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                return {
                    (s.name, s.labels.get("device"), s.labels.get("scope")): s.value
                    for f in text_string_to_metric_families(body.decode())
                    for s in f.samples
                }

            assert wait_for(
                lambda: scraped().get(("htfl_power_samples_total", "panda-01", "wall"), 0) >= 3, 20
            )
            assert scraped()[("htfl_power_watts", "panda-01", "wall")] == 12.0
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert re.search(r"panda-01: \d+ samples", out)
    assert len(list(read_trace(tmp_path / "power" / "panda-01.csv"))) >= 3


def test_hub_command_errors_are_one_line(tmp_path: Path):
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        yaml.safe_dump({"all": {"hosts": {"a": {"htfl_meter": {"driver": "rapl"}}}}})
    )
    for argv, message in (
        (["--inventory", str(tmp_path / "none.yml")], "no such file"),
        (["--inventory", str(inventory)], "no htfl_meter says read_by: workstation"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "htfl", "power", "hub", *argv], capture_output=True, text=True
        )
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_run_power_starts_a_hub_only_for_the_runs_devices_and_exports_it(tmp_path: Path):
    from prometheus_client import CollectorRegistry, generate_latest

    from htfl.workstation.power.rounds import RunPower

    with UMEmulator("um25c", constant(5.0, 0.4)) as um:
        mapping = {"driver": "um25c", "port": um.port, "read_by": "workstation", "timeout": 0.5}
        specs = {
            "nano-02": MeterSpec.from_mapping(mapping, "nano-02"),
            "nano-03": MeterSpec.from_mapping({**mapping, "port": "/dev/none"}, "nano-03"),
        }
        power = RunPower.start(tmp_path, specs, ["nano-01", "nano-02"])  # nano-03: not in the run
        registry = CollectorRegistry()
        power.export_to(registry)
        try:
            assert power.hub is not None and power.hub.devices == ["nano-02"]
            assert wait_for(lambda: power.hub.samplers["nano-02"].samples_total >= 3, 20)
            text = generate_latest(registry).decode()
        finally:
            power.close()
    assert 'htfl_power_watts{device="nano-02",scope="board",source="um25c"} 2.0' in text
    assert RunPower.start(tmp_path, specs, ["nano-01"]).hub is None
