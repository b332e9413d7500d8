"""``[experiment] preset = "htfllib"``: HtFLlib's defaults where the file is silent."""

from __future__ import annotations

import dataclasses

import pytest

from htfl.algorithms import METHODS
from htfl.workstation.config.experiment import ConfigError, experiment_from_dict
from htfl.workstation.config.presets import METHOD_PRESETS


def _raw(method: str = "fedproto", **sections) -> dict:
    raw = {
        "experiment": {"id": "p", "rounds": 2, "preset": "htfllib"},
        "algorithm": {"name": method},
        "data": {"dataset": "digits"},
        "devices": {"classes": {"jetson-nano": 2}},
    }
    for name, table in sections.items():
        raw.setdefault(name, {}).update(table)
    return raw


def test_the_preset_fills_htfllibs_defaults_and_an_explicit_key_wins() -> None:
    exp = experiment_from_dict(
        _raw(training={"learning_rate": 0.05}, algorithm={"params": {"lamda": 2.0}})
    )
    t = exp.training
    assert (t.learning_rate, t.momentum, t.batch_size, t.local_epochs) == (0.05, 0.0, 10, 1)
    assert (t.shuffle, t.drop_last) == (False, True)
    assert exp.models.feature_dim == 512 and exp.experiment.eval_every == 1
    p = exp.algorithm_params
    assert (p.lamda, p.weighting, p.prototypes, p.mse_over) == (
        2.0,
        "clients",
        "during_training",
        "all",
    )
    filled = set(exp.experiment.preset_set)
    assert "training.batch_size" in filled and "algorithm.params.weighting" in filled
    assert "training.learning_rate" not in filled and "algorithm.params.lamda" not in filled


def test_every_value_the_preset_sets_is_in_the_resolved_experiment() -> None:
    exp = experiment_from_dict(_raw("fml"))
    resolved = exp.to_dict()
    assert resolved["experiment"]["preset"] == "htfllib"
    for key in exp.experiment.preset_set:
        section, _, name = key.rpartition(".")
        table = resolved
        for part in section.split("."):
            table = table[part]
        assert name in table, key
    assert resolved["algorithm"]["params"]["kl_reduction"] == "elementwise"
    # the record loads back to the same experiment (nothing filled twice, nothing lost)
    again = experiment_from_dict(resolved)
    assert again.to_dict() == resolved


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_loads_under_the_preset(name: str) -> None:
    raw = _raw(name)
    if name == "fedktl":
        raw["algorithm"]["params"] = {"generator_path": "/nonexistent/g.pt"}
    exp = experiment_from_dict(raw)
    params = dataclasses.asdict(exp.algorithm_params)
    for key, value in METHOD_PRESETS["htfllib"].get(name, {}).items():
        assert params[key] == value, key


def test_without_a_preset_nothing_changes() -> None:
    raw = _raw()
    del raw["experiment"]["preset"]
    exp = experiment_from_dict(raw)
    assert exp.training.shuffle and not exp.training.drop_last
    assert exp.experiment.preset_set == [] and exp.algorithm_params.weighting == "samples"


def test_an_unknown_preset_is_named() -> None:
    raw = _raw()
    raw["experiment"]["preset"] = "pfllib"
    with pytest.raises(ConfigError, match="experiment.preset"):
        experiment_from_dict(raw)


@pytest.mark.parametrize("name", ["fml", "fedkd", "fedmrl"])
def test_the_shared_model_is_the_familys_first_member_as_htfllib_builds_it(name: str) -> None:
    """HtFLlib's FML, FedKD and FedMRL servers build the shared model as
    ``BaseHeadSplit(args, 0)``: the family's first member; and average it plainly."""
    raw = _raw(name, models={"family": ["resnet6", "cnn4"]})
    exp = experiment_from_dict(raw)
    assert exp.algorithm_params.shared_arch == "resnet6"
    assert exp.algorithm_params.weighting == "clients"
    assert "algorithm.params.shared_arch" in exp.experiment.preset_set
    raw["algorithm"]["params"] = {"shared_arch": "cnn4"}  # an explicit key wins
    assert experiment_from_dict(raw).algorithm_params.shared_arch == "cnn4"
    del raw["models"], raw["algorithm"]["params"]  # without a family, the method's own default
    assert experiment_from_dict(raw).algorithm_params.shared_arch == "cnn4"
