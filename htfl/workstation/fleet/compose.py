"""A compose file (Compose specification) for a simulated lab, written from its inventory.

One service per device (``htfl agent`` of its class, under its class's CPU quota and memory
cap from :mod:`htfl.workstation.fleet.profiles`), a ``superlink`` service (Flower SuperLink,
its state in a volume; it runs htfl's ServerApp, which writes ``results/`` through a bind
mount at the same absolute path as on the host, where ``htfl run`` follows it), and a
``monitoring`` profile with Prometheus (targets from the same inventory) and Grafana
(provisioned from the repository's ``dashboards/``). Works with podman-compose and Docker
Compose. The repository's ``docker-compose.yml`` is this module's output for one device of
each class (``python -m htfl.workstation.fleet.compose``; a test keeps it current).

Links: by default each device dials the SuperLink through its own port of a ``link`` service,
the same relay the processes engine uses (:mod:`htfl.workstation.fleet.relay`: bandwidth,
latency, jitter, loss per device and direction), outside every device's CPU quota; with
``bandwidth="htb"`` (``htfl fleet up`` as root) the kernel paces the bandwidth instead, by
htb classes on the link container's ports (:mod:`htfl.workstation.fleet.htb`). With
``link="netem"`` (``htfl fleet up`` chooses it where the kernel has netem) devices dial the
SuperLink directly and :mod:`htfl.workstation.fleet.netem` shapes each container's interface.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from htfl.devices import DEVICE_CLASSES
from htfl.workstation.fleet.profiles import FleetPlan, plan_fleet
from htfl.workstation.inventory import Host, Inventory, InventoryError, load_inventory
from htfl.workstation.local_fleet import simulated_meter
from htfl.workstation.prometheus import device_targets, prometheus_config

IMAGE = "localhost/htfl:latest"
SUPERLINK_PORT = 8000  # inside the network; published on the host at ComposeOptions.port
SERVER_METRICS_PORT = 9465  # the ServerApp's /metrics ([telemetry] server_metrics_port)
AGENT_METRICS_PORT = 9464
#: the link service's port for the first device (inside the network; one port per device)
LINK_BASE_PORT = 9000
#: images named for users of the monitoring profile (pulled by their engine, never by tests)
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v2.53.0"
GRAFANA_IMAGE = "docker.io/grafana/grafana-oss:11.1.0"
#: the repository's docker-compose.yml: one device per class, on a 2-core host
REFERENCE_LIMIT = str(len(DEVICE_CLASSES))
REFERENCE_CORES = 2.0


class LimitError(ValueError):
    """A ``--limit`` that selects nothing or names an unknown class or device."""


def select_hosts(inventory: Inventory, limit: str | None) -> list[Host]:
    """The devices ``limit`` picks: all (None), the first N with classes taken in turn (so 3
    devices are 3 classes), or comma-separated classes and device names."""
    hosts = list(inventory.hosts)
    if not limit:
        return hosts
    if limit.isdigit():
        n = int(limit)
        if n < 1:
            raise LimitError(f"--limit {limit}: give at least 1 device")
        if n > len(hosts):
            raise LimitError(f"--limit {limit}: {inventory.source} has {len(hosts)} devices")
        by_class: dict[str, list[Host]] = {}
        for h in hosts:
            by_class.setdefault(h.device_class, []).append(h)
        queues = [sorted(q, key=lambda h: h.name) for q in by_class.values()]
        order: list[Host] = []
        while len(order) < n:
            for q in queues:
                if q and len(order) < n:
                    order.append(q.pop(0))
        return order
    chosen: list[Host] = []
    for word in (w.strip() for w in limit.split(",") if w.strip()):
        if word in DEVICE_CLASSES:
            found = inventory.of_class(word)
        else:
            found = [h for h in hosts if h.name == word]
        if not found:
            raise LimitError(
                f"--limit {limit}: {word!r} is neither a device class nor a device of "
                f"{inventory.source}"
            )
        chosen.extend(h for h in found if h not in chosen)
    return chosen


@dataclass(frozen=True)
class ComposeOptions:
    project: str = "htfl"
    image: str = IMAGE
    port: int = SUPERLINK_PORT  # the SuperLink's port on the host (127.0.0.1)
    results_dir: str = "${PWD}/results"  # absolute in a generated file
    repo: str = "."  # build context and dashboards (absolute in a generated file)
    config_dir: str = "./deploy/containers"  # where prometheus/ and grafana/ are written
    base_image: str = "localhost/debian:bookworm-slim"
    #: Prometheus and Grafana: "profile" (Compose's `monitoring` profile, the repository's
    #: file), "on" (started with the lab; podman-compose 1.0.3 ignores profiles) or "off"
    monitoring: str = "profile"
    #: how links are shaped: "relay" (a link service, every kernel), "netem" (devices dial the
    #: SuperLink directly; the fleet sets netem on their interfaces) or "off"
    link: str = "relay"
    #: who paces the relay's bandwidth: "relay" (itself) or "htb" (the kernel: the fleet sets
    #: htb classes on the link container's ports once it runs; root and tc needed)
    bandwidth: str = "relay"


def link_ports(plan: FleetPlan) -> dict[str, int]:
    """Each device's port on the link service (in plan order)."""
    return {d.name: LINK_BASE_PORT + i for i, d in enumerate(plan.devices)}


def link_service(plan: FleetPlan, opts: ComposeOptions) -> dict[str, Any]:
    """The relay in front of the SuperLink: one port per device, that device's link shape.
    No CPU quota: the network must not wait for a device's (or the host's) CPU."""
    ports = link_ports(plan)
    spec = {
        "upstream": f"superlink:{SUPERLINK_PORT}",
        "host": "0.0.0.0",
        "seed": 0,
        "devices": [
            {
                "name": d.name,
                "port": ports[d.name],
                "link": asdict(d.link),
                "pace": opts.bandwidth != "htb",  # where htb paces, latency and loss only
            }
            for d in plan.devices
        ],
    }
    return {
        "image": opts.image,
        "container_name": f"{opts.project}-link",
        "command": [
            "python",
            "-m",
            "htfl.workstation.fleet.relay",
            "--spec-json",
            json.dumps(spec, sort_keys=True),
        ],
        "labels": {"htfl.fleet": opts.project, "htfl.device": ""},
        "depends_on": ["superlink"],
        "init": True,
        "stop_grace_period": "10s",
    }


def device_service(host: Host, plan: FleetPlan, opts: ComposeOptions) -> dict[str, Any]:
    limits = plan.device(host.name)
    meter = host.meter or simulated_meter(host.device_class)
    if opts.link == "relay":
        dial, after = f"link:{link_ports(plan)[host.name]}", ["link"]
    else:
        dial, after = f"superlink:{SUPERLINK_PORT}", ["superlink"]
    return {
        "image": opts.image,
        "container_name": f"{opts.project}-{host.name}",
        "hostname": host.name,
        "command": [
            "htfl",
            "agent",
            "--superlink",
            dial,
            "--device-class",
            host.device_class,
            "--name",
            host.name,
            "--torch-threads",
            "1",
            "--metrics-port",
            str(AGENT_METRICS_PORT),
            # every interface of the container: Prometheus scrapes it from another container
            "--metrics-host",
            "0.0.0.0",
            "--meter",
            json.dumps(meter, sort_keys=True),
        ],
        "cpus": round(limits.cpu_cores, 3),
        "mem_limit": f"{limits.memory_bytes // (1024 * 1024)}m",
        "labels": {"htfl.fleet": opts.project, "htfl.device": host.name},
        "depends_on": after,
        # an init as PID 1 passes SIGTERM on (a Python PID 1 without a handler ignores it, and
        # every stop would wait out the grace period)
        "init": True,
        "stop_grace_period": "10s",
    }


def compose_document(
    hosts: Sequence[Host], plan: FleetPlan, opts: ComposeOptions = ComposeOptions()
) -> dict[str, Any]:
    """The compose file's content for ``hosts`` under ``plan``."""
    results = opts.results_dir
    services: dict[str, Any] = {
        "superlink": {
            "image": opts.image,
            "build": {
                "context": opts.repo,
                "dockerfile": "Dockerfile",
                "args": {"BASE_IMAGE": opts.base_image, "PIP_OPTIONS": "--no-index"},
            },
            "container_name": f"{opts.project}-superlink",
            "command": [
                "flower-superlink",
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "0.0.0.0",
                "--port",
                str(SUPERLINK_PORT),
                "--database",
                "/var/lib/flwr/state/superlink.db",
            ],
            "ports": [f"127.0.0.1:{opts.port}:{SUPERLINK_PORT}"],
            "volumes": ["superlink-state:/var/lib/flwr/state", f"{results}:{results}"],
            "labels": {"htfl.fleet": opts.project, "htfl.device": ""},
            "init": True,
            "stop_grace_period": "10s",
        }
    }
    if opts.link == "relay":
        services["link"] = link_service(plan, opts)
    for host in hosts:
        services[host.name] = device_service(host, plan, opts)
    if opts.monitoring != "off":
        services.update(monitoring_services(opts))
    return {
        "name": opts.project,
        "x-htfl": {
            "time_dilation": round(plan.time_dilation, 4),
            "host_cores": plan.host_cores,
            "link": opts.link,
            "devices": {d.name: d.device_class for d in plan.devices},
        },
        "services": services,
        "volumes": {"superlink-state": {}},
    }


def monitoring_services(opts: ComposeOptions) -> dict[str, Any]:
    def profile() -> dict[str, Any]:
        return {"profiles": ["monitoring"]} if opts.monitoring == "profile" else {}

    services: dict[str, Any] = {}
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        **profile(),
        "container_name": f"{opts.project}-prometheus",
        "volumes": [f"{opts.config_dir}/prometheus:/etc/prometheus:ro"],
        "ports": ["127.0.0.1:9090:9090"],
        "labels": {"htfl.fleet": opts.project, "htfl.device": ""},
    }
    services["grafana"] = {
        "image": GRAFANA_IMAGE,
        **profile(),
        "container_name": f"{opts.project}-grafana",
        "volumes": [
            f"{opts.config_dir}/grafana/datasources:/etc/grafana/provisioning/datasources:ro",
            f"{opts.repo}/dashboards/provisioning/dashboards:"
            "/etc/grafana/provisioning/dashboards:ro",
            f"{opts.repo}/dashboards/dashboards:/var/lib/grafana/dashboards/htfl:ro",
        ],
        "ports": ["127.0.0.1:3000:3000"],
        "depends_on": ["prometheus"],
        "labels": {"htfl.fleet": opts.project, "htfl.device": ""},
    }
    return services


def monitoring_files(hosts: Sequence[Host], config_dir: Path) -> None:
    """Prometheus's configuration (device targets by service name, the ServerApp's exporter)
    and Grafana's datasource (Prometheus by service name), under ``config_dir``."""
    in_network = [replace(h, address=h.name, exporter_port=AGENT_METRICS_PORT) for h in hosts]
    prom = config_dir / "prometheus"
    (prom / "targets").mkdir(parents=True, exist_ok=True)
    inventory = Inventory("compose", in_network)
    (prom / "targets" / "devices.json").write_text(
        json.dumps(device_targets(inventory), indent=2) + "\n"
    )
    config = prometheus_config(Path("/etc/prometheus/targets"), f"superlink:{SERVER_METRICS_PORT}")
    (prom / "prometheus.yml").write_text(
        "# written by htfl.workstation.fleet.compose from the inventory\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    ds = config_dir / "grafana" / "datasources"
    ds.mkdir(parents=True, exist_ok=True)
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "htfl Prometheus",
                "uid": "htfl-prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "jsonData": {"timeInterval": "5s"},
            }
        ],
    }
    (ds / "htfl.yml").write_text(
        "# written by htfl.workstation.fleet.compose: Prometheus by its compose service name\n"
        + yaml.safe_dump(datasource, sort_keys=False)
    )


HEADER = """\
# The simulated lab in containers: a Flower SuperLink (running htfl's ServerApp) and simulated
# devices, one service each, under their class's profile (cpus: the CPU quota from the relative
# speed, divided by x-htfl.time_dilation so the quotas fit the host; mem_limit: the class's
# memory; link: each device dials the SuperLink through its own port of the `link` relay, which
# gives it the class's bandwidth, latency, jitter and loss). `docker compose --profile monitoring
# up` adds Prometheus and Grafana.
#
# Written by `python -m htfl.workstation.fleet.compose` (one device per class, quotas for a
# 2-core host); `htfl fleet up --engine compose` writes one for any inventory and host
# (build/fleet/<project>/compose.yml). Build the image first: python -m htfl.workstation.fleet.image
"""


def write_compose(
    path: Path, hosts: Sequence[Host], plan: FleetPlan, opts: ComposeOptions, header: str = ""
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = compose_document(hosts, plan, opts)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100))
    return path


def reference_files(repo: Path) -> dict[str, str]:
    """The repository's docker-compose.yml and its monitoring files, as they should read
    (path relative to the checkout → content)."""
    import tempfile

    inventory = load_inventory(repo / "deploy" / "inventory" / "sim-lab.yml", use_ansible=False)
    hosts = select_hosts(inventory, REFERENCE_LIMIT)
    plan = plan_fleet([(h.name, h.device_class) for h in hosts], cores=REFERENCE_CORES)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_compose(out / "docker-compose.yml", hosts, plan, ComposeOptions(), HEADER)
        monitoring_files(hosts, out / "deploy" / "containers")
        return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the repository's docker-compose.yml")
    p.add_argument("--repo", type=Path, default=Path("."), help="the checkout (default: .)")
    args = p.parse_args(argv)
    try:
        files = reference_files(args.repo)
    except (InventoryError, LimitError) as err:
        print(f"compose: error: {err}", file=sys.stderr)
        return 2
    for rel, text in files.items():
        (args.repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (args.repo / rel).write_text(text)
        print(args.repo / rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
