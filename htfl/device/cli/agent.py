"""`htfl agent`: run this device's agent (Flower SuperNode + htfl worker) until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

from htfl.cli import integer
from htfl.device.power.spec_text import SYNTAX, checked_meter, meter_argument
from htfl.devices import DEVICE_CLASSES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "agent",
        help="run this device's agent (SuperNode + worker) until stopped",
        description="Join the SuperLink as one device and serve experiments until stopped "
        "(SIGTERM or Ctrl-C). `htfl deploy start` runs this on every device of the inventory; "
        "`htfl run --local-fleet N` runs N of them on this machine.",
    )
    p.add_argument(
        "--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's Fleet API"
    )
    p.add_argument(
        "--device-class",
        required=True,
        choices=sorted(DEVICE_CLASSES),
        metavar="CLASS",
        help="what this device is: " + ", ".join(sorted(DEVICE_CLASSES)),
    )
    p.add_argument(
        "--name",
        default=None,
        help="this device's name in experiments and results (default: the hostname)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where this device keeps the shards it fetches or Ansible syncs "
        "(default: $HTFL_DATA_DIR, else ~/.cache/htfl)",
    )
    p.add_argument(
        "--torch-threads",
        type=integer(0),
        default=0,
        metavar="N",
        help="threads torch computes with; 0 lets torch choose",
    )
    p.add_argument(
        "--training-device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help='where this device trains when the experiment\'s [training] device is "auto" '
        "(the inventory's htfl_training_device): auto takes CUDA where torch sees a GPU "
        "(default: auto)",
    )
    p.add_argument(
        "--trainer-python",
        default=None,
        metavar="PYTHON",
        help="train in a separate long-lived process run by this interpreter (the inventory's "
        "htfl_trainer_python), e.g. JetPack 6's /usr/bin/python3.10 with NVIDIA's CUDA torch; "
        "it needs torch, numpy and pydantic, not flwr (default: train in the agent's process)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="seconds between SuperLink polls while an experiment is active",
    )
    p.add_argument(
        "--idle-poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between SuperLink polls after 2 minutes without messages",
    )
    p.add_argument(
        "--superlink-lost-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="exit (status 1) once the SuperLink has been out of reach this long, so an agent "
        "whose SuperLink never returns does not wait forever (default: %(default)s; a service "
        "manager restarts it)",
    )
    p.add_argument(
        "--metrics-port",
        type=integer(-1, 65535),
        default=9464,
        metavar="PORT",
        help="serve Prometheus /metrics on this port (0: any free port, -1: off)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address /metrics listens on (default: 127.0.0.1, this machine only; "
        "htfl deploy passes the inventory's address, the container lab 0.0.0.0)",
    )
    p.add_argument(
        "--meter",
        type=meter_argument,
        default=None,
        metavar="SPEC",
        help="this device's power meter, as the inventory's htfl_meter: "
        + SYNTAX
        + " (default: none, no energy figures)",
    )
    p.add_argument(
        "--root-certificates",
        default=None,
        metavar="FILE",
        help="CA certificate of a TLS SuperLink (default: none, an insecure connection)",
    )
    p.add_argument(
        "--auth-private-key",
        default=None,
        metavar="FILE",
        help="this device's private key, for a SuperLink that admits only registered nodes "
        "(htfl deploy makes it; default: none)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from htfl.datasets.base import data_dir
    from htfl.device.agent import AgentOptions, SuperLinkLost, run_agent
    from htfl.device.client_runtime import ClientRuntime
    from htfl.device.instruments import DeviceInstruments, MetricsPortInUse

    name = args.name or socket.gethostname()
    if args.meter is not None:  # checked before anything starts: a typo is a usage error
        checked_meter(args.meter, name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    options = AgentOptions(
        superlink=args.superlink,
        device_class=args.device_class,
        device_name=name,
        active_poll_seconds=args.poll_interval,
        idle_poll_seconds=args.idle_poll_interval,
        insecure=args.root_certificates is None,
        root_certificates=args.root_certificates,
        auth_private_key=args.auth_private_key,
        superlink_lost_after=args.superlink_lost_after,
    )
    instruments = DeviceInstruments(
        name,
        args.device_class,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_host=args.metrics_host,
        meter=args.meter,
    )
    shards = (args.data_dir.expanduser() if args.data_dir else data_dir()).resolve()
    runtime = ClientRuntime(
        args.device_class,
        name,
        args.torch_threads,
        instruments,
        data_dir=shards,
        training_device=args.training_device,
        trainer_python=args.trainer_python,
    )
    runtime.start()
    lost: SuperLinkLost | None = None
    try:
        run_agent(options, runtime, instruments)
    except MetricsPortInUse as err:
        print(f"htfl agent: error: {err}", file=sys.stderr)
        return 2
    except SuperLinkLost as err:
        lost = err
    finally:
        runtime.close()
    if lost is not None:
        print(f"htfl agent: error: {lost}", file=sys.stderr)
        exit_now(1)
    return 0


def exit_now(code: int) -> NoReturn:
    """End the process now, once the agent's own parts are stopped: Flower's SuperNode leaves
    its Runtime API server thread running when it gives up on the SuperLink (only Flower's
    exit handlers stop it), and that thread would keep the process alive for ever."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
