"""The inventory (``deploy/inventory/*.yml``): the single source of truth for devices.

Ansible provisions from it; htfl reads the same file to select devices, write Prometheus
targets, map power meters and start a simulated fleet. It is read through
``ansible-inventory --list`` when ansible-core is installed, so group_vars, host ranges and
vault references resolve exactly as Ansible resolves them; without ansible-core the YAML file
itself is read (hosts, their vars, their groups' vars; no group_vars directories).

Each device host carries ``htfl_device_class`` (usually set once in its group's vars) and may
carry ``ansible_host`` (address), ``htfl_meter`` (a mapping, see docs/power.md) and
``htfl_exporter_port``. ``all.vars.htfl_superlink`` names the server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

from htfl.device.power.config import INVENTORY_VAR, MeterSpec, MeterSpecError, specs_from_hostvars
from htfl.devices import DEVICE_CLASSES
from htfl.validation import LaxInt, Text, build, check, one_of

DEFAULT_EXPORTER_PORT = 9464
DeviceClassName = Annotated[Text, one_of(DEVICE_CLASSES, "device class")]


class InventoryError(ValueError):
    """An inventory htfl cannot use; ``problems`` has one line per bad host variable."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


@dataclass(frozen=True)
class Host:
    name: str
    device_class: str
    address: str
    meter: dict[str, Any] | None = None
    exporter_port: int = DEFAULT_EXPORTER_PORT
    vars: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Inventory:
    source: str
    hosts: list[Host]
    superlink: str | None = None
    #: ``all.vars.htfl_secure``: TLS and SuperNode authentication with keys htfl deploy makes
    secure: bool = False

    def by_name(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise InventoryError(f"{self.source}: no device named {name!r}")

    def of_class(self, device_class: str) -> list[Host]:
        return [h for h in self.hosts if h.device_class == device_class]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="ignore"))
class DeviceVars:
    """The variables htfl reads from a device host (others are Ansible's and left alone).

    An inventory may give numbers as strings (``ansible-inventory`` keeps what YAML read), so
    the exporter port accepts a string of digits.
    """

    htfl_device_class: DeviceClassName
    ansible_host: Text | None = None
    htfl_meter: dict[Text, Any] | None = None
    htfl_exporter_port: Annotated[
        LaxInt, check(lambda v: 1 <= v <= 65535, "a port number (1..65535)")
    ] = DEFAULT_EXPORTER_PORT
    #: where the agent trains when the experiment says device = "auto" (--training-device)
    htfl_training_device: Literal["auto", "cpu", "cuda"] = "auto"
    #: the interpreter of a separate trainer process ("" : train in the agent; deploy builds
    #: a trainer venv from it and passes --trainer-python)
    htfl_trainer_python: Annotated[
        Text,
        check(
            lambda v: v == "" or v.startswith(("/", "{{")),
            'an absolute path to a Python interpreter (e.g. /usr/bin/python3.10), or ""',
        ),
    ] = ""


def _host_problems(name: str, hv: dict[str, Any]) -> tuple[Host | None, list[str]]:
    """The host a device's variables describe, and one line per problem (``host X: var: ...``)."""
    lines: list[str] = []
    devvars = build(DeviceVars, hv, "", lines)
    meter = hv.get(INVENTORY_VAR)
    if isinstance(meter, dict):
        try:
            MeterSpec.from_mapping(meter, name)
        except MeterSpecError as err:
            lines.extend(f"{INVENTORY_VAR}.{key}: {message}" for _, key, message in err.problems)
    problems = [f"host {name}: {line}" for line in lines]
    if devvars is None or problems:
        return None, problems
    address = devvars.ansible_host or name
    host = Host(name, devvars.htfl_device_class, address, meter, devvars.htfl_exporter_port, hv)
    return host, []


def _hostvars_with_ansible(path: Path) -> tuple[dict[str, dict], dict[str, Any]]:
    out = subprocess.run(
        [_ansible_inventory() or "ansible-inventory", "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise InventoryError(f"{path}: ansible-inventory failed: {out.stderr.strip()[-2000:]}")
    data = json.loads(out.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    all_vars = data.get("all", {}).get("vars", {})
    for host in _ansible_hosts(data):
        hostvars.setdefault(host, {})
    return hostvars, all_vars


def _ansible_inventory() -> str | None:
    """ansible-inventory on PATH, or beside this Python (a venv that is not activated)."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    return shutil.which("ansible-inventory") or (str(beside) if beside.exists() else None)


def _ansible_hosts(data: dict[str, Any]) -> list[str]:
    hosts: list[str] = []
    for group in data.values():
        if isinstance(group, dict):
            hosts.extend(h for h in group.get("hosts", []) if h not in hosts)
    return hosts


def hostvars_from_document(doc: dict[str, Any]) -> tuple[dict[str, dict], dict[str, Any]]:
    """Every host's variables from a parsed YAML inventory: group vars flow down to child
    groups and hosts; a child's value overrides its parent's, a host's own overrides any."""
    hostvars: dict[str, dict] = {}

    def walk(group: dict[str, Any], inherited: dict[str, Any]) -> None:
        merged = {**inherited, **(group.get("vars") or {})}
        for name, hv in (group.get("hosts") or {}).items():
            hostvars[name] = {**hostvars.get(name, {}), **merged, **(hv or {})}
        for child in (group.get("children") or {}).values():
            walk(child or {}, merged)

    root = doc.get("all", doc)
    walk(root, {})
    return hostvars, root.get("vars") or {}


def _hostvars_from_yaml(path: Path) -> tuple[dict[str, dict], dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InventoryError(f"{path}: not valid YAML: {err}") from None
    return hostvars_from_document(doc)


def read_hostvars(
    path: str | Path, use_ansible: bool | None = None
) -> tuple[dict[str, dict], dict[str, Any]]:
    """``({host: vars}, all.vars)`` for every host, resolved as Ansible would when it can."""
    path = Path(path)
    if not path.exists():
        raise InventoryError(f"{path}: inventory file not found")
    if use_ansible is None:
        use_ansible = _ansible_inventory() is not None
    reader = _hostvars_with_ansible if use_ansible else _hostvars_from_yaml
    return reader(path)


def load_inventory(path: str | Path, use_ansible: bool | None = None) -> Inventory:
    """Read and validate an inventory; :class:`InventoryError` lists every bad host variable."""
    hostvars, all_vars = read_hostvars(path, use_ansible)
    hosts: list[Host] = []
    problems: list[str] = []
    for name, hv in sorted(hostvars.items()):
        if hv.get("htfl_device_class") is None:
            continue  # not a device (e.g. the server)
        host, found = _host_problems(name, hv)
        problems.extend(found)
        if host is not None:
            hosts.append(host)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise InventoryError(f"invalid inventory {path}:\n{lines}", problems)
    superlink = all_vars.get("htfl_superlink") or next(
        (hv["htfl_superlink"] for hv in hostvars.values() if "htfl_superlink" in hv), None
    )
    # ansible-inventory hands all.vars down to every host
    secure = any(
        str(v.get("htfl_secure", False)).lower() in ("true", "yes", "1")
        for v in (all_vars, *hostvars.values())
    )
    return Inventory(str(path), hosts, superlink, secure)


def write_local_inventory(path: Path, hosts: list[Host], superlink: str) -> Path:
    """A simulated fleet's inventory: the same shape, every host local."""
    groups: dict[str, Any] = {}
    for host in hosts:
        group = groups.setdefault(
            host.device_class.replace("-", "_"),
            {"vars": {"htfl_device_class": host.device_class}, "hosts": {}},
        )
        hv: dict[str, Any] = {
            "ansible_connection": "local",
            "ansible_host": host.address,
            "htfl_exporter_port": host.exporter_port,
        }
        if host.meter:
            hv["htfl_meter"] = host.meter
        group["hosts"][host.name] = hv
    doc = {"all": {"vars": {"htfl_superlink": superlink}, "children": groups}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    return path


def load_meter_specs(path: str) -> dict[str, MeterSpec]:
    """The meter of every host of an inventory file."""
    hostvars, _ = read_hostvars(path)
    return specs_from_hostvars(hostvars)
