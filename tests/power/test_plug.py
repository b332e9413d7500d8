"""Smart plugs (Shelly Gen2+, Tasmota) against HTTP emulators of their documented local APIs."""

from __future__ import annotations

import pytest

from htfl.device.power.config import MeterSpec, MeterSpecError, open_meter
from htfl.device.power.drivers.plug import ShellyMeter, TasmotaMeter
from htfl.device.power.meter import BadFrame, MeterDisconnected
from htfl.device.power.sampler import Sampler
from tests.support.meter_emulators import constant
from tests.support.plug_emulators import PlugEmulator

from .helpers import wait_for


@pytest.mark.parametrize(
    ("kind", "cls", "watts", "volts"),
    [("shelly", ShellyMeter, 27.6, 230.0), ("tasmota", TasmotaMeter, 28.0, 230.0)],
)
def test_plug_reading_decodes_watts_volts_amps(kind, cls, watts, volts):
    with PlugEmulator(kind, constant(230.0, 0.12)) as emu:
        meter = cls(emu.url, device="panda-01")
        with meter:
            s = meter.read()
    assert (s.watts, s.volts, s.amps, s.source) == (watts, volts, 0.12, kind)
    assert emu.requests == 1


def test_plug_faults_are_bad_frames_or_link_losses():
    with PlugEmulator("shelly", constant(230.0, 0.1), slow_seconds=0.6) as emu:
        meter = ShellyMeter(emu.url, timeout=0.3)
        meter.open()
        emu.inject("garbage")
        with pytest.raises(BadFrame):
            meter.read()
        emu.inject("error")
        with pytest.raises(MeterDisconnected):
            meter.read()
        emu.inject("slow")
        with pytest.raises(MeterDisconnected):
            meter.read()
        assert meter.read().watts == pytest.approx(23.0)
        assert (meter.bad_frames, meter.frame_errors) == (1, 1)
        # a wrong channel is the plug's own RPC error: reported, not a silent zero
        with pytest.raises(MeterDisconnected):
            ShellyMeter(emu.url, channel=1).read()


def test_plug_spec_defaults_to_wall_scope_and_samples_through_a_sampler():
    with PlugEmulator("tasmota", constant(230.0, 0.2)) as emu:
        spec = MeterSpec.from_mapping(
            {"driver": "tasmota", "url": emu.url + "/", "interval": 0.05, "read_by": "workstation"},
            "panda-01",
        )
        assert (spec.scope, spec.options["url"]) == ("wall", emu.url)
        sampler = Sampler(open_meter(spec, open_now=False), interval=0.05, scope=spec.scope)
        sampler.start()
        try:
            assert wait_for(lambda: sampler.samples_total >= 3)
        finally:
            sampler.stop()
    assert sampler.latest is not None and sampler.latest.watts == 46.0
    with pytest.raises(MeterSpecError, match="http://HOST"):
        MeterSpec.from_mapping({"driver": "shelly", "url": "10.0.2.11"}, "panda-01")
