"""A shaped link per simulated device: a TCP relay in front of the SuperLink.

The test machines' kernel has no ``netem`` qdisc (``tc`` has tbf and htb only), so latency and
loss cannot come from the kernel there; this relay gives each device its own port that forwards
to the SuperLink through a line with the device's bandwidth, one-way latency, jitter and loss,
in each direction. (Where the kernel has netem, containers use it instead: see
``htfl.workstation.fleet.netem``.)

The line, per device and direction (shared by the device's connections, as a real link is):

* **bandwidth**: data occupies the line for ``size * 8 / bandwidth`` seconds after what went
  before it, so a 1 MB upload takes size/bandwidth;
* **latency and jitter**: data arrives ``latency + U(-jitter, +jitter)`` after it left the
  line, never before the data ahead of it (TCP delivers in order, so a late segment holds
  back the ones behind it, as it does in the kernel);
* **loss**: TCP on a lossy link loses no bytes, it loses time. Each TCP segment (1448 bytes,
  Ethernet's MSS with timestamps) is lost with the configured probability, and what it was
  sent with arrives one retransmission timeout later,
  ``max(200 ms, RTT + 4 * jitter)`` (Linux's minimum RTO and RFC 6298's estimate), holding back
  what follows it. That is the cost of a tail loss or a loss in a small message, which is most
  of Flower's traffic; in the middle of a bulk transfer the kernel's fast retransmit would
  recover in about one RTT, so for large payloads this errs on the slow side.

Where the kernel paces the bandwidth (htb classes on the relay's ports, see
``htfl.workstation.fleet.htb``), a device's spec says ``"pace": false`` and the relay leaves
the bandwidth out of its lines: it keeps latency, jitter and loss only.

The relay reads as fast as its bounded queue lets it, so a sender that outruns the line is
held back by TCP's own flow control, not by an unbounded buffer here.

A device's link can also be **cut** for a while (:meth:`DeviceRelay.cut`; a fault injector
sends ``cut NAME SECONDS`` to the Unix socket the spec names as ``control``, see
:func:`cut_link`): its open connections are reset and new ones closed at once until the cut
ends, as a peer behind a dead link answers (refused or reset); then the link carries again.

Run as ``python -m htfl.workstation.fleet.relay SPEC.json`` (the local fleet does) or with
``--spec-json JSON`` (the compose lab's ``link`` service); the spec names the upstream, the
address to listen on (default 127.0.0.1) and, per device, a listen port and its link.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from htfl.workstation.fleet.profiles import LinkShape

MSS = 1448
MIN_RTO_S = 0.2
CHUNK = 262_144
QUEUE_CHUNKS = 16  # at most 4 MiB held per direction: a faster sender waits on TCP
RCVBUF = 4 * 2**20

log = logging.getLogger("htfl.relay")


def retransmission_timeout(link: LinkShape) -> float:
    return max(MIN_RTO_S, 2 * link.latency_s + 4 * link.jitter_s)


@dataclass
class Line:
    """One direction of one device's link: when the line is next free, what was lost."""

    link: LinkShape
    rng: random.Random
    #: False where the kernel paces this line's bandwidth (htb): no transmission time here
    paced: bool = True
    busy_until: float = 0.0
    last_arrival: float = 0.0
    segments: int = 0
    lost: int = 0
    bytes: int = 0

    def arrival(self, now: float, size: int) -> float:
        """When a chunk of ``size`` bytes handed to the line at ``now`` reaches the far end.

        A chunk is what one read returned (up to 64 KiB): its segments are sent back to back,
        so it is delayed as a whole, by one retransmission timeout if any of them was lost
        (losses in one window are recovered together)."""
        link = self.link
        self.busy_until = max(self.busy_until, now)
        if self.paced:
            self.busy_until += size * 8 / link.bandwidth_bit_s
        delay = link.latency_s
        if link.jitter_s:
            delay = max(0.0, delay + self.rng.uniform(-link.jitter_s, link.jitter_s))
        segments = -(-size // MSS)
        self.segments += segments
        self.bytes += size
        if link.loss:
            lost = sum(self.rng.random() < link.loss for _ in range(segments))
            if lost:
                self.lost += lost
                delay += retransmission_timeout(link)
        self.last_arrival = max(self.last_arrival, self.busy_until + delay)
        return self.last_arrival


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: Line) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def feed() -> None:
        try:
            while data := await reader.read(CHUNK):
                await queue.put((line.arrival(loop.time(), len(data)), data))
        except (ConnectionError, OSError):
            pass
        finally:
            await queue.put(None)

    async def deliver() -> None:
        held: tuple[float, bytes] | None = None
        while True:
            item = held or await queue.get()
            held = None
            if item is None:
                break
            due, segment = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            batch = [segment]
            while not queue.empty():  # everything already due goes out in one write
                nxt = queue.get_nowait()
                if nxt is None or nxt[0] > loop.time():
                    held = nxt
                    break
                batch.append(nxt[1])
            writer.write(b"".join(batch))
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        await deliver()
    except (ConnectionError, OSError):
        pass
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder


def _roomy(writer: asyncio.StreamWriter) -> None:
    """A receive buffer of RCVBUF on the connection's socket: a line paced by the kernel keeps
    sending while this busy process is not scheduled (with the default 128 KiB, a 1 Gbit/s line
    stalls after 1 ms of it). Capped by the kernel's net.core.rmem_max."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


@dataclass
class DeviceRelay:
    """One device's port: every connection to it is relayed to ``upstream`` over its lines."""

    name: str
    port: int
    upstream: tuple[str, int]
    link: LinkShape
    seed: int = 0
    host: str = "127.0.0.1"
    #: False where the kernel paces the bandwidth (htb on this port): latency and loss only
    pace: bool = True
    up: Line = field(init=False)
    down: Line = field(init=False)
    #: monotonic time until which the link is cut (0: never cut)
    cut_until: float = 0.0
    #: connections refused or reset by cuts
    cut_connections: int = 0
    #: the open connections, each as its (device side, SuperLink side) writers
    _open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(
        default_factory=set, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.up = Line(self.link, random.Random(f"{self.seed}:{self.name}:up"), self.pace)
        self.down = Line(self.link, random.Random(f"{self.seed}:{self.name}:down"), self.pace)

    @property
    def is_cut(self) -> bool:
        return time.monotonic() < self.cut_until

    def cut(self, seconds: float) -> None:
        """Cut the link for ``seconds`` from now: reset every open connection (both ends) and
        refuse new ones until then."""
        self.cut_until = max(self.cut_until, time.monotonic() + seconds)
        log.info("%s: link cut for %.1f s", self.name, seconds)
        for pair in list(self._open):
            self.cut_connections += 1
            for writer in pair:
                writer.transport.abort()  # RST to the device and to the SuperLink
        self._open.clear()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        _roomy(client_w)
        if self.is_cut:
            self.cut_connections += 1
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError as err:
            log.warning("%s: cannot reach the SuperLink at %s: %s", self.name, self.upstream, err)
            client_w.close()
            return
        if self.is_cut:  # cut while the upstream connection was being made
            self.cut_connections += 1
            for w in (client_w, server_w):
                w.transport.abort()
            return
        _roomy(server_w)
        pair = (client_w, server_w)
        self._open.add(pair)
        try:
            await asyncio.gather(
                _pump(client_r, server_w, self.up), _pump(server_r, client_w, self.down)
            )
        finally:
            self._open.discard(pair)
            for w in (server_w, client_w):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self.handle, self.host, self.port)

    def counters(self) -> dict[str, int]:
        return {
            "up_bytes": self.up.bytes,
            "up_segments": self.up.segments,
            "up_lost": self.up.lost,
            "down_bytes": self.down.bytes,
            "down_segments": self.down.segments,
            "down_lost": self.down.lost,
            "cut_connections": self.cut_connections,
        }


def relays_from_spec(spec: dict) -> list[DeviceRelay]:
    host, _, port = str(spec["upstream"]).rpartition(":")
    return [
        DeviceRelay(
            d["name"],
            int(d["port"]),
            (host, int(port)),
            LinkShape(**d["link"]),
            spec.get("seed", 0),
            spec.get("host", "127.0.0.1"),
            bool(d.get("pace", True)),
        )
        for d in spec["devices"]
    ]


async def _control(
    relays: dict[str, DeviceRelay], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One control connection: ``cut NAME SECONDS`` lines, each answered ``ok`` or
    ``error: ...``."""
    try:
        while line := await reader.readline():
            match line.decode(errors="replace").split():
                case ["cut", name, seconds] if name in relays:
                    try:
                        relays[name].cut(float(seconds))
                        answer = "ok"
                    except ValueError:
                        answer = f"error: {seconds!r} is not a number of seconds"
                case ["cut", name, _]:
                    answer = f"error: no device {name!r} (known: {', '.join(sorted(relays))})"
                case _:
                    answer = "error: expected: cut NAME SECONDS"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


def cut_link(spec: Path, name: str, seconds: float, timeout: float = 10.0) -> None:
    """Ask the relay run with ``spec`` to cut device ``name``'s link for ``seconds``;
    RuntimeError with the relay's answer if it refuses."""
    control = json.loads(spec.read_text()).get("control")
    if not control:
        raise RuntimeError(f"{spec}: the relay has no control socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(control)
        sock.sendall(f"cut {name} {seconds}\n".encode())
        answer = sock.makefile().readline().strip()
    if answer != "ok":
        raise RuntimeError(f"link relay: {answer or 'no answer'}")


async def serve(
    relays: list[DeviceRelay], stop: asyncio.Event, control: Path | None = None
) -> None:
    servers = [await r.start() for r in relays]
    if control is not None:
        by_name = {r.name: r for r in relays}
        control.unlink(missing_ok=True)
        servers.append(
            await asyncio.start_unix_server(lambda r, w: _control(by_name, r, w), path=control)
        )
        control.chmod(0o600)
    log.info("relaying %d devices", len(relays))
    try:
        await stop.wait()
    finally:
        for s in servers:
            s.close()
        for r in relays:
            log.info("%s: %s", r.name, json.dumps(r.counters()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "spec", type=Path, nargs="?", help="JSON: upstream, host, seed, devices[name, port, link]"
    )
    given.add_argument("--spec-json", metavar="JSON", help="the spec itself (a compose service's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads(args.spec_json) if args.spec_json else json.loads(args.spec.read_text())
    relays = relays_from_spec(spec)
    control = Path(spec["control"]) if spec.get("control") else None

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(relays, stop, control)
        finally:
            if control is not None:
                control.unlink(missing_ok=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
