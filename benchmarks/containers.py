"""The simulated lab in containers: image build, `htfl fleet up` time, idle memory per device.

For each lab size (devices from deploy/inventory/sim-lab.yml, classes in turn) it writes the
compose file, brings the lab up with podman-compose (timed until the SuperLink answers and
every device container runs), waits ``--settle`` seconds with the agents idle, reads each
device container's memory use (its cgroup, as ``podman stats`` reports it), and takes the lab
down (timed, then checked: no container, network or volume left). Before that it builds the
image (cached layers after the first build: what a code change costs). Needs root, podman,
podman-compose and debootstrap; one table on stdout. Wall times on a shared 2-core machine are
upper bounds.

    sudo .venv/bin/python -m benchmarks.containers --sizes 3,28
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from htfl.ports import free_port
from htfl.workstation.fleet.base_image import podman_env
from htfl.workstation.fleet.compose import ComposeOptions, select_hosts
from htfl.workstation.fleet.containers import ComposeFleet
from htfl.workstation.fleet.image import IMAGE, build_image
from htfl.workstation.fleet.profiles import plan_fleet
from htfl.workstation.inventory import load_inventory

REPO = Path(__file__).resolve().parents[1]
UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> float:
    """Bytes from podman's human size (``43.43MB``; decimal units, binary ones too)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]+)\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2).lower()]


def memory_by_container() -> dict[str, float]:
    done = subprocess.run(
        ["podman", "stats", "--no-stream", "--format", "json"],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=120,
        check=True,
    )
    return {
        s["name"]: parse_size(s["mem_usage"].split("/")[0]) for s in json.loads(done.stdout or "[]")
    }


def measure(size: int, settle: float, workdir: Path, during: Callable | None = None) -> dict:
    """One lab size: up, idle memory, (``during(fleet, plan, hosts, workdir)``: more
    measurements while it is up, merged into the row), down."""
    inventory = load_inventory(REPO / "deploy" / "inventory" / "sim-lab.yml", use_ansible=False)
    hosts = select_hosts(inventory, str(size))
    plan = plan_fleet([(h.name, h.device_class) for h in hosts])
    project = f"htfl-bench{size}"
    port = free_port()
    fleet = ComposeFleet(
        workdir / project,
        ComposeOptions(
            project=project,
            port=port,
            results_dir=str(workdir / "results"),
            repo=str(REPO),
            config_dir=str(workdir / project),
            monitoring="off",
        ),
    )
    start = time.monotonic()
    try:
        fleet.up(hosts, plan, timeout=1800)
        up_s = time.monotonic() - start
        time.sleep(settle)
        memory = memory_by_container()
        per_device = [memory[f"{project}-{h.name}"] for h in hosts]
        superlink = memory.get(f"{project}-superlink", float("nan"))
        extra = during(fleet, plan, hosts, workdir) if during is not None else {}
    finally:
        start = time.monotonic()
        fleet.down()
        down_s = time.monotonic() - start
    assert not any(fleet.leftovers().values())
    return {
        "devices": size,
        "dilation": plan.time_dilation,
        "up_s": up_s,
        "mem_median_mb": statistics.median(per_device) / 1e6,
        "mem_max_mb": max(per_device) / 1e6,
        "superlink_mb": superlink / 1e6,
        "down_s": down_s,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,28", help="lab sizes, comma-separated")
    parser.add_argument("--settle", type=float, default=20.0, help="idle seconds before memory")
    args = parser.parse_args()
    start = time.monotonic()
    build_image(IMAGE)
    build_s = time.monotonic() - start
    print(f"# image {IMAGE}: build with cached base and layers {build_s:.0f} s")
    header = (
        "devices",
        "dilation",
        "fleet up (s)",
        "idle memory/device median (MB)",
        "max (MB)",
        "SuperLink (MB)",
        "fleet down (s)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    with tempfile.TemporaryDirectory(prefix="htfl-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(size, args.settle, Path(tmp))
            print(
                f"| {r['devices']} | {r['dilation']:.3g} | {r['up_s']:.0f} | "
                f"{r['mem_median_mb']:.0f} | {r['mem_max_mb']:.0f} | {r['superlink_mb']:.0f} | "
                f"{r['down_s']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
