"""Jetson EMC load/frequency and GPU-rail power, against fixture trees in NVIDIA's documented
layouts: the BPMP clock debugfs (Jetson Linux Developer Guide, "Clocks":
``/sys/kernel/debug/bpmp/debug/clk/<clk>/rate``, Hz), JetPack 4's ``/sys/kernel/debug/clk/emc/
clk_rate``, the activity monitor's ``/sys/kernel/actmon_avg_activity/mc_all`` (kHz busy), and the
INA3221 rails (``ina3221x`` IIO on JetPack 4, ``ina3221`` hwmon on JetPack 5+; Jetson Linux
"Power Management": rail names VDD_GPU_SOC, VDD_CPU_GPU_CV, POM_5V_GPU). jtop is not installed
here: its path is exercised with a stand-in that has jetson-stats' documented attributes
(``memory['EMC']`` cur kHz / val %, ``power['rail'][name]['power']`` mW).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.device.telemetry.probes import SysReader, build_probes
from htfl.device.telemetry.probes.base import ProbeUnavailable
from htfl.device.telemetry.probes.jetson_emc import (
    EMC_FREQ,
    EMC_UTIL,
    GPU_RAIL_POWER,
    JetsonEmcProbe,
    JetsonGpuRailProbe,
    JtopSource,
)
from tests.power.sysfs_trees import jetson_jp4, jetson_jp5, write
from tests.telemetry.helpers import denying_opener


def _by_name(series) -> dict[str, tuple[dict, float]]:
    return {s.name: (dict(s.labels), s.value) for s in series}


def test_emc_on_jetpack_5_6_reads_bpmp_rate_and_actmon(tmp_path: Path) -> None:
    write(tmp_path / "sys/kernel/debug/bpmp/debug/clk/emc/rate", 3199000000)
    write(tmp_path / "sys/kernel/actmon_avg_activity/mc_all", 799750)  # kHz busy
    got = _by_name(JetsonEmcProbe(SysReader(tmp_path)).read())
    assert got[EMC_FREQ] == ({}, 3199000000.0)
    assert got[EMC_UTIL][1] == pytest.approx(0.25)


def test_emc_on_jetpack_4_and_without_actmon(tmp_path: Path) -> None:
    write(tmp_path / "sys/kernel/debug/clk/emc/clk_rate", 1600000000)
    got = _by_name(JetsonEmcProbe(SysReader(tmp_path)).read())
    assert got == {EMC_FREQ: ({}, 1600000000.0)}  # no load without the activity monitor
    write(tmp_path / "sys/kernel/actmon_avg_activity/mc_all", 1700000)  # > rate: clamped
    assert _by_name(JetsonEmcProbe(SysReader(tmp_path)).read())[EMC_UTIL][1] == 1.0


def test_emc_behind_root_only_debugfs_is_not_available(tmp_path: Path) -> None:
    rate = "sys/kernel/debug/bpmp/debug/clk/emc/rate"
    write(tmp_path / rate, 2133000000)
    reader = SysReader(tmp_path, opener=denying_opener(tmp_path, [rate]))
    with pytest.raises(ProbeUnavailable, match="root or jtop"):
        JetsonEmcProbe(reader).read()


def test_gpu_rail_power_on_agx_orin_hwmon(tmp_path: Path) -> None:
    jetson_jp5(
        tmp_path,
        {"VDD_GPU_SOC": (5072, 1421), "VDD_CPU_CV": (5072, 600), "VIN_SYS_5V0": (5000, 900)},
    )
    (series,) = JetsonGpuRailProbe(SysReader(tmp_path)).read()
    assert series.name == GPU_RAIL_POWER and dict(series.labels) == {"rail": "VDD_GPU_SOC"}
    assert series.value == pytest.approx(5.072 * 1.421)


def test_gpu_rail_power_on_orin_nano_is_the_shared_rail(tmp_path: Path) -> None:
    jetson_jp5(
        tmp_path, {"VDD_IN": (5000, 1500), "VDD_CPU_GPU_CV": (5000, 800), "VDD_SOC": (5000, 400)}
    )
    (series,) = JetsonGpuRailProbe(SysReader(tmp_path)).read()
    assert dict(series.labels) == {"rail": "VDD_CPU_GPU_CV"} and series.value == pytest.approx(4.0)


def test_gpu_rail_power_on_nano_iio(tmp_path: Path) -> None:
    jetson_jp4(
        tmp_path,
        {
            "POM_5V_IN": (3200, 5000, 640),
            "POM_5V_GPU": (1234, 5000, 247),
            "POM_5V_CPU": (800, 5000, 160),
        },
    )
    (series,) = JetsonGpuRailProbe(SysReader(tmp_path)).read()
    assert dict(series.labels) == {"rail": "POM_5V_GPU"} and series.value == pytest.approx(1.234)


def test_no_gpu_rail_is_not_available(tmp_path: Path) -> None:
    jetson_jp5(tmp_path, {"VDD_IN": (5000, 1500)})
    with pytest.raises(ProbeUnavailable, match="no INA3221 GPU rail"):
        JetsonGpuRailProbe(SysReader(tmp_path)).read()


class JtopStandIn:
    """jetson-stats' ``jtop`` client as its documentation describes it (start/ok/memory/power)."""

    def __init__(self, running: bool = True) -> None:
        self.running = running
        self.memory = {"EMC": {"cur": 2133000, "max": 3199000, "val": 37.5, "online": True}}
        self.power = {"rail": {"VDD_GPU_SOC": {"volt": 5072, "curr": 1000, "power": 5072}}}

    def start(self) -> None:
        if not self.running:
            raise RuntimeError("The jtop.service is not active")

    def ok(self) -> bool:
        return self.running


def test_jtop_is_used_first_and_sysfs_when_it_is_not_running(tmp_path: Path) -> None:
    jetson_jp5(tmp_path, {"VDD_GPU_SOC": (5000, 200)})
    write(tmp_path / "sys/kernel/debug/bpmp/debug/clk/emc/rate", 204000000)
    source = JtopSource(JtopStandIn)
    emc = _by_name(JetsonEmcProbe(SysReader(tmp_path), source).read())
    assert emc[EMC_UTIL][1] == pytest.approx(0.375) and emc[EMC_FREQ][1] == 2133000000.0
    (rail,) = JetsonGpuRailProbe(SysReader(tmp_path), source).read()
    assert rail.value == pytest.approx(5.072)
    down = JtopSource(lambda: JtopStandIn(running=False))
    assert _by_name(JetsonEmcProbe(SysReader(tmp_path), down).read()) == {EMC_FREQ: ({}, 204e6)}
    (rail,) = JetsonGpuRailProbe(SysReader(tmp_path), down).read()
    assert rail.value == pytest.approx(1.0)


def test_the_jetson_probe_set_has_emc_and_gpu_rail(tmp_path: Path) -> None:
    names = {p.name for p in build_probes("jetson", SysReader(tmp_path))}
    assert {"jetson_gpu", "jetson_emc", "jetson_gpu_rail"} <= names
