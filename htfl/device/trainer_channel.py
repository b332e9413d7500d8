"""The local channel between an agent and its trainer process: length-prefixed frames.

One frame is one message: a JSON header (the operation, run id, config, metrics, an error) and
the named arrays of a payload as a NumPy ``.npz`` archive. Each part is prefixed by its length
(8 bytes, big-endian), so a reader knows where a message ends without parsing it.

Why JSON + ``.npz`` and not pickle: loading either runs no code (``np.load`` with
``allow_pickle=False`` refuses object arrays), and both are read the same by the agent's
NumPy 2 and a vendor Python's NumPy 1.x, whereas a NumPy 2 pickle names ``numpy._core``, which
NumPy 1.x cannot unpickle. Both ship with Python/NumPy (no new dependency). Configs and metrics
are already JSON in the protocol (:mod:`htfl.protocol`).

Imports only the standard library and NumPy, and runs on Python >= 3.8, so the trainer side
can use it in any interpreter.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from typing import Any

import numpy as np

_LENGTH = struct.Struct(">Q")
#: refuse a frame part larger than this (a corrupt length must not allocate the machine away)
MAX_PART_BYTES = 4 << 30


class ChannelClosed(EOFError):
    """The other end closed the channel (its process exited) before a whole frame arrived."""


class ChannelError(ValueError):
    """A frame that is not a channel message (corrupt length, header or arrays)."""


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    head = json.dumps(header).encode()
    body = b""
    if arrays:
        buf = io.BytesIO()
        named = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        # (no allow_pickle= here: NumPy 1.x's savez would store it as an array)
        np.savez(buf, **named)  # type: ignore[arg-type]
        body = buf.getvalue()
    return _LENGTH.pack(len(head)) + head + _LENGTH.pack(len(body)) + body


def decode_arrays(body: bytes) -> dict[str, np.ndarray]:
    if not body:
        return {}
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as err:
        raise ChannelError(f"trainer channel: bad arrays: {err}") from None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    left = n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ChannelClosed(f"trainer channel closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_part(sock: socket.socket) -> bytes:
    (n,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    if n > MAX_PART_BYTES:
        raise ChannelError(f"trainer channel: a frame part of {n} bytes (corrupt length?)")
    return _recv_exact(sock, n)


def send(
    sock: socket.socket, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> None:
    sock.sendall(encode(header, arrays))


def receive(sock: socket.socket) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The next message: (header, arrays). :class:`ChannelClosed` when the peer is gone."""
    head = _recv_part(sock)
    try:
        header = json.loads(head)
    except ValueError as err:
        raise ChannelError(f"trainer channel: bad header: {err}") from None
    if not isinstance(header, dict):
        raise ChannelError(f"trainer channel: header is {type(header).__name__}, not an object")
    return header, decode_arrays(_recv_part(sock))
