"""htfl_meter inventory mappings -> MeterSpec -> meter, with errors naming device and key."""

from __future__ import annotations

import pytest
import yaml

from htfl.device.power.config import (
    MeterSpec,
    MeterSpecError,
    make_sampler,
    open_meter,
    specs_from_hostvars,
)
from htfl.device.power.drivers.ina3221 import Ina3221Meter
from htfl.device.power.drivers.rapl import RaplMeter
from htfl.device.power.drivers.scpi import ScpiMeter
from htfl.device.power.drivers.simulated import SimulatedMeter
from htfl.device.power.drivers.termux import TermuxMeter
from htfl.device.power.drivers.um import UMMeter
from htfl.device.power.sampler import Sampler, SerialSampler
from htfl.workstation.inventory import hostvars_from_document, load_meter_specs
from tests.support.meter_emulators import UMEmulator, constant


@pytest.mark.parametrize(
    ("mapping", "key", "fragment"),
    [
        ({"driver": "um99c", "port": "/dev/rfcomm0"}, "driver", "unknown driver 'um99c'"),
        ({"port": "/dev/rfcomm0"}, "driver", "missing"),
        ({"driver": "um25c"}, "port", "missing (required by driver 'um25c')"),
        ({"driver": "scpi", "port": ""}, "port", "non-empty string"),
        ({"driver": "um25c", "port": "/dev/x", "baudrate": "fast"}, "baudrate", "'fast'"),
        ({"driver": "scpi", "port": "/dev/x", "baudrate": 0}, "baudrate", "baud rate"),
        ({"driver": "scpi", "port": "/dev/x", "baudrate": True}, "baudrate", "baud rate"),
        ({"driver": "scpi", "port": "/dev/x", "baudrate": 96.5}, "baudrate", "96.5"),
        ({"driver": "um25c", "prot": "/dev/x"}, "prot", "unknown key for driver 'um25c'"),
        ({"driver": "scpi", "port": "/dev/x", "channel": 0}, "channel", ">= 1"),
        ({"driver": "scpi", "port": "/dev/x", "rate": "fast"}, "rate", "100MS"),
        ({"driver": "scpi", "port": "/dev/x", "instrument": "hp"}, "instrument", "unknown"),
        ({"driver": "ina3221", "model": "jetson-toaster"}, "model", "unknown Jetson model"),
        ({"driver": "ina3221", "rail": []}, "rail", "rail name"),
        ({"driver": "termux", "current_sign": 2}, "current_sign", "'auto', 1, -1"),
        ({"driver": "termux", "mode": "adb"}, "mode", "'api', 'sysfs'"),
        ({"driver": "termux", "current_scale": 0}, "current_scale", "> 0"),
        ({"driver": "simulated", "idle_watts": 2.0}, "busy_watts", "missing"),
        ({"driver": "simulated", "idle_watts": 5, "busy_watts": 1}, "busy_watts", ">= idle"),
        ({"driver": "simulated", "idle_watts": "2W", "busy_watts": 3}, "idle_watts", "number"),
        ({"driver": "rapl", "interval": -1}, "interval", ">= 0"),
    ],
)
def test_errors_name_device_and_key(mapping, key, fragment):
    with pytest.raises(MeterSpecError) as info:
        MeterSpec.from_mapping(mapping, "jetson-nano-07")
    err = info.value
    assert err.device == "jetson-nano-07"
    assert key in [k for _, k, _ in err.problems]
    assert str(err).startswith(f"device 'jetson-nano-07': htfl_meter.{err.key}: ")
    (line,) = [ln for ln in str(err).splitlines() if f"htfl_meter.{key}: " in ln]
    assert line.startswith(f"device 'jetson-nano-07': htfl_meter.{key}: ")
    assert fragment in line


def test_every_problem_of_a_meter_spec_is_reported_at_once():
    with pytest.raises(MeterSpecError) as info:
        MeterSpec.from_mapping(
            {"driver": "scpi", "baudrate": 0, "channel": 0, "rate": "fast", "colour": "red"},
            "opi-5",
        )
    lines = str(info.value).splitlines()
    assert [k for _, k, _ in info.value.problems] == [
        "port",
        "baudrate",
        "channel",
        "rate",
        "colour",
    ]
    assert lines == [
        "device 'opi-5': htfl_meter.port: missing (required by driver 'scpi')",
        "device 'opi-5': htfl_meter.baudrate: expected a baud rate (an integer, e.g. 9600 or "
        "115200), got 0",
        "device 'opi-5': htfl_meter.channel: expected an integer >= 1, got 0",
        "device 'opi-5': htfl_meter.rate: expected an update period like '100MS' or '1S', "
        "got 'fast'",
        "device 'opi-5': htfl_meter.colour: unknown key for driver 'scpi' (expected one of: "
        "baudrate, channel, instrument, interval, port, rate, source, timeout)",
    ]


def test_non_mapping_is_rejected():
    with pytest.raises(MeterSpecError, match="must be a mapping"):
        MeterSpec.from_mapping(["um25c"], "phone-2")  # type: ignore[arg-type]


def test_defaults_are_filled_in():
    spec = MeterSpec.from_mapping({"driver": "UM25C", "port": "/dev/rfcomm0"}, "nano-01")
    assert spec.driver == "um25c"
    assert spec.options["baudrate"] == 9600
    assert spec.interval == 0.2
    assert spec.source == "um25c"
    assert spec.scope == "board" and spec.read_by == "device"
    assert spec.to_mapping() == {
        "driver": "um25c",
        "scope": "board",
        "port": "/dev/rfcomm0",
        "baudrate": 9600,
        "timeout": 1.0,
        "interval": 0.2,
    }
    scpi = MeterSpec.from_mapping(
        {"driver": "scpi", "port": "/dev/ttyUSB0", "baudrate": "19200", "channel": 2}, "d"
    )
    assert scpi.options["baudrate"] == 19200
    assert scpi.options["instrument"] == "wt310"
    assert scpi.scope == "wall"
    ina = MeterSpec.from_mapping({"driver": "ina3221", "model": "orin nano"}, "o")
    assert ina.options["model"] == "jetson-orin-nano"
    assert ina.scope == "module"
    with pytest.raises(TypeError):
        spec.options["port"] = "/dev/other"  # type: ignore[index]


@pytest.mark.parametrize(
    ("mapping", "cls"),
    [
        ({"driver": "um24c", "port": "/dev/rfcomm0"}, UMMeter),
        ({"driver": "scpi", "port": "/dev/ttyUSB0", "baudrate": 9600, "channel": 1}, ScpiMeter),
        ({"driver": "ina3221", "model": "jetson-orin-nano"}, Ina3221Meter),
        ({"driver": "rapl"}, RaplMeter),
        ({"driver": "termux"}, TermuxMeter),
        ({"driver": "simulated", "idle_watts": 2.0, "busy_watts": 7.5}, SimulatedMeter),
    ],
)
def test_open_meter_builds_the_right_driver(mapping, cls):
    spec = MeterSpec.from_mapping(mapping, "dev-9")
    meter = open_meter(spec, open_now=False)
    assert type(meter) is cls
    assert meter.device == "dev-9"
    sampler = make_sampler(spec)
    expected = SerialSampler if mapping["driver"] in ("um24c", "scpi") else Sampler
    assert type(sampler) is expected
    assert sampler.interval == spec.interval


def test_open_meter_opens_and_reads_through_the_spec():
    with UMEmulator("um34c", constant(12.0, 1.0)) as emu:
        spec = MeterSpec.from_mapping(
            {"driver": "um34c", "port": emu.port, "timeout": 0.5, "source": "usb-meter"}, "pi-3"
        )
        meter = open_meter(spec)
        try:
            s = meter.read()
        finally:
            meter.close()
    assert s.watts == pytest.approx(12.0)
    assert s.source == "usb-meter"


INVENTORY = """
all:
  hosts:
    nano-01:
      ansible_host: 10.0.0.11
      htfl_meter: {driver: um25c, port: /dev/rfcomm0}
    panda-01:
      htfl_meter: {driver: rapl}
    server:
  children:
    phones:
      vars:
        htfl_meter: {driver: termux, current_sign: auto}
      hosts:
        pixel-01:
        galaxy-01:
          htfl_meter: {driver: termux, current_scale: 0.001}
    orins:
      vars:
        htfl_meter: {driver: ina3221, model: jetson-orin-nano}
      hosts:
        orin-01:
      children:
        orin_nx:
          vars:
            htfl_meter: {driver: ina3221, model: jetson-orin-nx}
          hosts:
            orin-nx-01:
"""


def test_inventory_host_and_group_vars(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(INVENTORY)
    specs = load_meter_specs(str(path))
    assert specs == specs_from_hostvars(hostvars_from_document(yaml.safe_load(INVENTORY))[0])
    assert set(specs) == {"nano-01", "panda-01", "pixel-01", "galaxy-01", "orin-01", "orin-nx-01"}
    assert specs["nano-01"].options["port"] == "/dev/rfcomm0"
    assert specs["panda-01"].driver == "rapl"
    assert specs["pixel-01"].options["current_scale"] == 1e-6
    assert specs["galaxy-01"].options["current_scale"] == 0.001
    assert specs["orin-01"].options["model"] == "jetson-orin-nano"
    assert specs["orin-nx-01"].options["model"] == "jetson-orin-nx"


def test_inventory_error_names_every_bad_host():
    bad = {
        "all": {
            "hosts": {
                "opi-5": {"htfl_meter": {"driver": "scpi"}},
                "nano-2": {"htfl_meter": {"driver": "um25c", "port": "/dev/x", "timeout": 0}},
                "pi-3": {"htfl_meter": {"port": "/dev/x"}},
                "ok-1": {"htfl_meter": {"driver": "rapl"}},
            }
        }
    }
    with pytest.raises(MeterSpecError) as info:
        specs_from_hostvars(hostvars_from_document(bad)[0])
    assert str(info.value).splitlines() == [
        "device 'nano-2': htfl_meter.timeout: expected a number > 0, got 0",
        "device 'opi-5': htfl_meter.port: missing (required by driver 'scpi')",
        "device 'pi-3': htfl_meter.driver: missing (one of: um24c, um25c, um34c, scpi, stream, "
        "ina3221, rapl, termux, simulated, shelly, tasmota)",
    ]


MINIMAL = {
    "um24c": {"port": "/dev/rfcomm0"},
    "um25c": {"port": "/dev/rfcomm0"},
    "um34c": {"port": "/dev/rfcomm0"},
    "scpi": {"port": "/dev/ttyUSB0"},
    "stream": {"port": "/dev/ttyACM0"},
    "ina3221": {},
    "rapl": {},
    "termux": {},
    "simulated": {"idle_watts": 1, "busy_watts": 2},
    "shelly": {"url": "http://10.0.2.11"},
    "tasmota": {"url": "http://10.0.2.12:8080"},
}


def test_every_registered_driver_builds_its_meter_from_its_settings():
    from htfl.device.power.drivers import DRIVERS
    from htfl.device.power.meter import Meter

    assert set(MINIMAL) == set(DRIVERS)
    for name, driver in DRIVERS.items():
        spec = MeterSpec.from_mapping({"driver": name, **MINIMAL[name]}, "d")
        meter = open_meter(spec, open_now=False)
        assert isinstance(meter, driver.meter_class()) and isinstance(meter, Meter)
        assert spec.options == MeterSpec.from_mapping(spec.to_mapping(), "d").options
        assert (type(make_sampler(spec)) is SerialSampler) == driver.serial


def test_scope_and_reader_are_declared_and_checked():
    spec = MeterSpec.from_mapping(
        {"driver": "um34c", "port": "/dev/rfcomm1", "scope": "wall", "read_by": "workstation"},
        "nano-02",
    )
    assert (spec.scope, spec.read_by, spec.on_workstation) == ("wall", "workstation", True)
    assert MeterSpec.from_mapping(spec.to_mapping(), "nano-02") == spec
    with pytest.raises(MeterSpecError) as err:
        MeterSpec.from_mapping(
            {"driver": "rapl", "scope": "socket", "read_by": "laptop", "bogus": 1}, "panda-01"
        )
    text = str(err.value)
    assert "device 'panda-01': htfl_meter.scope: expected one of wall, board" in text
    assert "htfl_meter.read_by: expected one of device, workstation, got 'laptop'" in text
    assert "htfl_meter.bogus" in text
