"""``htfl report`` on synthetic results dirs written by the ServerApp's own writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import write_synthetic
from htfl.cli import main
from tests.report.expected import expected_summary, summary_rows


class Done:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def run_report(capsys: pytest.CaptureFixture[str]):
    """``htfl report ARGS`` in this process (a traceback would fail the test): exit status
    and stderr."""

    def run(*args: str | Path) -> Done:
        code = main(["report", *map(str, args)])
        return Done(code, capsys.readouterr().err)

    return run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    return (
        write_synthetic(base / "fedproto-a", rounds=12, devices=6, seed=1),
        write_synthetic(base / "fedproto-b", rounds=4, devices=3, seed=2),
    )


def test_summary_table_equals_the_rows(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    # the first run has dropouts: a mean over only the devices that replied would differ
    assert ",late," in (two_runs[0] / "rounds.csv").read_text()
    rows = summary_rows(out / "index.html")
    assert [r["run"] for r in rows] == ["fedproto-a", "fedproto-b"]
    for row, results in zip(rows, two_runs, strict=True):
        expected = expected_summary(results)
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12), (results.name, key)
    for name in ("accuracy", "energy", "to-target", "round-time", "bytes", "gantt-1", "gantt-2"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and "partial record" not in page


def test_a_stopped_run_renders_what_it_has_marked_partial(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "stopped", rounds=5, devices=3)
    (run / "summary.json").unlink()
    rows = (run / "rounds.csv").read_text()
    (run / "rounds.csv").write_text(rows[: len(rows) - 40])  # killed while writing a row
    progress = (run / "progress.jsonl").read_text()
    (run / "progress.jsonl").write_text(progress[: len(progress) - 10])
    proc = run_report(run)
    assert proc.returncode == 0, proc.stderr
    page = (run / "report" / "index.html").read_text()
    assert "partial record" in page and "last row cut short" in page
    assert "last line cut short" in page


def test_a_corrupt_rows_file_is_named_with_its_line(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "corrupt", rounds=3, devices=2)
    lines = (run / "rounds.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",ok,", ",ok,abc", 1)
    (run / "rounds.csv").write_text("".join(lines))
    proc = run_report(run)
    assert proc.returncode == 2
    assert f"{run / 'rounds.csv'}:3: column round_trip_seconds" in proc.stderr
    assert "Traceback" not in proc.stderr and not (run / "report").exists()


@pytest.mark.parametrize("name", ["experiment.json", "rounds.csv"])
def test_a_missing_file_is_named(tmp_path: Path, name: str, run_report) -> None:
    run = write_synthetic(tmp_path / "missing", rounds=2, devices=2)
    (run / name).unlink()
    proc = run_report(run)
    assert proc.returncode == 2 and f"{run / name}: missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_corrupt_json_file_is_named(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "badjson", rounds=2, devices=2)
    (run / "summary.json").write_text("{not json")
    proc = run_report(run)
    assert proc.returncode == 2 and f"{run / 'summary.json'}: not readable JSON" in proc.stderr


def test_different_datasets_are_refused_side_by_side(tmp_path: Path, run_report) -> None:
    a = write_synthetic(tmp_path / "a", rounds=2, devices=2)
    b = write_synthetic(tmp_path / "b", rounds=2, devices=2)
    exp = json.loads((b / "experiment.json").read_text())
    exp["data"]["dataset"] = "har"
    (b / "experiment.json").write_text(json.dumps(exp))
    proc = run_report(a, b, "--out", tmp_path / "cmp")
    assert proc.returncode == 2
    assert "different datasets" in proc.stderr and "(har)" in proc.stderr
    assert not (tmp_path / "cmp").exists()


def test_an_existing_directory_that_is_not_a_report_is_not_overwritten(
    tmp_path: Path, run_report
) -> None:
    run = write_synthetic(tmp_path / "run", rounds=2, devices=2)
    proc = run_report(run, "--out", run)
    assert proc.returncode == 2 and "not a report directory" in proc.stderr
    assert (run / "rounds.csv").exists()


def test_a_target_outside_zero_one_is_a_usage_error(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "run", rounds=2, devices=2)
    proc = run_report(run, "--target-accuracy", "1.5")
    assert proc.returncode == 2 and "--target-accuracy" in proc.stderr


def _trace(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text("t,watts,volts,amps,meter,scope\n" + "".join(r + "\n" for r in rows))


def test_power_traces_are_drawn_per_device_and_scope(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "traced", rounds=3, devices=2)
    device = "jetson-nano-01"
    _trace(
        run / "power" / f"{device}.csv",
        [f"{1.8e9 + k * 0.1!r},{5.0 + k % 3!r},5.1,,ina3221,board" for k in range(50)]
        + [f"{1.8e9 + k * 0.1!r},{1.0!r},,,ina3221,gpu" for k in range(50)]
        + ["1800000005.0,7.5"],  # cut short by a stop
    )
    assert run_report(run).returncode == 0
    page = (run / "report" / "index.html").read_text()
    assert 'id="power-1"' in page
    svg = (run / "report" / "power-1.svg").read_text()
    assert f"{device} (board)" in svg and f"{device} (gpu)" in svg


def test_a_corrupt_power_trace_is_named(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "badtrace", rounds=2, devices=2)
    _trace(run / "power" / "dev.csv", ["1.0,abc,,,m,board"])
    done = run_report(run)
    assert done.returncode == 2 and f"{run / 'power' / 'dev.csv'}: a t or watts" in done.stderr


def test_modelled_rows_are_said_to_be_modelled(tmp_path: Path, run_report) -> None:
    run = write_synthetic(tmp_path / "simulated", rounds=2, devices=2)
    lines = (run / "rounds.csv").read_text().splitlines()
    lines = [lines[0] + ",modelled"] + [line + ",True" for line in lines[1:]]
    (run / "rounds.csv").write_text("\n".join(lines) + "\n")
    assert run_report(run).returncode == 0
    assert "modelled from their device class" in (run / "report" / "index.html").read_text()
