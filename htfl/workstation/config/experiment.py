"""The experiment file (TOML), validated into typed config before anything starts.

Every section is a pydantic table (:mod:`htfl.validation`); every problem is reported at once,
each naming the file, the ``section.key`` and what was expected, so a researcher fixes a file in
one pass rather than one error per launch. Validation reads no file besides the experiment
file itself: the prepared shards and a method's files are checked by
:mod:`htfl.workstation.config.preflight`, the step ``htfl run`` takes next.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, model_validator

from htfl.algorithms import METHODS
from htfl.algorithms.base import TrainSettings
from htfl.datasets import PartitionSpec, known_datasets
from htfl.devices import DEVICE_CLASSES
from htfl.models import ARCHITECTURES
from htfl.models.htfllib import FAMILIES, family_members, memory_problem
from htfl.models.zoo import OWN_HEAD_ARCHITECTURES
from htfl.validation import (
    Flag,
    Int,
    Number,
    Text,
    above,
    at_least,
    build,
    check,
    fail,
    finite,
    one_of,
    problem,
    raise_problems,
    table,
)
from htfl.workstation.config.presets import apply_preset

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")

Port = Annotated[Int, check(lambda v: -1 <= v <= 65535, "-1..65535")]
DeviceClassName = Annotated[Text, one_of(DEVICE_CLASSES, "device class")]


class ConfigError(ValueError):
    """One or more problems in a config file; every line names the file and the key."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid experiment file {self.path}:\n{lines}")


@table
class ExperimentSection:
    id: Annotated[
        Text, check(lambda v: bool(_ID.match(v)), "letters, digits, '_', '-', '.' (<= 81)")
    ]
    rounds: Annotated[Int, at_least(1)]
    seed: Int = 0
    eval_every: Annotated[Int, at_least(1)] = 1
    description: Text = ""
    #: torch threads of the ServerApp; 1 avoids OpenMP spin contention with co-located agents
    server_torch_threads: Annotated[Int, at_least(1)] = 1
    #: named defaults for keys the file leaves out ("htfllib": HtFLlib's setup and each
    #: method's defaults; htfl.workstation.config.presets)
    preset: Literal["", "htfllib"] = ""
    #: the keys the preset filled in (written by the loader; their values are in their sections)
    preset_set: list[Text] = field(default_factory=list)


def _known_method(name: str) -> str:
    if name.lower() not in METHODS:
        raise fail(f"unknown algorithm {name!r}; known: {', '.join(sorted(METHODS))}")
    return name


@table
class AlgorithmSection:
    name: Annotated[Text, AfterValidator(_known_method)]
    params: dict[Text, Any] = field(default_factory=dict)


@table
class DataSection:
    """What each client trains on.

    Without ``manifest``, every agent builds its own shard in memory (``delivery =
    "build"``). With ``manifest`` (from ``htfl data prepare``), agents load prepared shards,
    delivered over HTTP by the ServerApp (``"http"``) or synced beforehand by Ansible
    (``"ansible"``); ``dataset``, ``partition`` and its parameters must then agree with the
    manifest, and ``shards_sha256`` (filled in from the manifest by the preflight step when
    empty) is the content hash every agent checks. A relative ``manifest`` is relative to the
    working directory.
    """

    dataset: Text
    # "imported": shards from `htfl data import-pfllib` (needs manifest)
    partition: Literal["iid", "pathological", "dirichlet", "exdir", "natural", "imported"] = (
        "dirichlet"
    )
    alpha: Annotated[Number, above(0), finite()] = 0.1
    classes_per_client: Annotated[Int, at_least(1)] = 2
    min_samples: Annotated[Int, at_least(1)] = 10
    balanced: Flag = False
    train_fraction: Annotated[Number, check(lambda v: 0 < v < 1, "0 < x < 1")] = 0.75
    manifest: Text = ""
    shards_sha256: Text = ""
    delivery: Literal["", "build", "http", "ansible"] = ""
    serve_host: Text = "127.0.0.1"
    serve_port: Port = 0  # 0: any free port; -1: do not serve (shard_url points elsewhere)
    shard_url: Text = ""  # the URL devices use; default: the server's own address

    def __post_init__(self) -> None:
        # Resolve once, where the file is read, so the record (experiment.json) is explicit.
        if self.manifest:
            object.__setattr__(self, "manifest", os.path.abspath(self.manifest))
        if not self.delivery:
            object.__setattr__(self, "delivery", "http" if self.manifest else "build")

    @model_validator(mode="after")
    def _consistent(self) -> DataSection:
        found = []
        delivery = self.delivery or ("http" if self.manifest else "build")
        if not self.manifest and self.dataset not in known_datasets():
            known = ", ".join(known_datasets())
            found.append(problem("dataset", f"unknown dataset {self.dataset!r}; known: {known}"))
        if self.partition == "imported" and not self.manifest:
            found.append(
                problem("partition", '"imported" needs the manifest that import-pfllib wrote')
            )
        if delivery == "build" and self.manifest:
            found.append(
                problem("delivery", '"build" makes shards on the devices; remove manifest')
            )
        if delivery in ("http", "ansible") and not self.manifest:
            found.append(
                problem("manifest", f'delivery "{delivery}" needs prepared shards (manifest)')
            )
        if delivery == "http" and self.serve_port == -1 and not self.shard_url:
            found.append(
                problem("shard_url", "serve_port = -1 (served elsewhere) needs the shard_url")
            )
        raise_problems("data", found)
        return self

    def partition_spec(self) -> PartitionSpec:
        return PartitionSpec(
            kind=self.partition,
            classes_per_client=self.classes_per_client,
            alpha=self.alpha,
            min_samples=self.min_samples,
            balanced=self.balanced,
        )

    def shard_spec(self) -> dict[str, Any]:
        """What the setup message tells agents about prepared shards (empty for build)."""
        if self.delivery == "build":
            return {}
        return {
            "delivery": self.delivery,
            "url": self.shard_url,
            "content_sha256": self.shards_sha256,
        }


@table
class DevicesSection:
    """Which devices take part: counts per device class, or explicit device names."""

    classes: dict[DeviceClassName, Annotated[Int, at_least(1)]] = field(default_factory=dict)
    names: list[Text] = field(default_factory=list)
    deadline_seconds: Annotated[Number, above(0)] = 300.0
    min_replies: Annotated[Int, at_least(1)] = 1
    wait_for_devices_seconds: Annotated[Number, at_least(0)] = 120.0
    #: train.setup has its own deadline: a slow board imports torch, builds its model and
    #: reads its shard before it can answer (minutes on a Jetson Nano under load).
    setup_deadline_seconds: Annotated[Number, above(0)] = 900.0
    #: how long an `evaluate` waits for the devices that answered this round's `train`
    evaluate_deadline_seconds: Annotated[Number, above(0)] = 300.0

    @model_validator(mode="after")
    def _consistent(self) -> DevicesSection:
        found = []
        if bool(self.classes) == bool(self.names):
            found.append(
                problem(
                    "classes/names", "give exactly one of `classes` (counts per class) or `names`"
                )
            )
        elif self.min_replies > self.count:
            found.append(
                problem(
                    "min_replies",
                    f"expected 1..{self.count} (devices selected), got {self.min_replies}",
                )
            )
        raise_problems("devices", found)
        return self

    @property
    def count(self) -> int:
        return sum(self.classes.values()) if self.classes else len(self.names)


def _known_family(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str) and value and value not in FAMILIES:
        raise fail(f"unknown model family {value!r}; known: {', '.join(FAMILIES)}")
    if isinstance(value, list):
        if not value:
            raise fail("an empty list; give at least one architecture")
        unknown = [v for v in value if v not in ARCHITECTURES]
        if unknown:
            raise fail(f"unknown architecture(s) {', '.join(map(repr, unknown))}")
    return value


@table
class ModelsSection:
    """The architecture each device class trains, and the shared feature dimension."""

    feature_dim: Annotated[Int, at_least(1)] = 512
    by_class: dict[DeviceClassName, Annotated[Text, one_of(ARCHITECTURES, "architecture")]] = field(
        default_factory=dict
    )

    #: HtFLlib's family (e.g. "HtFE-img-4", htfl.models.htfllib.FAMILIES) or a list of
    #: architectures: client i trains family[i % k] whatever its class, as HtFLlib assigns
    #: them; empty: the per-class table
    family: Annotated[Text | list[Text], AfterValidator(_known_family)] = ""

    def members(self) -> tuple[str, ...]:
        return family_members(self.family) if self.family else ()

    def arch_for(self, device_class: str, client_index: int | None = None) -> str:
        members = self.members()
        if members and client_index is not None:
            return members[client_index % len(members)]
        return self.by_class.get(device_class) or DEVICE_CLASSES[device_class].default_model

    @model_validator(mode="after")
    def _one_assignment(self) -> ModelsSection:
        if self.family and self.by_class:
            raise_problems(
                "models",
                [problem("family", "give a family or architectures per device class, not both")],
            )
        return self


@table
class SuperLinkSection:
    address: Text = "127.0.0.1:8000"  # the Control API, where runs are submitted
    insecure: Flag = True
    root_certificates: Text = ""
    #: where the ServerApp rings agents (htfl.doorbell), on the SuperLink's host: 0, any free
    #: port per run; a fixed port for a lab whose firewall admits only known ports; -1, none
    #: (agents poll the SuperLink)
    doorbell_port: Port = 0


@table
class TelemetrySection:
    """Where the ServerApp serves its /metrics (-1: not at all; 0: any free port)."""

    server_metrics_port: Port = 9465
    server_metrics_host: Text = "127.0.0.1"


@table
class PowerSection:
    """Meters the workstation reads itself: an inventory whose ``htfl_meter`` mappings say
    ``read_by: workstation`` (docs/power.md); empty: only the devices' own meters."""

    inventory: Text = ""


#: a Ray cluster to join: Ray's own forms (``HOST:PORT`` of its GCS, ``ray://HOST:PORT`` of its
#: client server, ``auto``: the cluster started on this machine by ``ray start``)
_RAY_ADDRESS = re.compile(r"^(auto|(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})$")


@table
class SimulationSection:
    """The run on virtual clients in Flower's simulation runtime (Ray backend) instead of on a
    fleet: the file's equivalent of ``htfl run --simulate N`` (docs/simulation.md); each
    option of that command overrides its key here."""

    #: virtual clients; 0: the experiment runs on a fleet (unless ``--simulate N``)
    clients: Annotated[Int, at_least(0)] = 0
    #: where a virtual client's private model lives between messages (memory: Flower's
    #: Context.state in the driver; disk: a file per client under the results dir)
    client_state: Literal["memory", "disk"] = "memory"
    #: the Ray backend's resources per virtual client (Ray runs CPUs / this clients at once)
    cpus_per_client: Annotated[Number, above(0), finite()] = 1.0
    gpus_per_client: Annotated[Number, at_least(0), finite()] = 0.0
    #: where Ray runs: "" starts a local Ray (or joins RAY_ADDRESS when set); an existing
    #: cluster by its head's address (HOST:6379, ray://HOST:10001, or auto)
    ray_address: Annotated[
        Text,
        check(lambda v: not v or bool(_RAY_ADDRESS.match(v)), "HOST:PORT, ray://HOST:PORT or auto"),
    ] = ""


@dataclasses.dataclass(frozen=True)
class Experiment:
    source: str
    experiment: ExperimentSection
    algorithm: AlgorithmSection
    algorithm_params: Any
    data: DataSection
    training: TrainSettings
    devices: DevicesSection
    models: ModelsSection
    superlink: SuperLinkSection
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    power: PowerSection = field(default_factory=PowerSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)

    @property
    def id(self) -> str:
        return self.experiment.id

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment in the file's own shape (defaults filled in)."""
        out = {
            f.name: dataclasses.asdict(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("source", "algorithm_params")
        }
        out["algorithm"]["params"] = dataclasses.asdict(self.algorithm_params)
        out["models"] = {"feature_dim": self.models.feature_dim, **self.models.by_class}
        if self.models.family:
            out["models"]["family"] = self.models.family
        return out


#: Section name -> (table, required). [models] is reshaped first (its keys are device classes).
_SECTIONS: dict[str, tuple[type, bool]] = {
    "experiment": (ExperimentSection, True),
    "algorithm": (AlgorithmSection, True),
    "data": (DataSection, True),
    "training": (TrainSettings, False),
    "devices": (DevicesSection, True),
    "models": (ModelsSection, False),
    "superlink": (SuperLinkSection, False),
    "telemetry": (TelemetrySection, False),
    "power": (PowerSection, False),
    "simulation": (SimulationSection, False),
}


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; raise :class:`ConfigError` listing every problem.

    Reads only ``path``; run :func:`htfl.workstation.config.preflight.preflight` next to check
    the files the experiment names.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a directory, not an experiment file"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not a text file (an experiment file is UTF-8 TOML)"]) from None
    except OSError as err:
        raise ConfigError(path, [f"cannot be read: {err.strerror or err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"not valid TOML: {err}"]) from None
    return experiment_from_dict(raw, path)


def _keys(table: Any) -> Any:
    """``server-torch-threads`` and ``server_torch_threads`` name the same key."""
    return {k.replace("-", "_"): v for k, v in table.items()} if isinstance(table, dict) else table


def _models_table(table: Any) -> Any:
    if not isinstance(table, dict):
        return table
    rest = dict(table)
    out = {"feature_dim": rest.pop("feature_dim", 512), "by_class": rest}
    if "family" in rest:
        out["family"] = rest.pop("family")
    return out


def experiment_from_dict(raw: dict[str, Any], path: str | Path = "<dict>") -> Experiment:
    """Validate a parsed experiment file (or a resolved one); no other file is read."""
    problems: list[str] = []
    raw = apply_preset(raw)
    for key in raw:
        if key not in _SECTIONS:
            problems.append(f"{key}: unknown section (expected: {', '.join(_SECTIONS)})")
    for name, (_, required) in _SECTIONS.items():
        if required and name not in raw:
            problems.append(f"{name}: required section is missing")
    tables = {name: _keys(raw.get(name, {})) for name in _SECTIONS}
    if isinstance(tables["experiment"], dict):
        tables["experiment"].setdefault("id", Path(str(path)).stem)
    tables["models"] = _models_table(raw.get("models", {}))
    built: dict[str, Any] = {}
    for name, (cls, required) in _SECTIONS.items():
        if name in raw or not required:
            lines: list[str] = []
            built[name] = build(cls, tables[name], name, lines)
            # [models] names device classes directly; by_class is only where they are kept
            problems.extend(line.replace("models.by_class.", "models.") for line in lines)
    algorithm, models, devices = (built.get(k) for k in ("algorithm", "models", "devices"))
    params = None
    if algorithm is not None:
        method = METHODS[algorithm.name.lower()]
        params = build(method.params, _keys(algorithm.params), "algorithm.params", problems)
        if method.homogeneous and models is not None and devices is not None:
            archs = set(models.members()) or {models.arch_for(c) for c in devices.classes}
            if len(archs) > 1:
                problems.append(
                    f"models: {method.name} needs one architecture for every device class, "
                    f"got {', '.join(sorted(archs))}"
                )
        if method.exchanges_head and models is not None and devices is not None:
            archs = set(models.members()) or {models.arch_for(c) for c in devices.classes}
            own = sorted(archs & OWN_HEAD_ARCHITECTURES)
            if own:
                key = "models.family" if models.family else "models"
                problems.append(
                    f"{key}: {method.name} exchanges the head Linear(feature_dim, classes); "
                    f"{', '.join(own)} keep a head of their own (HtFLlib's ViT head or its "
                    "heterogeneous heads), so the heads cannot be exchanged"
                )
    if models is not None and devices is not None and not problems:
        problems.extend(_memory_problems(models, devices))
    if devices is not None and built.get("simulation") is not None:
        problems.extend(_simulation_problems(built["simulation"], devices))
    if problems:
        raise ConfigError(path, problems)
    return Experiment(source=str(path), algorithm_params=params, **built)


def _simulation_problems(simulation: SimulationSection, devices: DevicesSection) -> list[str]:
    """Virtual clients the [devices] selection cannot be made from (``clients = 0``: none)."""
    if not simulation.clients:
        return []
    if not devices.classes:
        return [
            "simulation.clients: virtual clients take [devices] classes (counts per class); "
            "this file names devices"
        ]
    if simulation.clients < devices.count:
        return [
            f"simulation.clients: the experiment selects {devices.count} devices ([devices]); "
            f"expected at least {devices.count}, got {simulation.clients}"
        ]
    return []


def _memory_problems(models: ModelsSection, devices: DevicesSection) -> list[str]:
    """A model whose training state cannot fit in its device class's memory, per client.

    Clients are numbered in the order of ``[devices] classes``; with ``names`` the classes are
    only known at selection, so nothing is checked here.
    """
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    clients = [c for c, n in devices.classes.items() for _ in range(n)]
    for index, device_class in enumerate(clients):
        arch = models.arch_for(device_class, index)
        if (arch, device_class) in seen:
            continue
        seen.add((arch, device_class))
        line = memory_problem(arch, device_class, models.feature_dim)
        if line:
            out.append(f"models: client {index}: {line}")
    return out
