"""The experiment file (TOML), validated into typed config before anything starts.

Every problem is reported at once, each naming the file, the key and what was expected, so a
researcher fixes a file in one pass rather than one error per launch.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from htfl.algorithms import METHODS
from htfl.algorithms.base import TrainSettings
from htfl.datasets import PartitionSpec, known_datasets
from htfl.datasets.store import manifest_content_sha256, manifest_problems
from htfl.devices import DEVICE_CLASSES
from htfl.models import ARCHITECTURES
from htfl.workstation.config.typed import ConfigError, build, to_plain

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


@dataclass(frozen=True)
class ExperimentSection:
    id: str
    rounds: int
    seed: int = 0
    eval_every: int = 1
    description: str = ""
    #: torch threads of the ServerApp; 1 avoids OpenMP spin contention with co-located agents
    server_torch_threads: int = 1

    def problems(self) -> list[str]:
        out = []
        if not _ID.match(self.id):
            out.append(f"id: expected letters, digits, '_', '-', '.' (<= 81), got {self.id!r}")
        if self.rounds < 1:
            out.append(f"rounds: expected an integer >= 1, got {self.rounds}")
        if self.eval_every < 1:
            out.append(f"eval_every: expected an integer >= 1, got {self.eval_every}")
        if self.server_torch_threads < 1:
            out.append(
                f"server_torch_threads: expected an integer >= 1, got {self.server_torch_threads}"
            )
        return out


@dataclass(frozen=True)
class AlgorithmSection:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        if self.name.lower() not in METHODS:
            return [f"name: unknown algorithm {self.name!r}; known: {', '.join(sorted(METHODS))}"]
        return []


@dataclass(frozen=True)
class DataSection:
    """What each client trains on.

    Without ``manifest``, every agent builds its own shard in memory (``delivery =
    "build"``). With ``manifest`` (from ``htfl data prepare``), agents load prepared shards,
    delivered over HTTP by the ServerApp (``"http"``) or synced beforehand by Ansible
    (``"ansible"``); ``dataset``, ``partition`` and its parameters must then agree with the
    manifest, and ``shards_sha256`` (filled in from the manifest when empty) is the content
    hash every agent checks. A relative ``manifest`` is relative to the working directory.
    """

    dataset: str
    partition: Literal["iid", "pathological", "dirichlet", "exdir", "natural"] = "dirichlet"
    alpha: float = 0.1
    classes_per_client: int = 2
    min_samples: int = 10
    balanced: bool = False
    train_fraction: float = 0.75
    manifest: str = ""
    shards_sha256: str = ""
    delivery: Literal["", "build", "http", "ansible"] = ""
    serve_host: str = "127.0.0.1"
    serve_port: int = 0  # 0: any free port; -1: do not serve (shard_url points elsewhere)
    shard_url: str = ""  # the URL devices use; default: the server's own address

    def __post_init__(self) -> None:
        # Resolve once, where the file is read, so the record (experiment.json) is explicit.
        if self.manifest:
            object.__setattr__(self, "manifest", os.path.abspath(self.manifest))
        if not self.delivery:
            object.__setattr__(self, "delivery", "http" if self.manifest else "build")
        if self.manifest and not self.shards_sha256:
            object.__setattr__(self, "shards_sha256", manifest_content_sha256(self.manifest))

    def problems(self) -> list[str]:
        out = []
        if self.manifest:
            out.extend(self._manifest_problems())
        elif self.dataset not in known_datasets():
            out.append(
                f"dataset: unknown dataset {self.dataset!r}; known: {', '.join(known_datasets())}"
            )
        if not 0 < self.train_fraction < 1:
            out.append(f"train_fraction: expected 0 < x < 1, got {self.train_fraction}")
        try:
            self.partition_spec().validate()
        except ValueError as err:
            out.append(f"partition: {err}")
        if self.delivery == "build" and self.manifest:
            out.append('delivery: "build" makes shards on the devices; remove manifest')
        if self.delivery in ("http", "ansible") and not self.manifest:
            out.append(f'manifest: delivery "{self.delivery}" needs prepared shards (manifest)')
        if not -1 <= self.serve_port <= 65535:
            out.append(f"serve_port: expected -1..65535, got {self.serve_port}")
        if self.delivery == "http" and self.serve_port == -1 and not self.shard_url:
            out.append("shard_url: serve_port = -1 (served elsewhere) needs the shard_url")
        return out

    def _manifest_problems(self) -> list[str]:
        return manifest_problems(
            self.manifest,
            self.shards_sha256,
            self.dataset,
            self.partition_spec(),
            self.train_fraction,
        )

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


@dataclass(frozen=True)
class DevicesSection:
    """Which devices take part: counts per device class, or explicit device names."""

    classes: dict[str, int] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    deadline_seconds: float = 300.0
    min_replies: int = 1
    wait_for_devices_seconds: float = 120.0

    def problems(self) -> list[str]:
        out = []
        if bool(self.classes) == bool(self.names):
            out.append("classes/names: give exactly one of `classes` (counts per class) or `names`")
        for name, count in self.classes.items():
            if name not in DEVICE_CLASSES:
                known = ", ".join(sorted(DEVICE_CLASSES))
                out.append(f"classes.{name}: unknown device class; known: {known}")
            if count < 1:
                out.append(f"classes.{name}: expected a count >= 1, got {count}")
        if self.deadline_seconds <= 0:
            out.append(f"deadline_seconds: expected a number > 0, got {self.deadline_seconds}")
        if self.min_replies < 1 or self.min_replies > self.count:
            out.append(
                f"min_replies: expected 1..{self.count} (devices selected), got {self.min_replies}"
            )
        return out

    @property
    def count(self) -> int:
        return sum(self.classes.values()) if self.classes else len(self.names)


@dataclass(frozen=True)
class ModelsSection:
    """The architecture each device class trains, and the shared feature dimension."""

    feature_dim: int = 512
    by_class: dict[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        if self.feature_dim < 1:
            out.append(f"feature_dim: expected an integer >= 1, got {self.feature_dim}")
        for cls, arch in self.by_class.items():
            if cls not in DEVICE_CLASSES:
                out.append(
                    f"{cls}: unknown device class; known: {', '.join(sorted(DEVICE_CLASSES))}"
                )
            if arch not in ARCHITECTURES:
                out.append(
                    f"{cls}: unknown architecture {arch!r}; known: "
                    f"{', '.join(sorted(ARCHITECTURES))}"
                )
        return out

    def arch_for(self, device_class: str) -> str:
        return self.by_class.get(device_class) or DEVICE_CLASSES[device_class].default_model


@dataclass(frozen=True)
class SuperLinkSection:
    address: str = "127.0.0.1:8000"  # the Control API, where runs are submitted
    insecure: bool = True
    root_certificates: str = ""


@dataclass(frozen=True)
class TelemetrySection:
    """Where the ServerApp serves its /metrics (-1: not at all; 0: any free port)."""

    server_metrics_port: int = 9465
    server_metrics_host: str = "127.0.0.1"

    def problems(self) -> list[str]:
        if not -1 <= self.server_metrics_port <= 65535:
            return [f"server_metrics_port: expected -1..65535, got {self.server_metrics_port}"]
        return []


@dataclass(frozen=True)
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
    telemetry: TelemetrySection = TelemetrySection()

    @property
    def id(self) -> str:
        return self.experiment.id

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment in the file's own shape (defaults filled in)."""
        out = to_plain(self)
        out["algorithm"]["params"] = to_plain(self.algorithm_params)
        out["models"] = {"feature_dim": self.models.feature_dim, **self.models.by_class}
        del out["algorithm_params"], out["source"]
        return out


_SECTIONS = (
    "experiment",
    "algorithm",
    "data",
    "training",
    "devices",
    "models",
    "superlink",
    "telemetry",
)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"not valid TOML: {err}"]) from None
    return experiment_from_dict(raw, path)


def experiment_from_dict(raw: dict[str, Any], path: str | Path = "<dict>") -> Experiment:
    problems: list[str] = []
    for key in raw:
        if key not in _SECTIONS:
            problems.append(f"[{key}]: unknown section (expected: {', '.join(_SECTIONS)})")
    for required in ("experiment", "algorithm", "data", "devices"):
        if required not in raw:
            problems.append(f"[{required}]: required section is missing")
    if problems:
        raise ConfigError(path, problems)

    exp_table = dict(raw["experiment"])
    exp_table.setdefault("id", Path(str(path)).stem)
    experiment = build(ExperimentSection, exp_table, "experiment", problems)
    algorithm = build(AlgorithmSection, raw["algorithm"], "algorithm", problems)
    data = build(DataSection, raw["data"], "data", problems)
    training = build(TrainSettings, raw.get("training", {}), "training", problems)
    devices = build(DevicesSection, raw["devices"], "devices", problems)
    models_raw = dict(raw.get("models", {}))
    feature_dim = models_raw.pop("feature_dim", 512)
    models = build(
        ModelsSection, {"feature_dim": feature_dim, "by_class": models_raw}, "models", problems
    )
    superlink = build(SuperLinkSection, raw.get("superlink", {}), "superlink", problems)
    telemetry = build(TelemetrySection, raw.get("telemetry", {}), "telemetry", problems)

    params = None
    if algorithm is not None and not algorithm.problems():
        method = METHODS[algorithm.name.lower()]
        params = build(method.params, algorithm.params, "algorithm.params", problems)
        if method.homogeneous and models is not None and devices is not None:
            archs = {models.arch_for(c) for c in devices.classes if c in DEVICE_CLASSES}
            if len(archs) > 1:
                problems.append(
                    f"models: {method.name} needs one architecture for every device class, "
                    f"got {', '.join(sorted(archs))}"
                )
    if problems:
        raise ConfigError(path, problems)
    return Experiment(
        source=str(path),
        experiment=experiment,
        algorithm=algorithm,
        algorithm_params=params,
        data=data,
        training=training,
        devices=devices,
        models=models,
        superlink=superlink,
        telemetry=telemetry,
    )  # type: ignore[arg-type]
