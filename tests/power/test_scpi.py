"""SCPI analysers (WT310 style): command set, reply parsing, faults, over a real pty."""

from __future__ import annotations

import dataclasses

import pytest

from htfl.device.power.drivers.scpi import WT310, ScpiCommandSet, ScpiMeter, parse_values
from htfl.device.power.meter import FrameError
from tests.support.meter_emulators import ScpiEmulator, constant

from .helpers import wait_for


def test_parse_values_accepts_instrument_notation():
    assert parse_values("+2.3012E+02,+1.0040E-01,+2.3105E+01\r\n", 3) == [230.12, 0.1004, 23.105]
    assert parse_values(b" 1.5 , -2 ,3e-3") == [1.5, -2.0, 0.003]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("", "empty"),
        ("1.0,2.0", "expected 3"),
        ("1.0,abc,3.0", "not a number"),
        ("1.0,NAN,3.0", "no data"),
        ("1.0,INF,3.0", "no data"),
        ("1.0,9.91E+37,3.0", "no data"),
        (b"\xff\xfe", "non-ASCII"),
    ],
)
def test_parse_values_rejects(line, match):
    with pytest.raises(FrameError, match=match):
        parse_values(line, 3)


def test_wt310_setup_commands():
    assert WT310.setup_commands(element=1, rate="100MS") == [
        ":COMM:REM ON",
        ":RATE 100MS",
        ":NUM:FORM ASC",
        ":NUM:NORM:NUM 3",
        ":NUM:NORM:ITEM1 U,1;ITEM2 I,1;ITEM3 P,1",
    ]


def test_open_configures_instrument_and_reads_values():
    with ScpiEmulator(constant(229.5, 0.0871)) as emu:
        meter = ScpiMeter(emu.port, element=2, rate="250MS", timeout=0.5, device="jetson-1")
        with meter:
            s = meter.read()
            assert meter.identity == emu.identity
        assert s.volts == pytest.approx(229.5)
        assert s.amps == pytest.approx(0.0871)
        assert s.watts == pytest.approx(229.5 * 0.0871, rel=1e-4)
        assert s.source == "wt310"
        assert emu.commands[:7] == [
            "COMM:REM ON",
            "RATE 250MS",
            "NUM:FORM ASC",
            "NUM:NORM:NUM 3",
            "NUM:NORM:ITEM1 U,2",
            "NUM:NORM:ITEM2 I,2",
            "NUM:NORM:ITEM3 P,2",
        ]
        assert emu.items == {1: ("U", 2), 2: ("I", 2), 3: ("P", 2)}
        assert emu.rate == "250MS"
        # closing leaves remote mode
        assert wait_for(lambda: "COMM:REM OFF" in emu.commands, timeout=2)
        assert emu.remote is False


def test_long_form_commands_are_understood_by_the_emulator():
    long_form = dataclasses.replace(
        WT310,
        name="wt310-long",
        remote_on=":COMMunicate:REMote ON",
        numeric_format=":NUMeric:FORMat ASCii",
        item_count=":NUMeric:NORMal:NUMber {count}",
        items_prefix=":NUMeric:NORMal:",
        query=":NUMeric:NORMal:VALue?",
        terminator="\r\n",
    )
    with (
        ScpiEmulator(constant(12.0, 0.5)) as emu,
        ScpiMeter(emu.port, commands=long_form, timeout=0.5) as meter,
    ):
        assert meter.read().watts == pytest.approx(6.0)
        assert emu.remote is True
        assert emu.numeric_format == "ASC"


def test_power_derived_when_only_voltage_and_current_selected():
    ui_only = ScpiCommandSet(name="ui", functions=("U", "I"))
    with (
        ScpiEmulator(constant(10.0, 0.25)) as emu,
        ScpiMeter(emu.port, commands=ui_only, timeout=0.5) as meter,
    ):
        s = meter.read()
    assert s.watts == pytest.approx(2.5)
    assert emu.item_count == 2


def test_command_set_without_power_or_current_is_rejected():
    with pytest.raises(ValueError, match="power"):
        ScpiMeter("/dev/null", commands=ScpiCommandSet(functions=("U", "PF")))
    with pytest.raises(ValueError, match="unknown SCPI instrument"):
        ScpiMeter("/dev/null", commands="hp66332")


def test_bad_replies_are_frame_errors_and_stream_continues():
    with ScpiEmulator(constant(230.0, 0.1)) as emu, ScpiMeter(emu.port, timeout=0.3) as meter:
        emu.inject_garbage_line()
        emu.inject_nan()
        emu.inject_short_line()
        for match in ("expected 3", "no data", "expected 3"):
            with pytest.raises(FrameError, match=match):
                meter.read()
        assert meter.frame_errors == 3
        assert meter.read().watts == pytest.approx(23.0)
        assert meter.frame_errors == 3
