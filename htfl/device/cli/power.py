"""``htfl power``: power-meter tools.

``htfl power probe`` lists the meters it can find on this machine - serial ports (candidates
for UM/SCPI meters), Jetson INA3221 rails, Intel RAPL domains and power-supply batteries
under ``--root`` - and prints live readings for ``--seconds``. Serial ports are only listed,
never written to, unless named with ``--meter driver=um25c,port=/dev/rfcomm0``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

from htfl.cli import add_group, workstation_installed
from htfl.device.power.meter import FrameError, Meter
from htfl.device.power.spec_text import SYNTAX, checked_meter, meter_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    actions = add_group(
        subparsers,
        "power",
        help="find this machine's power meters and read them",
        description="Power measurement tools (docs/power.md).",
    )
    probe = actions.add_parser(
        "probe",
        help="list detected meters and print live readings",
        description="List serial ports, INA3221 rails, RAPL domains and power supplies, then "
        "print live readings. Serial ports are only listed, never written to, unless named "
        "with --meter. Exit status 1 if a meter named with --meter cannot be opened.",
    )
    probe.add_argument(
        "--root", default="/", metavar="DIR", help="filesystem root to look for sysfs under"
    )
    probe.add_argument("--seconds", type=float, default=3.0, help="how long to print live readings")
    probe.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS", help="time between readings"
    )
    probe.add_argument(
        "--meter",
        type=meter_argument,
        action="append",
        default=None,
        metavar="SPEC",
        help="also read this meter, as the inventory's htfl_meter: "
        + SYNTAX
        + "; repeatable (default: none)",
    )
    probe.add_argument("--no-serial", action="store_true", help="do not list serial ports")
    probe.set_defaults(func=cmd_probe)
    if workstation_installed():  # hub and energy: the workstation's side of the group
        from htfl.workstation.cli.power import register_actions

        register_actions(actions)


def _detect(root: str, out: TextIO, list_serial: bool) -> list[tuple[str, Meter]]:
    """Print what is there; return meters worth reading live."""
    from htfl.device.power.drivers import ina3221, rapl
    from htfl.device.power.drivers.termux import TermuxMeter

    meters: list[tuple[str, Meter]] = []
    if list_serial:
        from serial.tools import list_ports

        ports = sorted(list_ports.comports(), key=lambda p: p.device)
        print("Serial ports (UM/SCPI meter candidates; use --meter to read one):", file=out)
        for p in ports:
            print(f"  {p.device:<16} {p.description or '-'}  {p.hwid or ''}".rstrip(), file=out)
        if not ports:
            print("  (none)", file=out)

    rails = ina3221.discover_rails(root)
    model = ina3221.detect_model(root)
    print(f"INA3221 rails (model: {model or 'unknown'}):", file=out)
    for name, rail in sorted(rails.items()):
        try:
            watts = f"{rail.read()[0]:8.3f} W"
        except OSError as err:
            watts = f"unreadable ({err})"
        print(f"  {name:<20} {rail.layout:<5} {rail.directory} ch{rail.channel}  {watts}", file=out)
    if not rails:
        print("  (none)", file=out)
    else:
        wanted: tuple[str, ...] | None = None
        if model is None or model not in ina3221.TOTAL_RAILS:
            known = [r for r in ("VDD_IN", "POM_5V_IN") if r in rails]
            wanted = (known[0],) if known else tuple(sorted(rails))
        meters.append(
            ("ina3221", ina3221.Ina3221Meter(model=model, rail=wanted, root=root, device="probe"))
        )

    domains = rapl.list_domains(root)
    print("RAPL domains (CPU package only, not the board):", file=out)
    for entry, name in domains.items():
        print(f"  {entry:<16} {name}", file=out)
        if entry.count(":") == 1:  # top-level package domains, not sub-zones
            meters.append((f"rapl {entry}", rapl.RaplMeter(domain=entry, root=root)))
    if not domains:
        print("  (none)", file=out)

    supplies_dir = os.path.join(root, "sys/class/power_supply")
    print("Power supplies:", file=out)
    try:
        supplies = sorted(os.listdir(supplies_dir))
    except OSError:
        supplies = []
    for name in supplies:
        info = {}
        for key in ("type", "status", "online"):
            try:
                with open(os.path.join(supplies_dir, name, key)) as fh:
                    info[key] = fh.read().strip()
            except OSError:
                continue
        desc = " ".join(f"{k}={v}" for k, v in info.items())
        print(f"  {name:<16} {desc}", file=out)
        has_current = os.path.exists(os.path.join(supplies_dir, name, "current_now"))
        if info.get("type") == "Battery" and has_current:
            meters.append((f"battery {name}", TermuxMeter(mode="sysfs", supply=name, root=root)))
    if not supplies:
        print("  (none)", file=out)
    return meters


def _fmt(value: float | None, width: int = 9) -> str:
    return f"{value:{width}.3f}" if value is not None else " " * (width - 1) + "-"


def cmd_probe(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from htfl.device.power.config import open_meter

    out = out or sys.stdout
    # All checked before anything is opened: a typo is a usage error (exit 2).
    specs = [checked_meter(m, f"probe-{i}") for i, m in enumerate(args.meter or [])]
    status = 0
    meters = _detect(args.root, out, list_serial=not args.no_serial)
    explicit: list[tuple[str, Meter]] = []
    for spec in specs:
        label = f"{spec.driver} {spec.options.get('port', '')}".strip()
        explicit.append((label, open_meter(spec, open_now=False)))

    opened: list[tuple[str, Meter]] = []
    for label, meter in meters + explicit:
        try:
            meter.open()
        except Exception as err:
            print(f"{label}: cannot open: {err}", file=out)
            if any(meter is m for _, m in explicit):
                status = 1  # a meter the user asked for explicitly
            continue
        opened.append((label, meter))
    if not opened:
        print("No readable meters.", file=out)
        return status

    print(f"Live readings ({args.seconds:g} s):", file=out)
    print(f"  {'t':>8}  {'meter':<28} {'watts':>9} {'volts':>9} {'amps':>9}", file=out)
    start = time.monotonic()
    try:
        while True:
            for label, meter in opened:
                try:
                    s = meter.read()
                except (FrameError, OSError) as err:
                    what = "frame error" if isinstance(err, FrameError) else "read failed"
                    elapsed = time.monotonic() - start
                    print(f"  {elapsed:8.2f}  {label:<28} {what}: {err}", file=out)
                    continue
                flag = "  charging" if s.charging else ""
                print(
                    f"  {time.monotonic() - start:8.2f}  {label:<28} {_fmt(s.watts)} "
                    f"{_fmt(s.volts)} {_fmt(s.amps)}{flag}",
                    file=out,
                )
            out.flush()
            if time.monotonic() - start + args.interval > args.seconds:
                break
            time.sleep(args.interval)
    finally:
        for _, meter in opened:
            meter.close()
    return status
