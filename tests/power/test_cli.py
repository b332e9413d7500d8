"""`htfl power probe` on a fixture sysfs tree plus an emulated UM25C on a pty."""

from __future__ import annotations

import argparse
import io
import re

import pytest

from htfl.cli import UsageError, build_parser
from htfl.device.cli import power as power_cli
from htfl.device.power.spec_text import MeterTextError, parse_meter_text
from tests.support.meter_emulators import UMEmulator, constant

from . import sysfs_trees as trees


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(argv: list[str]) -> tuple[int, str]:
    args = parse(argv)
    out = io.StringIO()
    if args.func is power_cli.cmd_probe:
        code = power_cli.cmd_probe(args, out=out)
    else:
        code = args.func(args)
    return code, out.getvalue()


def test_register_sets_func_and_defaults():
    args = parse(["power", "probe"])
    assert args.func is power_cli.cmd_probe
    assert (args.root, args.seconds, args.meter) == ("/", 3.0, None)
    assert parse(["power"]).func(parse(["power"])) == 2  # prints help


def test_parse_meter_text():
    assert parse_meter_text("driver=scpi,port=/dev/ttyUSB0,baudrate=9600,timeout=0.5") == {
        "driver": "scpi",
        "port": "/dev/ttyUSB0",
        "baudrate": 9600,
        "timeout": 0.5,
    }
    assert parse_meter_text(" driver = termux , mode=sysfs,current_sign=-1") == {
        "driver": "termux",
        "mode": "sysfs",
        "current_sign": -1,
    }
    assert parse_meter_text("driver=simulated,busy_watts=1e1,flag=true,x=NaN") == {
        "driver": "simulated",
        "busy_watts": 10.0,
        "flag": True,
        "x": "NaN",  # not a finite number: stays text
    }
    assert parse_meter_text('{"driver": "rapl"}') == {"driver": "rapl"}
    for bad, says in [
        ("driver", "'driver' is not KEY=VALUE"),
        ("", "'' is not KEY=VALUE"),
        ("driver=um25c,,port=/dev/x", "'' is not KEY=VALUE"),
        ("=um25c", "'=um25c' is not KEY=VALUE"),
        ("driver=um25c,driver=scpi", "driver given twice"),
        ('{"driver": "um25c", "driver": "scpi"}', "driver given twice"),
        ('{"driver": ', "not valid JSON"),
        ("{}x", "not valid JSON"),
        ('{"driver": "rapl"', "not valid JSON"),
    ]:
        with pytest.raises(MeterTextError, match=re.escape(says)):
            parse_meter_text(bad)
    with pytest.raises(MeterTextError, match="or a JSON object"):
        parse_meter_text('["driver", "rapl"]')  # JSON, but not an object


def test_probe_lists_fixture_meters_and_prints_live_readings(tmp_path):
    trees.device_tree_model(tmp_path, "NVIDIA Jetson Orin Nano Developer Kit")
    trees.jetson_jp5(
        tmp_path, {"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 300), "VDD_SOC": (5000, 250)}
    )
    trees.rapl(tmp_path, 1_000_000)
    trees.battery(tmp_path, voltage_uv=3_900_000, current_ua=-500_000, status="Discharging")
    with UMEmulator("um25c", constant(5.0, 0.5)) as emu:
        code, text = run(
            [
                "power",
                "probe",
                "--root",
                str(tmp_path),
                "--seconds",
                "0.25",
                "--interval",
                "0.1",
                "--no-serial",
                "--meter",
                f"driver=um25c,port={emu.port},timeout=0.3",
            ]
        )
    assert code == 0, text
    assert "INA3221 rails (model: jetson-orin-nano)" in text
    assert re.search(r"VDD_IN\s+hwmon .*ch1\s+6\.000 W", text)
    assert "intel-rapl:0     package-0" in text
    assert "battery          type=Battery status=Discharging" in text
    live = text.split("Live readings", 1)[1]
    assert re.search(r"ina3221\s+6\.000\s+5\.000\s+1\.200", live)
    assert re.search(r"battery battery\s+1\.950\s+3\.900\s+0\.500", live)
    assert re.search(r"rapl intel-rapl:0\s+0\.000", live)  # counter did not move
    assert re.search(r"um25c \S+\s+2\.500\s+5\.000\s+0\.500", live)


def test_probe_with_nothing_and_a_meter_that_cannot_be_opened(tmp_path):
    absent = tmp_path / "absent"
    base = ["power", "probe", "--root", str(tmp_path), "--no-serial", "--seconds", "0"]
    code, text = run([*base, "--meter", f"driver=um25c,port={absent}"])
    assert code == 1  # the meter the user named is not there
    assert f"um25c {absent}: cannot open" in text
    assert "No readable meters." in text
    assert "(none)" in text


def test_probe_checks_every_meter_before_it_starts(tmp_path):
    base = ["power", "probe", "--root", str(tmp_path), "--no-serial", "--seconds", "0"]
    good = f"driver=um25c,port={tmp_path / 'absent'}"
    with pytest.raises(UsageError, match=r"htfl_meter\.port: missing") as err:
        run([*base, "--meter", good, "--meter", "driver=um25c"])
    assert "probe-1" in str(err.value)  # the second --meter
