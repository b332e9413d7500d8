"""Sysfs drivers on fixture trees in the real layouts: INA3221 (JP4, JP5+), RAPL, batteries."""

from __future__ import annotations

import json
import os
import stat

import pytest

from htfl.device.power.drivers import ina3221
from htfl.device.power.drivers.ina3221 import Ina3221Meter, detect_model, discover_rails
from htfl.device.power.drivers.rapl import RaplMeter, counter_delta, list_domains
from htfl.device.power.drivers.termux import TermuxMeter
from htfl.device.power.meter import FrameError, MeterConfigError

from . import sysfs_trees as trees

# ---------------------------------------------------------------- INA3221 -------------------


def test_jp4_nano_total_rail(tmp_path):
    trees.jetson_jp4(
        tmp_path,
        {
            "POM_5V_IN": (4120, 5072, 812),
            "POM_5V_GPU": (40, 5064, 8),
            "POM_5V_CPU": (1203, 5064, 237),
        },
    )
    meter = Ina3221Meter(model="jetson-nano", root=str(tmp_path), device="nano-1")
    with meter:
        s = meter.read()
    assert s.watts == pytest.approx(4.120)
    assert s.volts == pytest.approx(5.072)
    assert s.amps == pytest.approx(0.812)
    assert s.source == "ina3221"
    assert [r.layout for r in meter.rails] == ["iio"]


@pytest.mark.parametrize("hwmon_index", [1, 3, 7])
def test_jp5_orin_nano_total_rail_any_hwmon_index(tmp_path, hwmon_index):
    trees.jetson_jp5(
        tmp_path,
        {"VDD_IN": (5104, 1232), "VDD_CPU_GPU_CV": (5096, 312), "VDD_SOC": (5096, 288)},
        hwmon_index=hwmon_index,
    )
    with Ina3221Meter(model="Orin Nano", root=str(tmp_path)) as meter:
        s = meter.read()
    assert s.watts == pytest.approx(5.104 * 1.232)
    assert s.volts == pytest.approx(5.104)
    assert s.amps == pytest.approx(1.232)
    assert meter.rails[0].directory.endswith(f"hwmon{hwmon_index}")


def test_hwmon_index_change_is_rediscovered_on_reopen(tmp_path):
    hwmon = trees.jetson_jp5(tmp_path, {"VDD_IN": (5000, 1000), "VDD_SOC": (5000, 100)}, 2)
    meter = Ina3221Meter(model="jetson-orin-nx", root=str(tmp_path))
    meter.open()
    assert meter.read().watts == pytest.approx(5.0)
    os.rename(hwmon, hwmon.with_name("hwmon4"))  # driver reloaded, new index
    with pytest.raises(OSError):
        meter.read()
    meter.close()
    meter.open()
    assert meter.read().watts == pytest.approx(5.0)
    assert meter.rails[0].directory.endswith("hwmon4")


def test_model_from_device_tree_and_multi_rail_sum(tmp_path):
    trees.device_tree_model(tmp_path, "Jetson AGX Orin Developer Kit")
    trees.jetson_jp5(
        tmp_path,
        {"VDD_GPU_SOC": (5000, 1000), "VDD_CPU_CV": (5000, 500), "VIN_SYS_5V0": (5000, 400)},
        hwmon_index=2,
        bus="1-0040",
    )
    trees.jetson_jp5(
        tmp_path, {"NC": (0, 0), "VDDQ_VDD2_1V8AO": (5000, 200), "NC ": (0, 0)}, 3, "1-0041"
    )
    assert detect_model(str(tmp_path)) == "jetson-agx-orin"
    rails = discover_rails(str(tmp_path))
    assert "NC" not in rails
    with Ina3221Meter(root=str(tmp_path)) as meter:
        s = meter.read()
    assert s.watts == pytest.approx(5.0 + 2.5 + 2.0 + 1.0)
    assert s.volts is None and s.amps is None


def test_configured_rail_overrides_model_table(tmp_path):
    trees.jetson_jp4(tmp_path, {"VDD_IN": (6000, 5000, 1200), "VDD_CPU_GPU_CV": (1500, 0, 0)})
    with Ina3221Meter(model="jetson-xavier-nx", rail="VDD_CPU_GPU_CV", root=str(tmp_path)) as m:
        assert m.read().watts == pytest.approx(1.5)
    with Ina3221Meter(rail=["VDD_IN", "VDD_CPU_GPU_CV"], root=str(tmp_path)) as m:
        assert m.read().watts == pytest.approx(7.5)


def test_ina3221_errors_name_what_is_wrong(tmp_path):
    trees.jetson_jp5(tmp_path, {"VDD_IN": (5000, 1000)})
    with pytest.raises(MeterConfigError, match="POM_5V_IN.*available.*VDD_IN"):
        Ina3221Meter(model="jetson-nano", root=str(tmp_path)).open()
    with pytest.raises(MeterConfigError, match="cannot tell the Jetson model"):
        Ina3221Meter(root=str(tmp_path)).open()
    with pytest.raises(MeterConfigError, match="unknown Jetson model"):
        Ina3221Meter(model="jetson-banana")
    with pytest.raises(FileNotFoundError):
        Ina3221Meter(model="jetson-nano", root=str(tmp_path / "empty")).open()


def test_model_names_normalise():
    for model in ina3221.TOTAL_RAILS:
        assert ina3221.normalise_model(model) == model
    assert ina3221.normalise_model("xavier_nx") == "jetson-xavier-nx"


# ---------------------------------------------------------------- RAPL ----------------------


class FakeTime:
    def __init__(self, start: float = 100.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_counter_delta_wraps():
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 150


def test_rapl_power_from_counter_deltas_with_wraparound(tmp_path):
    max_uj = 262_143_328_850
    d = trees.rapl(tmp_path, energy_uj=max_uj - 1_000_000, max_uj=max_uj)
    mono = FakeTime(10.0)
    wall = FakeTime(1_700_000_000.0)

    def sleep(seconds: float) -> None:
        mono.sleep(seconds)
        wall.sleep(seconds)

    meter = RaplMeter(root=str(tmp_path), clock=wall, monotonic=mono, sleep=sleep)
    meter.open()
    assert meter.domain_name == "package-0"
    # 0.5 s later the counter has wrapped: 1.0 J before the wrap + 1.5 J after it
    mono.now += 0.5
    wall.now += 0.5
    trees.write(d / "energy_uj", 1_500_000)
    s = meter.read()
    assert s.watts == pytest.approx(2.5 / 0.5)
    assert s.t == pytest.approx(1_700_000_000.25)  # middle of the window
    assert meter.wraps == 1
    # an ordinary delta; the read comes too soon, so the driver waits for min_interval
    trees.write(d / "energy_uj", 1_600_000)
    s = meter.read()
    assert mono.slept == [pytest.approx(0.05)]
    assert s.watts == pytest.approx(0.1 / 0.05)
    assert meter.energy_joules == pytest.approx(2.6)
    assert s.volts is None and s.amps is None


def test_rapl_domains_listed_and_missing_domain_is_oserror(tmp_path):
    trees.rapl(tmp_path, 5)
    trees.rapl(tmp_path, 5, domain="intel-rapl:0:0")
    assert list_domains(str(tmp_path)) == {"intel-rapl:0": "package-0", "intel-rapl:0:0": "core"}
    with pytest.raises(OSError):
        RaplMeter(root=str(tmp_path), domain="intel-rapl:1").open()


def test_rapl_docstring_says_package_only():
    import htfl.device.power.drivers.rapl as rapl_module

    assert "CPU package only" in (rapl_module.__doc__ or "")


# ---------------------------------------------------------------- Termux / battery ----------


def status_json(**fields) -> str:
    base = {
        "present": True,
        "technology": "Li-ion",
        "health": "GOOD",
        "plugged": "UNPLUGGED",
        "status": "DISCHARGING",
        "temperature": 29.5,
        "percentage": 81,
    }
    base.update(fields)
    return json.dumps(base)


@pytest.mark.parametrize(
    ("current", "sign", "watts"),
    [
        (-450_000, "auto", 1.755),  # Android convention, auto
        (450_000, "auto", 1.755),  # vendor reports discharge positive, auto
        (-450_000, -1, 1.755),  # Android convention declared
        (450_000, 1, 1.755),  # positive-discharge declared
        (-450_000, 1, -1.755),  # wrong declaration shows up as negative power
    ],
)
def test_termux_json_sign_conventions(current, sign, watts):
    meter = TermuxMeter(current_sign=sign, runner=lambda: "")
    s = meter.parse_status(status_json(current=current, voltage=3900), t=5.0)
    assert s.watts == pytest.approx(watts)
    assert s.volts == pytest.approx(3.9)
    assert s.amps == pytest.approx(watts / 3.9)
    assert s.charging is False
    assert s.t == 5.0


def test_termux_charging_is_flagged_not_consumption():
    meter = TermuxMeter(runner=lambda: "")
    s = meter.parse_status(status_json(current=1_200_000, voltage=4200, status="CHARGING"))
    assert s.charging is True
    assert s.watts == pytest.approx(-5.04)  # into the battery
    full = meter.parse_status(status_json(current=0, voltage=4350, status="FULL", plugged="AC"))
    assert full.charging is True
    unplugged_full = meter.parse_status(status_json(current=-100_000, voltage=4350, status="FULL"))
    assert unplugged_full.charging is False


def test_termux_milliamp_phones_and_voltage_fallbacks(tmp_path):
    meter = TermuxMeter(current_scale=1e-3, runner=lambda: "", root=str(tmp_path))
    with pytest.raises(FrameError, match="nominal_volts"):
        meter.parse_status(status_json(current=-450))  # old Termux:API, no voltage anywhere
    trees.battery(tmp_path, voltage_uv=3_850_000, current_ua=0, status="Discharging")
    s = meter.parse_status(status_json(current=-450))  # voltage from sysfs, microvolts
    assert s.watts == pytest.approx(3.85 * 0.45)
    nominal = TermuxMeter(nominal_volts=3.7, runner=lambda: "", root=str(tmp_path / "x"))
    assert nominal.parse_status(status_json(current=-1_000_000)).watts == pytest.approx(3.7)


def test_termux_runs_the_real_command(tmp_path):
    script = tmp_path / "termux-battery-status"
    doc = status_json(current=-300_000, voltage=4000)
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{doc}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    with TermuxMeter(command=[str(script)], device="phone-1") as meter:
        s = meter.read()
    assert s.watts == pytest.approx(1.2)
    assert s.source == "termux"


def test_termux_bad_output_counts_frame_errors(tmp_path):
    outputs = iter(["{not json", json.dumps({"status": "DISCHARGING"}), status_json(current=-1)])
    meter = TermuxMeter(
        runner=lambda: next(outputs, status_json(current=-1, voltage=1000)), root=str(tmp_path)
    )
    meter.open()  # consumes the first output
    with pytest.raises(FrameError, match="no 'current'"):
        meter.read()
    with pytest.raises(FrameError, match="nominal_volts"):
        meter.read()
    assert meter.frame_errors == 2
    assert meter.read().watts == pytest.approx(1e-6)


def test_termux_missing_command_is_oserror(tmp_path):
    with pytest.raises(OSError):
        TermuxMeter(command=[str(tmp_path / "absent")]).open()


@pytest.mark.parametrize(
    ("current_ua", "status", "sign", "watts", "charging"),
    [
        (-512_000, "Discharging", "auto", 1.9712, False),
        (512_000, "Discharging", "auto", 1.9712, False),  # vendor sign
        (-512_000, "Discharging", -1, 1.9712, False),  # power-supply ABI
        (800_000, "Charging", "auto", -3.08, True),
        (800_000, "Charging", -1, -3.08, True),
    ],
)
def test_battery_sysfs(tmp_path, current_ua, status, sign, watts, charging):
    trees.battery(tmp_path, voltage_uv=3_850_000, current_ua=current_ua, status=status)
    with TermuxMeter(mode="sysfs", current_sign=sign, root=str(tmp_path)) as meter:
        s = meter.read()
    assert s.watts == pytest.approx(watts)
    assert s.charging is charging
    assert s.volts == pytest.approx(3.85)


def test_battery_sysfs_missing_is_oserror(tmp_path):
    with pytest.raises(OSError):
        TermuxMeter(mode="sysfs", root=str(tmp_path)).open()


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
        ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"),
        ("NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "jetson-orin-nx"),
        ("Jetson-AGX", "jetson-agx-xavier"),
        ("Raspberry Pi 4 Model B Rev 1.4", None),
    ],
)
def test_detect_model_from_device_tree(tmp_path, text, model):
    trees.device_tree_model(tmp_path, text)
    assert detect_model(str(tmp_path)) == model
