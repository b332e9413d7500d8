"""The trainer process: a :class:`~htfl.device.trainer.Trainer` serving its agent over a socket.

Started by the agent (:mod:`htfl.device.remote_trainer`) in the interpreter named by
``--trainer-python``, with one end of a socket pair as ``--fd``. It says ``ready`` with its
facts (torch build, CUDA, Python), then answers one request at a time until the agent closes
the socket, which is also how it learns that the agent is gone. Imports no flwr, and runs on
Python >= 3.10 (JetPack 6's system Python).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from htfl.device import trainer_channel as channel
from htfl.device.trainer import Arrays, Trainer

log = logging.getLogger("htfl.trainer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="htfl-trainer", description=__doc__)
    p.add_argument("--fd", type=int, required=True, help="this end of the agent's socket pair")
    p.add_argument("--device-class", required=True)
    p.add_argument("--device-name", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--torch-threads", type=int, default=0)
    p.add_argument("--training-device", default="auto")
    return p


def handle(trainer: Trainer, header: dict[str, Any], arrays: Arrays) -> tuple[dict, Arrays]:
    """One request: (reply header, reply arrays)."""
    op = header.get("op")
    run_id = int(header.get("run_id", 0))
    if op == "setup":
        info, metrics = trainer.setup(run_id, header["config"])
        return {"info": info, "metrics": metrics}, {}
    if op == "train":
        upload, metrics = trainer.train(run_id, arrays)
        return {"metrics": metrics}, upload
    if op == "evaluate":
        return {"metrics": trainer.evaluate(run_id, arrays)}, {}
    if op == "facts":
        return {"info": trainer.facts()}, {}
    raise channel.ChannelError(f"unknown trainer request {op!r}")


def serve(sock: socket.socket, trainer: Trainer) -> None:
    """Answer requests until the agent closes the channel. A failed request is an error reply
    (its exception's type and message); the trainer and its state go on."""
    while True:
        try:
            header, arrays = channel.receive(sock)
        except channel.ChannelClosed:
            return
        try:
            reply, out = handle(trainer, header, arrays)
        except Exception as err:
            log.exception("trainer: %s failed", header.get("op"))
            reply, out = {"error": str(err), "error_type": type(err).__name__}, {}
        channel.send(sock, reply, out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The agent decides when the trainer stops (it closes the channel); a Ctrl-C in the
    # agent's terminal reaches this process group too and must not kill a round half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s trainer %(name)s %(message)s"
    )
    sock = socket.socket(fileno=args.fd)
    trainer = Trainer(
        args.device_class,
        args.device_name,
        args.data_dir,
        torch_threads=args.torch_threads,
        training_device=args.training_device,
        state_dir=args.state_dir,
    )
    channel.send(sock, {"op": "ready", "info": trainer.facts()})
    try:
        serve(sock, trainer)
    except (BrokenPipeError, ConnectionResetError):  # the agent went away mid-reply
        return 0
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
