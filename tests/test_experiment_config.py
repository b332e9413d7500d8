"""Experiment files: good ones load; bad ones fail before anything starts, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from htfl.workstation.config.experiment import ConfigError, load_experiment

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
        (("[models]", "[modles]"), "modles: unknown section"),
        (('id = "t1"', 'id = "t 1"'), "experiment.id: expected letters, digits"),
        (("rounds = 3", "rounds = true"), "experiment.rounds: expected an integer, got True"),
        (('partition = "pathological"', 'partition = "halves"'), "data.partition: expected one of"),
        (("classes_per_client = 3", "classes_per_client = 0"), "data.classes_per_client: expected"),
        (('"jetson-nano" = 2', '"jetson-nano" = 0'), "devices.classes.jetson-nano: expected an"),
        (("[models]", "[telemetry]\nserver_metrics_port = 70000\n[models]"), "telemetry.server_"),
        (("[models]", "[training]\nbatch_size = 0\n[models]"), "training.batch_size: expected"),
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


def test_every_problem_of_every_section_names_file_and_key(tmp_path: Path) -> None:
    text = (
        GOOD.replace("rounds = 3", "rounds = 0\nseeed = 1")
        .replace("lamda = 0.5", "lamda = -2.0\ntau = 1.0")
        .replace('partition = "pathological"', 'partition = "halves"\ntrain_fraction = 1.5')
        .replace('"jetson-nano" = "cnn4"', '"jetson-nano" = "vgg99"\nfeature_dim = 0')
        + "[training]\nlearning_rate = 0\nmomentum = -1\n[superlink]\ninsecure = 1\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).splitlines()[0] == f"invalid experiment file {path}:"
    known = "id, rounds, seed, eval_every, description, server_torch_threads, preset, preset_set"
    assert info.value.problems == [
        "experiment.rounds: expected an integer >= 1, got 0",
        f"experiment.seeed: unknown key (expected one of: {', '.join(sorted(known.split(', ')))})",
        "data.partition: expected one of 'iid', 'pathological', 'dirichlet', 'exdir', "
        "'natural' or 'imported', got 'halves'",
        "data.train_fraction: expected 0 < x < 1, got 1.5",
        "training.learning_rate: expected a number > 0, got 0",
        "training.momentum: expected a number >= 0, got -1",
        "models.feature_dim: expected an integer >= 1, got 0",
        "models.jetson-nano: unknown architecture 'vgg99'; known: "
        + ", ".join(sorted(__import__("htfl.models").models.ARCHITECTURES)),
        "superlink.insecure: expected true or false, got 1",
        "algorithm.params.lamda: expected a number >= 0, got -2",
        "algorithm.params.tau: unknown key (expected one of: lamda, mse_over, prototypes, "
        "weighting)",
    ]


def test_an_empty_file_names_each_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.problems == [
        f"{name}: required section is missing"
        for name in ("experiment", "algorithm", "data", "devices")
    ]


def test_cross_key_problems_are_named_together(tmp_path: Path) -> None:
    text = GOOD.replace(
        'classes = { "jetson-nano" = 2, "orange-pi-5b" = 1 }',
        'classes = { "jetson-nano" = 2 }\nnames = ["a"]\nmin_replies = 5',
    ).replace('dataset = "digits"', 'dataset = "digits"\ndelivery = "ansible"\nserve_port = -2')
    with pytest.raises(ConfigError) as info:
        load_experiment(write(tmp_path, text))
    assert info.value.problems == [
        "data.serve_port: expected -1..65535, got -2",
        "devices.classes/names: give exactly one of `classes` (counts per class) or `names`",
    ]


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
