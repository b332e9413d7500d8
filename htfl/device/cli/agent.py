"""`htfl agent`: run this device's agent (Flower SuperNode + htfl worker) until stopped."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket

from htfl.devices import DEVICE_CLASSES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agent", help="run the device agent (SuperNode + worker)")
    p.add_argument("--superlink", required=True, help="SuperLink Fleet API, HOST:PORT")
    p.add_argument("--device-class", required=True, choices=sorted(DEVICE_CLASSES))
    p.add_argument("--name", default=socket.gethostname(), help="device name (default: hostname)")
    p.add_argument("--data-dir", default="", help="where this device keeps datasets and shards")
    p.add_argument("--torch-threads", type=int, default=0, help="0 = torch's default")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        help="seconds between SuperLink polls while an experiment is active",
    )
    p.add_argument(
        "--idle-poll-interval",
        type=float,
        default=1.0,
        help="seconds between SuperLink polls after 2 minutes without messages",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="serve Prometheus /metrics on this port (0: any free port, -1: off)",
    )
    p.add_argument("--metrics-host", default="0.0.0.0")
    p.add_argument(
        "--meter",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="this device's power meter, as the inventory's htfl_meter "
        '(e.g. \'{"driver": "ina3221", "model": "jetson-nano"}\')',
    )
    p.add_argument(
        "--root-certificates",
        default=None,
        help="CA certificate for a TLS SuperLink (default: insecure)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from htfl.device.agent import AgentOptions, run_agent
    from htfl.device.client_runtime import ClientRuntime
    from htfl.device.instruments import DeviceInstruments
    from htfl.device.power.config import MeterSpecError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    if args.data_dir:  # where prepared shards are fetched to / synced to (htfl.datasets)
        os.environ["HTFL_DATA_DIR"] = os.path.abspath(args.data_dir)
    options = AgentOptions(
        superlink=args.superlink,
        device_class=args.device_class,
        device_name=args.name,
        active_poll_seconds=args.poll_interval,
        idle_poll_seconds=args.idle_poll_interval,
        insecure=args.root_certificates is None,
        root_certificates=args.root_certificates,
    )
    try:
        instruments = DeviceInstruments(
            args.name,
            args.device_class,
            metrics_port=None if args.metrics_port < 0 else args.metrics_port,
            metrics_host=args.metrics_host,
            meter=args.meter,
        )
    except MeterSpecError as err:
        logging.error("%s", err)
        return 2
    runtime = ClientRuntime(args.device_class, args.name, args.torch_threads, instruments)
    run_agent(options, runtime, instruments)
    return 0
