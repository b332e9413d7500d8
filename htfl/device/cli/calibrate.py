"""``htfl calibrate``: measure this device and write its class's profile beside the inventory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htfl.cli import integer
from htfl.device.power.spec_text import SYNTAX, checked_meter, meter_argument


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers, comma-separated") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="measure this device and write its class's profile",
        description="Measure this device (train step time per architecture and batch size, "
        "throughput, round trip to the SuperLink, idle and busy power with --meter) and write "
        "its class's profile as profiles/CLASS.yml beside the inventory, which `htfl fleet up` "
        "then uses instead of the shipped profile (docs/emulation.md).",
    )
    p.add_argument("--device-class", required=True, metavar="CLASS", help="this device's class")
    p.add_argument(
        "--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's Fleet API"
    )
    p.add_argument(
        "--inventory",
        type=Path,
        required=True,
        metavar="FILE",
        help="the lab's inventory: the profile goes to profiles/CLASS.yml beside it",
    )
    p.add_argument(
        "--architectures",
        default=None,
        metavar="A,B",
        help="models to time (default: the class's default model)",
    )
    p.add_argument(
        "--batch-sizes",
        type=_ints,
        default="16,32",
        metavar="N,M",
        help="batch sizes to time each model at, comma-separated",
    )
    p.add_argument("--steps", type=integer(1), default=10, help="timed steps per measurement")
    p.add_argument(
        "--input-shape",
        type=_ints,
        default="3,32,32",
        metavar="C,H,W",
        help="one sample's shape, as the experiment's data (3,32,32: CIFAR)",
    )
    p.add_argument("--threads", type=integer(1), default=1, help="torch threads (as the agent)")
    p.add_argument("--pings", type=integer(2), default=30, help="timed requests to the SuperLink")
    p.add_argument(
        "--meter",
        type=meter_argument,
        default=None,
        metavar="SPEC",
        help="this device's power meter, as the inventory's htfl_meter: "
        + SYNTAX
        + " (default: none; idle and busy power stay the shipped figures)",
    )
    p.add_argument(
        "--power-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="how long to read the meter idle, then busy",
    )
    p.add_argument(
        "--link-mbit",
        type=float,
        default=None,
        metavar="MBIT",
        help="the link's bandwidth, if known (not measured; default: the shipped figure)",
    )
    p.set_defaults(func=run)


def fail(message: str, status: int = 2) -> int:
    print(f"htfl calibrate: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from htfl.device.calibrate import (
        Calibration,
        CalibrationError,
        profile_path,
        read_reference,
        write_profile,
    )
    from htfl.devices import UnknownDeviceClassError, device_class
    from htfl.models.zoo import ARCHITECTURES

    try:
        cls = device_class(args.device_class)
    except UnknownDeviceClassError as err:
        return fail(f"--device-class: {err}")
    archs = [a for a in (args.architectures or cls.default_model).split(",") if a]
    if unknown := [a for a in archs if a not in ARCHITECTURES]:
        known = ", ".join(sorted(ARCHITECTURES))
        return fail(f"--architectures: unknown {', '.join(unknown)}; known: {known}")
    if not args.inventory.is_file():
        return fail(f"--inventory {args.inventory}: no such file")
    if args.meter is not None:
        checked_meter(args.meter, args.device_class)
    if args.power_seconds <= 0:
        return fail("--power-seconds: expected a number > 0")
    try:
        calibration = Calibration(
            cls.name,
            args.superlink,
            archs,
            args.batch_sizes,
            steps=args.steps,
            pings=args.pings,
            input_shape=args.input_shape,
            threads=args.threads,
            meter=args.meter,
            power_seconds=args.power_seconds,
            link_mbit_s=args.link_mbit,
            reference=read_reference(args.inventory),
        )
        profile = calibration.run()
    except CalibrationError as err:
        return fail(str(err), 1)
    except ValueError as err:  # a model that does not fit the input shape
        return fail(str(err))
    path = profile_path(args.inventory, cls.name)
    header = (
        f"# {cls.name}: calibrated on {profile['calibration']['host']} by `htfl calibrate`; "
        "htfl fleet up uses it instead of the shipped profile\n"
    )
    write_profile(path, profile, header)
    print(path)
    return 0
