"""`htfl run` checks the experiment file, then the files it names, before anything starts.

The real command in a subprocess; both steps fail with exit status 2, every problem on its own
line naming the file and the key, and no results directory or fleet is created.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXPERIMENT = """
[experiment]
id = "checks"
rounds = 1
[algorithm]
name = "fedktl"
[algorithm.params]
generator_path = "{generator}"
[data]
dataset = "digits"
manifest = "{manifest}"
[devices]
classes = {{ "jetson-nano" = 2 }}
"""


def htfl_run(exp: Path, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "htfl", "run", str(exp), "--local-fleet", "2"]
        + ["--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_empty_file_names_each_missing_section(tmp_path: Path) -> None:
    exp = tmp_path / "empty.toml"
    exp.write_text("")
    result = htfl_run(exp, tmp_path / "r")
    assert result.returncode == 2
    for section in ("experiment", "algorithm", "data", "devices"):
        assert f"  - {section}: required section is missing" in result.stderr
    assert not (tmp_path / "r").exists()


def test_files_the_experiment_names_are_checked_before_the_run(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    missing = tmp_path / "absent"
    exp.write_text(
        EXPERIMENT.format(generator=missing / "g.pt", manifest=missing / "manifest.json")
    )
    result = htfl_run(exp, tmp_path / "r")
    assert result.returncode == 2, result.stderr[-3000:]
    text = result.stderr
    assert f"invalid experiment file {exp}" in text
    assert "- data.manifest: " in text and "no such manifest" in text
    assert f"- algorithm.params.generator_path: cannot read '{missing}/g.pt'" in text
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_what_is_not_an_experiment_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    noise = tmp_path / "noise.toml"
    noise.write_bytes(bytes(range(256)) * 4096)  # 1 MiB that is not UTF-8
    for path, why in [(directory, "is a directory"), (noise, "not a text file")]:
        result = htfl_run(path, tmp_path / "r")
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"invalid experiment file {path}" in result.stderr and why in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_run_options_that_cannot_work_are_refused_before_anything_starts(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(
        '[experiment]\nid = "options"\nrounds = 1\n[algorithm]\nname = "fedavg"\n'
        '[data]\ndataset = "digits"\n[devices]\nclasses = { "jetson-nano" = 3 }\n'
    )
    results_file = tmp_path / "results-file"
    results_file.write_text("")
    result = htfl_run(exp, results_file)  # and --local-fleet 2 for 3 selected devices
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"--results {results_file}: is a file, not a directory" in result.stderr
    assert "--local-fleet 2: the experiment selects 3 devices ([devices])" in result.stderr
    assert "Traceback" not in result.stderr and "starting a local fleet" not in result.stderr


def test_a_local_fleet_for_devices_chosen_by_name_is_refused_in_plain_words(tmp_path: Path) -> None:
    exp = tmp_path / "names.toml"
    exp.write_text(
        '[experiment]\nid = "names"\nrounds = 1\n[algorithm]\nname = "fedavg"\n'
        '[data]\ndataset = "digits"\n[devices]\nnames = ["a", "b"]\n'
    )
    result = htfl_run(exp, tmp_path / "r")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--local-fleet needs [devices] classes (counts per class), not names" in result.stderr
    assert not (tmp_path / "r").exists()
