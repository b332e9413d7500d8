"""Bad method parameters fail before a run starts, through the real experiment loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from htfl.algorithms import METHODS, fedktl
from htfl.workstation.config.experiment import ConfigError, load_experiment
from htfl.workstation.config.preflight import check_files, preflight

EXPERIMENT = """
[experiment]
id = "params"
rounds = 3
[algorithm]
name = "{name}"
[algorithm.params]
{params}
[data]
dataset = "digits"
partition = "dirichlet"
alpha = 0.1
[devices]
classes = {{ "jetson-nano" = 1, "orange-pi-5b" = 1, "jetson-orin-nano" = 1 }}
[models]
feature_dim = 32
"jetson-nano" = "cnn4"
"orange-pi-5b" = "resnet4"
"jetson-orin-nano" = "resnet6"
"""


def write(tmp_path: Path, name: str, params: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(name=name, params=params))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value)
    return info.value.problems


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"fedavg", "fedktl"}))
def test_every_method_loads_with_its_defaults(tmp_path: Path, name: str) -> None:
    exp = load_experiment(write(tmp_path, name))
    assert exp.algorithm.name == name
    assert exp.algorithm_params == METHODS[name].params()


def test_an_unknown_method_names_the_known_ones(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "fedsomething"))
    assert problem.startswith("algorithm.name: unknown algorithm 'fedsomething'; known: ")
    for name in ("fd", "fml", "lg_fedavg", "fedgen", "fedkd", "fedgh", "fedmrl", "fedl2g"):
        assert name in problem


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("fd", "lamda = -1.0", "algorithm.params.lamda: expected a number >= 0, got -1"),
        ("fedgen", "lamda = -0.5", "algorithm.params.lamda: expected a number >= 0, got -0.5"),
        ("fml", "alpha = 1.5", "algorithm.params.alpha: expected a number in [0, 1], got 1.5"),
        ("fedkd", "energy_end = 1.2", "algorithm.params.energy_end: expected a number in (0, 1]"),
        ("fedkd", 'shared_arch = "vgg99"', "algorithm.params.shared_arch: unknown architecture"),
        ("fedgh", "server_epochs = 0", "algorithm.params.server_epochs: expected an integer >= 1"),
        ("fedl2g", 'guide_space = "pixels"', "algorithm.params.guide_space: expected one of"),
        ("fedmrl", "sub_feature_dim = -4", "algorithm.params.sub_feature_dim: expected an integer"),
        ("lg_fedavg", "lamda = 1.0", "algorithm.params.lamda: unknown key"),
    ],
)
def test_a_bad_parameter_is_named_with_what_was_expected(
    tmp_path: Path, name: str, params: str, expected: str
) -> None:
    problems = problems_of(write(tmp_path, name, params))
    assert any(p.startswith(expected) for p in problems), problems


def test_fedktl_loads_with_a_generator_file(tmp_path: Path, generator_file: Path) -> None:
    exp = load_experiment(write(tmp_path, "fedktl", f'generator_path = "{generator_file}"'))
    assert exp.algorithm_params.generator_path == str(generator_file)
    assert check_files(exp) == [] and preflight(exp) is exp


def test_fedktl_needs_a_generator_path(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "fedktl"))
    assert problem.startswith("algorithm.params.generator_path: required")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "cannot read"),
        (lambda p: p.write_text("not a generator"), "is not a generator file"),
        (lambda p: torch.save({"weights": torch.zeros(3)}, p), "is not a generator file"),
        (
            lambda p: torch.save(
                {
                    "format": fedktl.GENERATOR_FORMAT,
                    "config": fedktl.example_generator().config,
                    "state_dict": {"base.weight": torch.zeros(2, 2)},
                },
                p,
            ),
            "weights do not fit its configuration",
        ),
    ],
    ids=["missing", "text", "other-torch-file", "wrong-weights"],
)
def test_a_file_that_is_not_a_generator_is_refused_before_the_run(
    tmp_path: Path, make, expected: str
) -> None:
    bad = tmp_path / "generator.pt"
    make(bad)
    path = write(tmp_path, "fedktl", f'generator_path = "{bad}"')
    exp = load_experiment(path)  # validation reads no file: the generator is not opened here
    (problem,) = check_files(exp)
    assert problem.startswith("algorithm.params.generator_path: ")
    assert expected in problem
    with pytest.raises(ConfigError) as info:
        preflight(exp)
    assert str(path) in str(info.value) and info.value.problems == [problem]


def test_several_bad_parameters_are_reported_at_once(tmp_path: Path) -> None:
    params = 'mentee_learning_rate = 0\nenergy_start = 0\nramp_rounds = "ten"\nshared = "cnn4"'
    problems = problems_of(write(tmp_path, "fedkd", params))
    assert problems == [
        "algorithm.params.mentee_learning_rate: expected a number > 0, got 0",
        "algorithm.params.energy_start: expected a number in (0, 1], got 0",
        "algorithm.params.ramp_rounds: expected an integer, got 'ten'",
        "algorithm.params.shared: unknown key (expected one of: energy_end, energy_start, "
        "mentee_learning_rate, ramp_rounds, shared_arch, weighting)",
    ]


def test_the_generator_file_round_trips(tmp_path: Path) -> None:
    generator = fedktl.example_generator(seed=3)
    fedktl.save_generator(generator, tmp_path / "g.pt")
    loaded = fedktl.load_generator(tmp_path / "g.pt")
    z = torch.randn(2, generator.z_dim)
    torch.testing.assert_close(loaded(z), generator.eval()(z))
    assert loaded.synthesis(loaded.mapping(z)).shape == (2, 3, 16, 16)


def test_the_benchmark_experiment_files_load_and_match_the_benchmark(generator_file) -> None:
    import tomllib

    from benchmarks.algorithms import EXPERIMENTS, entries, experiment_text
    from htfl.workstation.config.experiment import experiment_from_dict

    files = sorted(EXPERIMENTS.glob("*.toml"))
    assert {f.stem for f in files} == set(entries()) >= set(METHODS)
    for path in files:
        assert path.read_text() == experiment_text(path.stem), f"{path}: regenerate it"
        raw = tomllib.loads(path.read_text())
        if raw["algorithm"]["name"] == "fedktl":
            raw["algorithm"]["params"]["generator_path"] = str(generator_file)
        exp = experiment_from_dict(raw, path)
        assert exp.devices.count == 20 and exp.data.alpha == 0.1


def test_the_example_generator_command(tmp_path: Path) -> None:
    assert fedktl.main(["example-generator", str(tmp_path / "g" / "example.pt")]) == 0
    assert fedktl.load_generator(tmp_path / "g" / "example.pt").w_dim == 64
