"""The link relay: data paced to the bandwidth, delayed by the latency, in order, and a lost
segment paid for with a retransmission timeout. Real sockets on loopback, in one event loop.

Only lower bounds are asserted on durations (shaping can never make a transfer faster, while a
busy host can make it slower); the figures against their goals are benchmarks/emulation.py's."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time

import pytest

from htfl.ports import free_port
from htfl.workstation.fleet.profiles import LinkShape
from htfl.workstation.fleet.relay import MIN_RTO_S, DeviceRelay, Line, relays_from_spec


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through_relay(link: LinkShape, job):
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    relay = DeviceRelay("dev", free_port(), ("127.0.0.1", server.sockets[0].getsockname()[1]), link)
    relay_server = await relay.start()
    try:
        return await job(relay.port), relay
    finally:
        relay_server.close()
        server.close()


async def _round_trip(port: int, payload: bytes) -> tuple[float, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    elapsed = time.perf_counter() - t0
    writer.close()
    return elapsed, got


def test_bytes_arrive_intact_in_order_and_paced_to_the_bandwidth() -> None:
    payload = random.Random(0).randbytes(300_000)
    link = LinkShape(bandwidth_bit_s=8e6, latency_s=0.0, jitter_s=0.0, loss=0.0)  # 1 MB/s
    (elapsed, got), relay = asyncio.run(_through_relay(link, lambda p: _round_trip(p, payload)))
    assert got == payload
    # out and back, each way at 1 MB/s: at least 2 * 0.3 s (pipelined: at least one way's worth)
    assert elapsed >= 0.3
    assert relay.up.bytes == relay.down.bytes == len(payload)


def test_latency_is_added_each_way() -> None:
    link = LinkShape(bandwidth_bit_s=1e9, latency_s=0.05, jitter_s=0.0, loss=0.0)
    (elapsed, got), _ = asyncio.run(_through_relay(link, lambda p: _round_trip(p, b"x")))
    assert got == b"x" and elapsed >= 0.1


def test_a_lost_segment_costs_a_retransmission_timeout() -> None:
    link = LinkShape(bandwidth_bit_s=1e9, latency_s=0.0, jitter_s=0.0, loss=1.0)
    (elapsed, got), relay = asyncio.run(_through_relay(link, lambda p: _round_trip(p, b"y")))
    assert got == b"y"  # TCP loses time, never bytes
    assert elapsed >= 2 * MIN_RTO_S
    assert relay.up.lost == relay.down.lost == 1


def test_line_schedule() -> None:
    """The line's arithmetic: serialisation back to back, jitter never reorders, loss counted
    per 1448-byte segment."""
    line = Line(LinkShape(8e6, 0.01, 0.005, 0.0), random.Random(1))
    a = line.arrival(0.0, 1_000_000)  # 1 s on the line
    assert 1.005 <= a <= 1.015
    b = line.arrival(0.0, 1)
    assert b >= a  # in order, whatever its jitter
    lossy = Line(LinkShape(1e9, 0.0, 0.0, 0.5), random.Random(2))
    lossy.arrival(0.0, 1448 * 100)
    assert lossy.segments == 100 and 30 <= lossy.lost <= 70


def test_an_unpaced_line_adds_latency_but_no_transmission_time() -> None:
    """Where the kernel paces the bandwidth (htb), the relay's line leaves it out: 1 MB on an
    8 Mbit/s line arrives after the latency alone, not a second later."""
    link = LinkShape(8e6, 0.01, 0.0, 0.0)
    unpaced = Line(link, random.Random(1), paced=False)
    assert unpaced.arrival(0.0, 1_000_000) == pytest.approx(0.01)
    assert unpaced.arrival(0.5, 1_000_000) == pytest.approx(0.51)
    assert Line(link, random.Random(1)).arrival(0.0, 1_000_000) == pytest.approx(1.01)
    spec = {
        "upstream": "127.0.0.1:9000",
        "devices": [
            {"name": n, "port": 7000 + i, "link": dict(vars(link)), **pace}
            for i, (n, pace) in enumerate([("a", {}), ("b", {"pace": False})])
        ],
    }
    a, b = relays_from_spec(spec)
    assert (a.pace, a.up.paced) == (True, True)
    assert (b.pace, b.up.paced, b.down.paced) == (False, False, False)


def test_spec_builds_one_relay_per_device() -> None:
    relays = relays_from_spec(
        {
            "upstream": "127.0.0.1:9000",
            "seed": 3,
            "devices": [
                {
                    "name": "a",
                    "port": 7001,
                    "link": {
                        "bandwidth_bit_s": 1e8,
                        "latency_s": 0.001,
                        "jitter_s": 0.0,
                        "loss": 0.0,
                    },
                },
                {
                    "name": "b",
                    "port": 7002,
                    "link": {
                        "bandwidth_bit_s": 1e9,
                        "latency_s": 0.0,
                        "jitter_s": 0.0,
                        "loss": 0.01,
                    },
                },
            ],
        }
    )
    assert [(r.name, r.port, r.upstream) for r in relays] == [
        ("a", 7001, ("127.0.0.1", 9000)),
        ("b", 7002, ("127.0.0.1", 9000)),
    ]
    assert relays[1].link.loss == 0.01


def test_netem_where_the_kernel_has_it() -> None:
    """netem's command for a link; the probe answers (False on this project's test machines,
    whose kernel has no sch_netem: the relay applies there) and leaves no namespace behind."""
    from htfl.workstation.fleet.netem import netem_available, netem_command

    cmd = netem_command(LinkShape(100e6, 0.02, 0.005, 0.001), "eth0")
    assert cmd[:7] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]
    assert cmd[7:] == ["rate", "100000kbit", "delay", "20.000ms", "5.000ms", "loss", "0.1000%"]
    assert isinstance(netem_available(), bool)
    if shutil.which("ip"):
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "htfl-netem-probe" not in listed


async def _closed(reader: asyncio.StreamReader) -> bool:
    """The connection ended (end of stream or reset) instead of carrying data."""
    try:
        return await reader.read(1) == b""
    except ConnectionError:
        return True


def test_a_cut_link_resets_open_connections_refuses_new_ones_then_carries_again() -> None:
    """A cut (the faults benchmark's "link cut"): the open connection is reset, a new one is
    closed at once while the cut lasts, and once it ends traffic flows again."""
    link = LinkShape(bandwidth_bit_s=1e9, latency_s=0.0, jitter_s=0.0, loss=0.0)

    async def job(relay: DeviceRelay, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        relay.cut(0.5)
        assert await _closed(reader)  # reset: no more data on the open connection
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"b")
        assert await _closed(reader)  # refused while cut
        writer.close()
        await asyncio.sleep(0.6)
        assert (await _round_trip(port, b"c"))[1] == b"c"
        assert relay.cut_connections == 2 and not relay.is_cut

    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
        relay = DeviceRelay("dev", free_port(), upstream, link)
        relay_server = await relay.start()
        try:
            await job(relay, relay.port)
        finally:
            relay_server.close()
            server.close()

    asyncio.run(main())


def test_the_control_socket_cuts_the_named_device_and_refuses_an_unknown_one(tmp_path) -> None:
    import json

    import pytest

    from htfl.workstation.fleet.relay import cut_link, serve

    link = LinkShape(bandwidth_bit_s=1e9, latency_s=0.0, jitter_s=0.0, loss=0.0)
    relays = [DeviceRelay(n, free_port(), ("127.0.0.1", free_port()), link) for n in ("a", "b")]
    spec = tmp_path / "relay.json"
    spec.write_text(json.dumps({"control": str(tmp_path / "relay.sock")}))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(relays, stop, tmp_path / "relay.sock"))
        while not (tmp_path / "relay.sock").exists():
            await asyncio.sleep(0.01)
        assert (tmp_path / "relay.sock").stat().st_mode & 0o777 == 0o600
        await asyncio.to_thread(cut_link, spec, "b", 30)
        with pytest.raises(RuntimeError, match="no device 'c'"):
            await asyncio.to_thread(cut_link, spec, "c", 30)
        stop.set()
        await task

    asyncio.run(main())
    assert relays[1].is_cut and not relays[0].is_cut
