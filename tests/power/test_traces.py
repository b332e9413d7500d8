"""Raw traces end to end without Flower processes: the agent's samples ride in a reply, the
server writes them on its own clock, and recomputing from the file gives the device's figure."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity

from htfl import protocol
from htfl.device.instruments import DeviceInstruments
from htfl.device.power.energy import attribute
from htfl.device.power.meter import PowerSample
from htfl.workstation.power.rounds import RunPower, parse_spans, recompute
from htfl.workstation.power.traces import read_trace
from htfl.workstation.server.results import ClientRoundRow, ResultsStore
from htfl.workstation.server.selection import Device

OFFSET = 12.5  # the device's clock is 12.5 s ahead of the server's


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    # Messages outside a Flower process take their run id from TaskIdentity.
    for name, value in (("_run_id", 42), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value, raising=False)


def test_samples_in_a_reply_become_a_server_clock_trace_that_recomputes_the_row(tmp_path: Path):
    agent = DeviceInstruments(
        "nano-01", "jetson-nano", meter={"driver": "simulated", "idle_watts": 2, "busy_watts": 6}
    )
    assert agent.meter_facts() == {"meter_source": "simulated", "meter_scope": "board"}
    t0 = 1_000.0 + OFFSET  # device clock
    samples = [PowerSample(t0 + k * 0.1, 2.0 + (k % 7), 5.0, None, "simulated") for k in range(60)]
    for s in samples:
        agent._on_sample(s)  # what the sampler thread does
    # a simulated meter's samples are window means, kept (and sent) as steps
    stored = list(agent._samples)
    assert len(stored) == 2 * len(samples) - 1
    busy_start, busy_end = t0 + 1.05, t0 + 4.45
    (device_energy,) = attribute(stored, [("busy", busy_start, busy_end)])

    metrics = {
        "energy_joules": device_energy.joules,
        "busy_start": busy_start,
        "busy_end": busy_end,
    }
    reply = Message(protocol.content(metrics=metrics), dst_node_id=1, message_type=protocol.TRAIN)
    agent.attach_trace(reply.content)
    agent.attach_trace(Message(protocol.content(), dst_node_id=1, message_type="query").content)

    device = Device(7, "nano-01", "jetson-nano", agent.meter_facts(), OFFSET)
    row = ClientRoundRow(1, 7, "nano-01", "jetson-nano", "cnn4", 0, "ok")
    row.energy_joules = device_energy.joules
    power = RunPower(tmp_path)
    power.absorb(row, reply, device, train=True)
    power.close()
    store = ResultsStore(tmp_path)
    store.add_rows([row])
    store.close()

    assert (row.energy_meter, row.energy_scope) == ("simulated", "board")
    assert parse_spans(row.energy_spans) == [(busy_start - OFFSET, busy_end - OFFSET)]
    assert row.power_trace_bytes == len(stored) * 4 * 8
    trace = list(read_trace(tmp_path / "power" / "nano-01.csv"))
    assert [r.t for r in trace] == [s.t - OFFSET for s in stored]
    assert trace[0].amps is None and trace[0].volts == 5.0 and trace[0].scope == "board"
    (again,) = recompute(tmp_path)
    assert again.recomputed == pytest.approx(device_energy.joules, rel=1e-9)
    assert not math.isnan(again.recomputed)
    assert list(agent._unsent) == []  # sent once: the next reply carries only newer samples


def test_energy_command_reports_a_mismatch(tmp_path: Path, capsys):
    from htfl.workstation.cli.power import cmd_energy

    class Args:
        results = str(tmp_path)
        tolerance = 1e-6

    store = ResultsStore(tmp_path)
    row = ClientRoundRow(1, 7, "pi-01", "orange-pi-5b", "cnn4", 0, "ok", energy_joules=99.0)
    row.energy_meter, row.energy_scope, row.energy_spans = "um25c", "board", "10.0:12.0"
    store.add_rows([row])
    store.close()
    trace = tmp_path / "power" / "pi-01.csv"
    trace.parent.mkdir()
    trace.write_text("t,watts,volts,amps,meter,scope\n" + "".join(
        f"{9 + k * 0.5!r},5.0,5.0,1.0,um25c,board\n" for k in range(10)
    ))  # fmt: skip
    assert cmd_energy(Args()) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "10.000000" in out and "0/1 rows match" in out
