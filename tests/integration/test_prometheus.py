"""A real Prometheus (Debian's package) scrapes a real local fleet during an experiment.

Checks, through Prometheus' HTTP API: every device's series carry the inventory's labels;
payload-byte counters agree with results/<id>/ within 1%; the train-phase counter agrees with
the rows' train_seconds within 1%; energy is exported; and the device's phase total fits
inside the server-measured time (tolerance below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from htfl.ports import free_ports
from htfl.workstation.config.experiment import load_experiment
from htfl.workstation.inventory import load_inventory
from htfl.workstation.local_fleet import LocalFleet, expand_selection
from htfl.workstation.prometheus import write_prometheus_config
from htfl.workstation.server.results import read_rows
from htfl.workstation.server.submit import SuperLinkControl
from tests.grafana import RULES_FILE, concrete, dashboards, panel_queries
from tests.integration.test_local_fleet import FEDPROTO_3_ARCHS

pytestmark = pytest.mark.integration


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed: apt-get install -y prometheus"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _api(port: int, endpoint: str, params: dict) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/{endpoint}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as res:
        body = json.load(res)
    assert body["status"] == "success", (params, body)
    return body["data"]["result"]


def query(port: int, promql: str) -> list[dict]:
    return _api(port, "query", {"query": promql})


def query_range(port: int, promql: str, start: float, end: float) -> list[dict]:
    return _api(port, "query_range", {"query": promql, "start": start, "end": end, "step": "1s"})


#: Dashboard queries that have no data on this machine, and why (the rest must have data).
NO_DATA_HERE = {
    "Hottest sensor": "a VM may have no thermal zones",
    "CPU frequency (mean over cores)": "a VM may have no cpufreq (none on the CI VM)",
}


def by_device(results: list[dict]) -> dict[str, float]:
    return {r["metric"]["device"]: float(r["value"][1]) for r in results}


def test_prometheus_sees_what_the_results_record(tmp_path: Path) -> None:
    binary = prometheus_binary()
    prom_port, server_metrics_port = free_ports(2)
    exp_file = tmp_path / "exp.toml"
    exp_file.write_text(
        FEDPROTO_3_ARCHS.replace("rounds = 4", "rounds = 3")
        + f"\n[telemetry]\nserver_metrics_port = {server_metrics_port}\n"
    )
    exp = load_experiment(exp_file)
    results_dir = tmp_path / "results" / exp.id
    fleet = LocalFleet(expand_selection(exp.devices.classes), tmp_path / "fleet")
    prom = None
    try:
        fleet.start()
        inventory = load_inventory(fleet.inventory_path, use_ansible=False)
        config = write_prometheus_config(
            inventory, tmp_path / "prom", f"127.0.0.1:{server_metrics_port}", "1s", RULES_FILE
        )
        check = subprocess.run(
            ["promtool", "check", "config", str(config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        prom = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from dataclasses import replace

        exp = replace(exp, superlink=replace(exp.superlink, address=fleet.address))
        control = SuperLinkControl(exp)
        started = time.time()
        control.submit(exp, results_dir)
        control.close()
        summary_file = results_dir / "summary.json"
        deadline = time.monotonic() + 300
        while not summary_file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        summary = json.loads(summary_file.read_text())
        assert summary["status"] == "finished", summary
        time.sleep(3)  # a few more 1 s scrapes of the (still running) agents

        devices = {h.name: h.device_class for h in inventory.hosts}
        rows = read_rows(results_dir)
        setup = {s["device"]: s for s in json.loads((results_dir / "setup.json").read_text())}

        # labels: every device's series carry its inventory name and class
        up = query(prom_port, 'up{job="htfl-devices"}')
        assert {r["metric"]["device"]: r["metric"]["device_class"] for r in up} == devices
        down = [r["metric"]["device"] for r in up if r["value"][1] != "1"]
        if down:
            with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets") as res:
                targets = json.load(res)["data"]["activeTargets"]
            errors = {t["labels"].get("device"): t["lastError"] for t in targets}
            pytest.fail(f"device targets down: {down}; scrape errors: {errors}")

        # payload bytes: device counters vs the rows (+ hello and setup) within 1 %
        for direction, cols in (
            ("down", ("bytes_down", "eval_bytes_down")),
            ("up", ("bytes_up", "eval_bytes_up")),
        ):
            seen = by_device(
                query(
                    prom_port, f'htfl_device_network_payload_bytes_total{{direction="{direction}"}}'
                )
            )
            for name in devices:
                recorded = sum(int(r[c] or 0) for r in rows if r["device"] == name for c in cols)
                recorded += int(setup[name][f"hello_bytes_{direction}"])
                recorded += int(setup[name][f"setup_bytes_{direction}"])
                assert seen[name] == pytest.approx(recorded, rel=0.01), (name, direction)

        # train phase: the exporter's counter and the rows are the same measurements
        train = by_device(query(prom_port, 'htfl_device_phase_seconds_total{phase="train"}'))
        for name in devices:
            recorded = sum(float(r["train_seconds"]) for r in rows if r["device"] == name)
            assert train[name] == pytest.approx(recorded, rel=0.01)

        # phases vs measured round durations: every round's device time (download + handle)
        # lies inside the server-measured round trip; 50 ms covers timer granularity and the
        # reply's serialisation after handle_seconds is taken.
        for r in rows:
            device_time = float(r["download_seconds"]) + float(r["handle_seconds"])
            assert device_time <= float(r["round_trip_seconds"]) + 0.05, r

        # energy: exported per device and source, and recorded per round
        energy = by_device(query(prom_port, "htfl_energy_joules_total"))
        assert set(energy) == set(devices) and all(v > 0 for v in energy.values())
        assert all(float(r["energy_joules"]) > 0 for r in rows)

        # the server's series: experiment info and per-device payload with the same labels
        info = query(prom_port, "max_over_time(htfl_server_experiment_info[5m])")
        assert info and info[0]["metric"]["algorithm"] == "fedproto"
        server_bytes = query(prom_port, "max_over_time(htfl_server_payload_bytes_total[5m])")
        assert {r["metric"]["device"] for r in server_bytes} == set(devices)

        # every panel of the shipped Grafana dashboards has data for this run
        empty = []
        for board in dashboards().values():
            for title, expr in panel_queries(board):
                if not query_range(prom_port, concrete(expr), started, time.time()):
                    empty.append((title, expr))
        assert [e for e in empty if e[0] not in NO_DATA_HERE] == []
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        fleet.stop()
