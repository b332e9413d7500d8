"""Experiment files: good ones load; bad ones fail before anything starts, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.workstation.config.experiment import load_experiment
from htfl.workstation.config.typed import ConfigError

GOOD = """
[experiment]
id = "t1"
rounds = 3
[algorithm]
name = "fedproto"
[algorithm.params]
lamda = 0.5
[data]
dataset = "digits"
partition = "pathological"
classes_per_client = 3
[devices]
classes = { "jetson-nano" = 2, "orange-pi-5b" = 1 }
[models]
"jetson-nano" = "cnn4"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_quickstart_and_a_good_file_load(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.algorithm_params.lamda == 0.5
    assert exp.models.arch_for("jetson-nano") == "cnn4"
    assert exp.models.arch_for("orange-pi-5b") == "resnet8"  # the class's default model
    assert exp.devices.count == 3
    assert load_experiment("experiments/quickstart.toml").algorithm.name == "fedtgp"


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    from htfl.workstation.config.experiment import experiment_from_dict

    exp = load_experiment(write(tmp_path, GOOD))
    again = experiment_from_dict(exp.to_dict(), "resolved")
    assert again.to_dict() == exp.to_dict()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('name = "fedproto"', 'name = "fedwhat"'), "algorithm.name: unknown algorithm 'fedwhat'"),
        (("lamda = 0.5", "lamda = -1.0"), "algorithm.params.lamda: expected a number >= 0"),
        (("lamda = 0.5", "lamdba = 0.5"), "algorithm.params.lamdba: unknown key"),
        (("rounds = 3", 'rounds = "three"'), "experiment.rounds: expected an integer"),
        (("rounds = 3", "rounds = 0"), "experiment.rounds: expected an integer >= 1"),
        (('dataset = "digits"', 'dataset = "imagenet"'), "data.dataset: unknown dataset"),
        (('"jetson-nano" = "cnn4"', '"jetson-nano" = "vgg99"'), "unknown architecture 'vgg99'"),
        (('"jetson-nano" = 2', '"raspberry-pi" = 2'), "devices.classes.raspberry-pi: unknown"),
        (("[models]", "[modles]"), "[modles]: unknown section"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, change, expected) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("rounds = 3", "rounds = -1").replace("lamda = 0.5", "lamda = -2.0")
    with pytest.raises(ConfigError) as info:
        load_experiment(write(tmp_path, text))
    assert len(info.value.problems) == 2


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[experiment\nrounds = 1"))
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment(tmp_path / "nope.toml")


def test_fedavg_needs_one_architecture(tmp_path: Path) -> None:
    text = GOOD.replace('name = "fedproto"', 'name = "fedavg"').replace(
        "[algorithm.params]\nlamda = 0.5\n", ""
    )
    with pytest.raises(ConfigError, match="fedavg needs one architecture"):
        load_experiment(write(tmp_path, text))
