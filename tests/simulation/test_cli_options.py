"""`htfl run --simulate` option mistakes are one clear line each and exit 2, before Ray or
anything else starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "experiments" / "quickstart.toml"  # selects 4 devices by class


def htfl_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_too_few_virtual_clients_and_companions_without_simulate(tmp_path: Path) -> None:
    proc = htfl_run(str(QUICKSTART), "--simulate", "2", "--local-fleet", "4", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--simulate 2: the experiment selects 4 devices" in proc.stderr
    assert "--simulate and --local-fleet: choose one" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = htfl_run(str(QUICKSTART), "--client-state", "disk", cwd=tmp_path)
    assert proc.returncode == 2 and "--client-state needs --simulate N" in proc.stderr
    assert not (tmp_path / "results").exists()  # nothing half-written


def with_simulation(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "sim.toml"
    path.write_text(QUICKSTART.read_text() + "\n[simulation]\n" + section)
    return path


def test_the_simulation_section_is_checked_like_the_rest(tmp_path: Path) -> None:
    import pytest

    from htfl.workstation.config.experiment import ConfigError, load_experiment

    path = with_simulation(
        tmp_path,
        'clients = 2\nclient_state = "ram"\ncpus_per_client = 0\ngpus_per_client = -1\n'
        'ray_address = "the cluster"\nworkers = 3\n',
    )
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    problems = info.value.problems
    assert str(path) in str(info.value)
    for expected in (
        "simulation.client_state: expected one of 'memory' or 'disk', got 'ram'",
        "simulation.cpus_per_client: expected a number > 0, got 0",
        "simulation.gpus_per_client: expected a number >= 0, got -1",
        "simulation.ray_address: expected HOST:PORT, ray://HOST:PORT or auto, got 'the cluster'",
        "simulation.workers: unknown key",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    # the virtual clients must cover the [devices] selection (quickstart selects 4)
    path = with_simulation(tmp_path, "clients = 2\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.problems == [
        "simulation.clients: the experiment selects 4 devices ([devices]); "
        "expected at least 4, got 2"
    ]
    for good in ("HEAD:6379", "ray://10.0.0.5:10001", "auto", "[fd00::1]:6379", ""):
        exp = load_experiment(with_simulation(tmp_path, f'clients = 8\nray_address = "{good}"\n'))
        assert exp.simulation.ray_address == good


def test_flags_override_the_file_and_the_record_says_what_ran(tmp_path: Path) -> None:
    from htfl.cli import build_parser
    from htfl.workstation.config.experiment import experiment_from_dict, load_experiment
    from htfl.workstation.simulation import cli
    from htfl.workstation.simulation.runner import SimulationSettings, backend_config

    path = with_simulation(
        tmp_path,
        'clients = 8\nclient_state = "disk"\ncpus_per_client = 0.5\nray_address = "HEAD:6379"\n',
    )
    exp = load_experiment(path)
    parse = build_parser().parse_args
    plain = parse(["run", str(path)])
    assert cli.wanted(plain, exp) and cli.option_problems(plain, exp) == []
    assert cli.settings(plain, exp) == SimulationSettings(8, "disk", 0.5, "HEAD:6379", 0.0)
    args = parse(
        ["run", str(path), "--simulate", "12", "--client-state", "memory"]
        + ["--gpus-per-client", "0.25"]
    )
    ran = cli.effective(args, exp)
    assert ran.simulation.clients == 12 and ran.simulation.client_state == "memory"
    assert ran.simulation.cpus_per_client == 0.5  # not given: the file's
    assert ran.simulation.gpus_per_client == 0.25
    assert backend_config(cli.settings(args, exp)) == {
        "client_resources": {"num_cpus": 0.5, "num_gpus": 0.25},
        "init_args": {"log_to_driver": False, "address": "HEAD:6379"},
    }
    # experiment.json is the resolved experiment: it reads back to what ran
    record = experiment_from_dict(ran.to_dict(), "experiment.json")
    assert record.simulation == ran.simulation
    assert ran.to_dict()["simulation"]["clients"] == 12
    # a file without [simulation] runs on a fleet, and its companions need --simulate
    fleet = load_experiment(QUICKSTART)
    assert fleet.simulation.clients == 0
    lone = parse(["run", str(QUICKSTART), "--cpus-per-client", "2"])
    assert not cli.wanted(lone, fleet)
    assert cli.option_problems(lone, fleet) == [
        "--cpus-per-client needs --simulate N (or [simulation] clients)"
    ]
