"""Values parsed from fixture trees laid out like each real device."""

from __future__ import annotations

import pytest

from htfl.device.telemetry.probes import (
    CoretempProbe,
    JetsonGpuProbe,
    ProbeUnavailable,
    ProcStatProbe,
    SysReader,
)
from htfl.device.telemetry.probes.jetson import GPU_LOAD_CANDIDATES
from htfl.device.telemetry.probes.linux import (
    CpuTimes,
    cpu_utilisation,
    parse_net_dev,
    parse_proc_stat,
)
from htfl.device.telemetry.probes.rk3588 import parse_devfreq_load, parse_npu_load

from .helpers import denying_opener, sampler_for, values
from .trees import (
    ANDROID_UNREADABLE,
    EXPECTED,
    NANO_STAT_A,
    NANO_STAT_B,
    bump_proc_stat,
    proc_stat,
    write_tree,
)

APPROX = {"rel": 1e-12, "abs": 1e-12}


def test_parse_proc_stat_sums_eight_columns_and_counts_iowait_as_idle():
    times = parse_proc_stat(proc_stat(NANO_STAT_B))
    # cpu0 of snapshot B: user 1150 nice 10 system 450 idle 8050 iowait 50 irq 5
    # softirq 3 steal 0 (guest 10 is inside user and must not be added again).
    assert times["0"] == CpuTimes(
        busy=1150 + 10 + 450 + 5 + 3, total=1150 + 10 + 450 + 8050 + 50 + 5 + 3
    )
    assert set(times) == {"all", "0", "1", "2", "3"}


def test_cpu_utilisation_by_hand(tmp_path):
    """Two /proc/stat snapshots of a 4-core Nano; expected ratios worked out in trees.py."""
    (tmp_path / "proc").mkdir()
    stat = tmp_path / "proc" / "stat"
    stat.write_text(proc_stat(NANO_STAT_A))
    probe = ProcStatProbe(SysReader(tmp_path))
    assert probe.read() == []  # first sample: baseline only
    stat.write_text(proc_stat(NANO_STAT_B))
    out = {(s.name, s.labels): s.value for s in probe.read()}
    assert out[("htfl_device_cpu_utilisation_ratio", ())] == pytest.approx(0.4, **APPROX)
    core = {dict(labels)["cpu"]: v for (name, labels), v in out.items() if "core" in name}
    assert core == pytest.approx({"0": 0.8, "1": 0.5, "2": 0.3, "3": 0.0}, **APPROX)


def test_cpu_utilisation_through_the_sampler(make_tree):
    root = make_tree("jetson_nano")
    sampler = sampler_for(root, "jetson")
    first = sampler.sample_once()
    assert first.probes["cpu"] is True
    assert values(first, "htfl_device_cpu_utilisation_ratio") == {}
    (root / "proc" / "stat").write_text(proc_stat(NANO_STAT_B))
    snap = sampler.sample_once()
    assert values(snap, "htfl_device_cpu_utilisation_ratio")[()] == pytest.approx(0.4, **APPROX)
    assert values(snap, "htfl_device_cpu_core_utilisation_ratio", "cpu")["2"] == pytest.approx(0.3)


def test_no_elapsed_tick_repeats_previous_value_and_keeps_baseline(tmp_path):
    (tmp_path / "proc").mkdir()
    stat = tmp_path / "proc" / "stat"
    probe = ProcStatProbe(SysReader(tmp_path))
    stat.write_text(proc_stat(NANO_STAT_A))
    probe.read()
    stat.write_text(proc_stat(NANO_STAT_B))
    probe.read()
    # Same counters again (sampling faster than USER_HZ): value repeated.
    again = {s.labels: s.value for s in probe.read() if s.name.endswith("cpu_utilisation_ratio")}
    assert again == {(): pytest.approx(0.4)}
    # Counters going backwards (CPU hot-plug reset): new baseline, no value.
    stat.write_text(proc_stat(NANO_STAT_A))
    assert probe.read() == []


def test_cpu_utilisation_helper_edge_cases():
    assert cpu_utilisation(CpuTimes(10, 100), CpuTimes(10, 100)) is None
    assert cpu_utilisation(CpuTimes(0, 0), CpuTimes(50, 100)) == 0.5
    assert cpu_utilisation(CpuTimes(0, 0), CpuTimes(150, 100)) == 1.0  # clamped


def test_parse_net_dev_handles_glued_colon_and_headers():
    text = (
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
        "  eth0:1234567890 10 0 0 0 0 0 0 987654321 5 0 0 0 0 0 0\n"
        "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
        " bad0: 1 2 3\n"
    )
    assert parse_net_dev(text) == {"eth0": (1234567890, 987654321), "lo": (100, 100)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_platform_tree_values(make_tree, name):
    exp = EXPECTED[name]
    root = make_tree(name)
    # Android: what Termux can read (the opener hook denies /proc/stat and one zone).
    opener = denying_opener(root, ANDROID_UNREADABLE) if name == "android" else None
    sampler = sampler_for(root, exp["platform"], opener)
    bump_proc_stat(root, exp["ncores"], step=0)  # generic counters (Nano's tree has its own)
    sampler.sample_once()
    bump_proc_stat(root, exp["ncores"], step=1)
    snap = sampler.sample_once()

    assert values(snap, "htfl_device_cpu_frequency_hertz", "cpu") == exp["freq_hz"]
    temps = {
        dict(labels)["sensor"]: v
        for labels, v in snap.values("htfl_device_temperature_celsius").items()
        if dict(labels)["zone"].startswith("thermal_zone")
    }
    assert temps == pytest.approx(exp["temp_c"], **APPROX)
    total, available = exp["mem"]
    assert values(snap, "htfl_device_memory_total_bytes")[()] == total
    assert values(snap, "htfl_device_memory_available_bytes")[()] == available
    rx = values(snap, "htfl_device_network_receive_bytes_total", "interface")
    tx = values(snap, "htfl_device_network_transmit_bytes_total", "interface")
    for iface, (exp_rx, exp_tx) in exp["net"].items():
        assert (rx[iface], tx[iface]) == (exp_rx, exp_tx)

    if "gpu" in exp:
        util, freq = exp["gpu"]
        assert values(snap, "htfl_device_gpu_utilisation_ratio", "gpu") == {
            "0": pytest.approx(util)
        }
        assert values(snap, "htfl_device_gpu_frequency_hertz", "gpu") == {"0": freq}
    else:
        assert values(snap, "htfl_device_gpu_utilisation_ratio") == {}
    if "npu" in exp:
        assert values(snap, "htfl_device_npu_utilisation_ratio", "core") == pytest.approx(
            exp["npu"]
        )
    if "coretemp_c" in exp:
        core = {
            (dict(labels)["sensor"], dict(labels)["zone"]): v
            for labels, v in snap.values("htfl_device_temperature_celsius").items()
            if dict(labels)["zone"].startswith("coretemp")
        }
        assert core == exp["coretemp_c"]

    if name == "android":
        assert values(snap, "htfl_device_cpu_utilisation_ratio") == {}
        assert {p for p, up in snap.probes.items() if not up} == {"cpu"}
        return
    util = values(snap, "htfl_device_cpu_core_utilisation_ratio", "cpu")
    assert util == pytest.approx({str(c): 0.4 for c in range(exp["ncores"])})
    assert all(snap.probes.values()), snap.errors


@pytest.mark.parametrize("candidate", GPU_LOAD_CANDIDATES)
def test_jetson_gpu_load_found_at_every_candidate_path(tmp_path, candidate):
    write_tree(tmp_path, {candidate: "250\n"})
    [series] = JetsonGpuProbe(SysReader(tmp_path)).read()
    assert (series.name, series.value) == ("htfl_device_gpu_utilisation_ratio", 0.25)


def test_jetson_gpu_candidate_order_and_reprobe(tmp_path):
    write_tree(
        tmp_path,
        {"sys/devices/gpu.0/load": "100\n", "sys/devices/platform/17000000.gpu/load": "900\n"},
    )
    probe = JetsonGpuProbe(SysReader(tmp_path))
    assert probe.read()[0].value == 0.1  # first candidate wins
    (tmp_path / "sys/devices/gpu.0/load").unlink()
    assert probe.read()[0].value == 0.9  # remembered path vanished: list probed again


def test_jetson_gpu_absent_is_unavailable(tmp_path):
    with pytest.raises(ProbeUnavailable):
        JetsonGpuProbe(SysReader(tmp_path)).read()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("37@600000000Hz\n", (0.37, 600000000)),
        ("0@300000000Hz", (0.0, 300000000)),
        ("100 @ 1000000000", (1.0, 1000000000)),
    ],
)
def test_parse_devfreq_load(text, expected):
    assert parse_devfreq_load(text) == expected


@pytest.mark.parametrize("text", ["busy", "37%", "101@600000000Hz", ""])
def test_parse_devfreq_load_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_devfreq_load(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NPU load:  Core0:  0%, Core1:  0%, Core2:  0%,\n", {"0": 0.0, "1": 0.0, "2": 0.0}),
        ("NPU load:  Core0: 99%, Core1:   %, Core2: 100%,\n", {"0": 0.99, "1": 0.0, "2": 1.0}),
        ("NPU load:  42%,\n", {"0": 0.42}),
    ],
)
def test_parse_npu_load(text, expected):
    assert parse_npu_load(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "load: 5%", "NPU load: idle", "NPU load:  Core0: 250%,"])
def test_parse_npu_load_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_npu_load(text)


def test_coretemp_in_legacy_device_subdirectory(tmp_path):
    write_tree(
        tmp_path,
        {
            "sys/class/hwmon/hwmon0/device/name": "coretemp\n",
            "sys/class/hwmon/hwmon0/device/temp1_input": "61500\n",
            "sys/class/hwmon/hwmon0/device/temp1_label": "Physical id 0\n",
            "sys/class/hwmon/hwmon0/device/temp2_input": "60000\n",  # no label file
        },
    )
    out = {
        (dict(s.labels)["sensor"], dict(s.labels)["zone"]): s.value
        for s in CoretempProbe(SysReader(tmp_path)).read()
    }
    assert out == {("Physical id 0", "coretemp0_temp1"): 61.5, ("temp2", "coretemp0_temp2"): 60.0}
