"""The preflight step: check the files an experiment names, after validation and before a run.

Validation (:mod:`htfl.workstation.config.experiment`) reads nothing but the experiment file;
this step reads what it points at: the prepared shards' manifest (it must exist, agree with
``[data]`` and match ``shards_sha256``), that every model ``[models]`` assigns can take the
shards' samples (an image family on feature vectors fails here, not on the devices), and a
method's own files (``Params.check_files()``, e.g. FedKTL's generator weights). ``htfl run``
calls :func:`preflight` before anything starts; problems use the experiment file's format
(file, ``section.key``, what was wrong).
"""

from __future__ import annotations

import dataclasses

import torch

from htfl.datasets.store import Manifest, manifest_content_sha256, manifest_problems
from htfl.models import IncompatibleInputError, build_model
from htfl.workstation.config.experiment import ConfigError, Experiment


def check_files(experiment: Experiment) -> list[str]:
    """Every problem with the files ``experiment`` names, as ``section.key: message`` lines."""
    problems: list[str] = []
    data = experiment.data
    if data.manifest:
        found = manifest_problems(
            data.manifest,
            data.shards_sha256,
            data.dataset,
            data.partition_spec(),
            data.train_fraction,
        )
        problems.extend(f"data.{line}" for line in found)
        if not found:
            problems.extend(_input_problems(experiment, Manifest.read(data.manifest)))
    check = getattr(experiment.algorithm_params, "check_files", None)
    if callable(check):
        problems.extend(f"algorithm.params.{line}" for line in check())
    return problems


def _input_problems(experiment: Experiment, manifest: Manifest) -> list[str]:
    """A model the experiment assigns that cannot take the shards' samples (built on the meta
    device: nothing is allocated). With ``[devices] names`` and no family, the classes are
    known only at selection and nothing is checked."""
    models = experiment.models
    archs = models.members() or tuple(models.arch_for(c) for c in experiment.devices.classes)
    key = "models.family" if models.family else "models"
    out = []
    for arch in dict.fromkeys(archs):
        try:
            with torch.device("meta"):
                build_model(arch, manifest.input_shape, manifest.num_classes, models.feature_dim)
        except IncompatibleInputError as err:
            out.append(f"{key}: {err} (the samples in {manifest.path})")
    return out


def preflight(experiment: Experiment) -> Experiment:
    """Check the named files; return the experiment with ``data.shards_sha256`` pinned.

    Raises :class:`ConfigError` listing every problem. The pinned hash is what the results
    record and what every agent checks its shards against.
    """
    problems = check_files(experiment)
    if problems:
        raise ConfigError(experiment.source, problems)
    data = experiment.data
    if data.manifest and not data.shards_sha256:
        pinned = dataclasses.replace(data, shards_sha256=manifest_content_sha256(data.manifest))
        return dataclasses.replace(experiment, data=pinned)
    return experiment
