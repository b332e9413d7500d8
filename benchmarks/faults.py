"""Fault injection: what `htfl run` does when a part of the testbed fails, on a local fleet.

Each fault runs a small real experiment (`htfl run --local-fleet`, a real SuperLink and real
agents), injects the fault once the first round is recorded, and, where the fault ends the run,
resumes it with `htfl run --resume`. One table row per fault: rounds completed, result rows
expected / written / duplicated, wall time, and the processes the runs started that are still
alive afterwards (every descendant of each `htfl run` is watched while it runs, including what
Flower detaches into its own session). "bad inputs" runs the table of bad input cases
(:data:`BAD_INPUTS`, also a test: tests/test_bad_inputs.py) and counts those refused as
promised (exit 2, message, nothing started or written).

Usage (from the repository root):
    python -m benchmarks.faults [--rounds 4] [--deadline 20] [--freeze 40] [--cut 30]
                                [--faults a,b,...]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.experiments import cnn4_experiment

REPO = Path(__file__).resolve().parents[1]


def experiment_text(experiment_id: str, rounds: int, deadline: float) -> str:
    """The experiment every fault runs: two devices, FedAvg on a sliver of digits."""
    return cnn4_experiment(
        experiment_id,
        {"jetson-nano": 1, "orange-pi-5b": 1},
        rounds=rounds,
        eval_every=1,
        deadline_seconds=deadline,
        min_replies=1,
        tail="[telemetry]\nserver_metrics_port = -1\n",
    )


DEVICES = 2

VALID = experiment_text("bad", rounds=1, deadline=20)


def _with(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


@dataclass(frozen=True)
class BadInput:
    """One bad input to `htfl run`: the experiment file's content (None: give ``path``
    as it is), the options, and what the error must say."""

    name: str
    content: str | bytes | None
    options: tuple[str, ...]
    says: str
    path: str = "exp.toml"  # relative to the case's directory


#: Every bad input `htfl run` must refuse with exit 2 and a message naming the thing, before
#: anything starts and without writing anything. ``{dir}`` in options is the case's directory.
BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("a directory as the experiment file", None, (), "is a directory", path="."),
    BadInput("random bytes", os.urandom(1 << 20), (), "not a text file"),
    BadInput("no such file", None, (), "absent.toml", path="absent.toml"),
    BadInput("an empty file", "", (), "experiment: required section is missing"),
    BadInput("TOML syntax error", "[experiment\nid = 1\n", (), "exp.toml"),
    BadInput("unknown section", VALID + "\n[nonsense]\nx = 1\n", (), "nonsense"),
    BadInput("unknown key", _with("rounds = 1", "rounds = 1\nround = 2"), (), "experiment.round"),
    BadInput("a word for a number", _with("rounds = 1", 'rounds = "ten"'), (), "rounds"),
    BadInput("zero rounds", _with("rounds = 1", "rounds = 0"), (), "rounds"),
    BadInput("unknown method", _with('name = "fedavg"', 'name = "fedmagic"'), (), "fedmagic"),
    BadInput("unknown dataset", _with('"digits"', '"nodata"'), (), "nodata"),
    BadInput(
        "unknown device class", _with('"orange-pi-5b" = 1 }', '"toaster" = 1 }'), (), "toaster"
    ),
    BadInput(
        "min_replies above the devices",
        _with("min_replies = 1", "min_replies = 5"),
        (),
        "min_replies",
    ),
    BadInput(
        "a negative deadline",
        _with("deadline_seconds = 20", "deadline_seconds = -1"),
        (),
        "deadline_seconds",
    ),
    BadInput(
        "a zero setup deadline",
        _with("min_replies = 1", "min_replies = 1\nsetup_deadline_seconds = 0"),
        (),
        "setup_deadline_seconds",
    ),
    BadInput("--results is a file", VALID, ("--results", "{dir}/exp.toml"), "is a file"),
    BadInput("--local-fleet too small", VALID, ("--local-fleet", "1"), "--local-fleet 1"),
    BadInput("--resume of no directory", None, ("--resume", "{dir}/nowhere"), "not a directory"),
    BadInput(
        "--resume of a directory that is no run", None, ("--resume", "{dir}"), "experiment.json"
    ),
    BadInput("an experiment file and --resume", VALID, ("--resume", "{dir}"), "not both"),
)


def _case_argv(case: BadInput, directory: Path) -> list[str]:
    if case.content is not None:
        target = directory / case.path
        if isinstance(case.content, bytes):
            target.write_bytes(case.content)
        else:
            target.write_text(case.content)
    options = [o.replace("{dir}", str(directory)) for o in case.options]
    give_file = case.content is not None or "--resume" not in case.options
    return [
        "run",
        *([str(directory / case.path)] if give_file else []),
        *options,
        *(["--results", str(directory / "results")] if "--results" not in options else []),
    ]


def run_htfl(argv: list[str]) -> tuple[int, str]:
    """``htfl ARGV`` in a fresh process: its exit status and stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", *argv], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    return proc.returncode, proc.stderr


def check_bad_input(
    case: BadInput, directory: Path, runner: Callable[[list[str]], tuple[int, str]] = run_htfl
) -> list[str]:
    """Run ``htfl run`` on ``case`` (with ``runner``); what it did wrong (empty: all as
    promised: exit 2, the message, no traceback, nothing written in the case's directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = _case_argv(case, directory)
    before = set(os.listdir(directory))
    code, stderr = runner(argv)
    wrong = []
    if code != 2:
        wrong.append(f"exit {code}, not 2")
    if case.says not in stderr:
        wrong.append(f"stderr does not say {case.says!r}: {stderr[-600:]!r}")
    if "Traceback" in stderr:
        wrong.append("a traceback")
    if set(os.listdir(directory)) - before:
        wrong.append(f"wrote {sorted(set(os.listdir(directory)) - before)}")
    return wrong


# --- running htfl run and watching what it starts ----------------------------------------


@dataclass
class Watched:
    """One `htfl run` process and every descendant seen while it ran."""

    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watched:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "htfl", *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            time.sleep(0.3)

    def find(self, needle: str) -> psutil.Process | None:
        """A live descendant whose command line contains ``needle``."""
        for p in list(self.seen.values()):
            with contextlib.suppress(psutil.Error):
                if p.is_running() and needle in " ".join(p.cmdline()):
                    return p
        return None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            return self.proc.wait(60) or -1
        finally:
            time.sleep(1.0)
            self._stop.set()

    def leftovers(self) -> list[psutil.Process]:
        alive = []
        for p in self.seen.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        return alive


def slug(text: str) -> str:
    """An experiment id / file name for a fault's name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def wait_for_round(results: Path, rnd: int, timeout: float, run: Watched) -> bool:
    end = time.monotonic() + timeout
    progress = results / "progress.jsonl"
    while time.monotonic() < end and run.proc is not None and run.proc.poll() is None:
        with contextlib.suppress(OSError):
            for line in progress.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    ev = json.loads(line)
                    if ev.get("event") == "round" and ev["round"] >= rnd:
                        return True
                    if ev.get("event") == "end":
                        return False
        time.sleep(0.3)
    return False


def events(results: Path, kind: str) -> list[dict]:
    out = []
    with contextlib.suppress(OSError):
        for line in (results / "progress.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("event") == kind:
                    out.append(ev)
    return out


@dataclass
class Outcome:
    fault: str
    rounds: int
    rounds_completed: int
    rows_expected: int
    rows_written: int
    rows_duplicated: int
    wall_seconds: float
    leftover_processes: int
    exits: list[int]
    note: str = ""
    #: checks that failed (bad inputs not refused as promised)
    failures: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.rounds_completed == self.rounds
            and self.rows_written == self.rows_expected
            and self.rows_duplicated == 0
            and self.leftover_processes == 0
            and self.failures == 0
        )


class Bench:
    def __init__(
        self, workdir: Path, rounds: int, deadline: float, freeze: float, cut: float = 30.0
    ) -> None:
        self.workdir = workdir
        self.rounds = rounds
        self.deadline = deadline
        self.freeze = freeze
        self.cut = cut
        self.extra: list[subprocess.Popen] = []  # processes a fault started itself

    def experiment(self, fault: str, rounds: int) -> tuple[Path, Path]:
        fid = slug(fault)
        exp = self.workdir / f"{fid}.toml"
        exp.write_text(experiment_text(fid, rounds, self.deadline))
        return exp, self.workdir / "results" / fid

    def run(self, argv: list[str], fault: str) -> Watched:
        return Watched(argv, self.workdir / f"{slug(fault)}.log").start()

    def outcome(
        self,
        fault: str,
        results: Path,
        runs: list[Watched],
        exits: list[int],
        started: float,
        note: str = "",
    ) -> Outcome:
        rows = []
        with contextlib.suppress(OSError), open(results / "rounds.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        pairs = Counter((r["round"], r["device"]) for r in rows)
        leftovers = [p for w in runs for p in w.leftovers()]
        for proc in self.extra:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        self.extra.clear()
        for p in leftovers:  # never leave them behind, but count them
            with contextlib.suppress(psutil.Error):
                p.kill()
        summary = {}
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads((results / "summary.json").read_text())
        rounds = self.rounds
        with contextlib.suppress(OSError, ValueError, KeyError):
            rounds = json.loads((results / "experiment.json").read_text())["experiment"]["rounds"]
        return Outcome(
            fault,
            rounds,
            int(
                summary.get("last_completed_round")
                or max((int(r["round"]) for r in rows), default=0)
            ),
            rounds * DEVICES,
            len(rows),
            sum(n - 1 for n in pairs.values() if n > 1),
            time.monotonic() - started,
            len(leftovers),
            exits,
            note,
        )

    def _first_run(self, fault: str, rounds: int | None = None) -> tuple[Path, Watched]:
        exp, results = self.experiment(fault, rounds or self.rounds)
        run = self.run(
            ["run", str(exp), "--local-fleet", str(DEVICES), "--results", str(results.parent)],
            fault,
        )
        if not wait_for_round(results, 1, 600, run):
            tail = run.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{fault}: round 1 never came; {run.log} ends:\n{tail}")
        return results, run

    def _agent(self, run: Watched, name: str) -> psutil.Process:
        agent = run.find(f"--name {name}")
        assert agent is not None, f"no agent {name}"
        return agent

    # --- the faults --------------------------------------------------------------------
    def device_killed(self) -> Outcome:
        t0 = time.monotonic()
        results, run = self._first_run("device killed")
        os.killpg(self._agent(run, "orange-pi-5b-01").pid, signal.SIGKILL)
        code = run.wait(900)
        return self.outcome("device killed", results, [run], [code], t0)

    def device_frozen(self) -> Outcome:
        t0 = time.monotonic()
        results, run = self._first_run("device frozen")
        agent = self._agent(run, "orange-pi-5b-01")
        os.killpg(agent.pid, signal.SIGSTOP)
        time.sleep(self.freeze)
        os.killpg(agent.pid, signal.SIGCONT)
        code = run.wait(900)
        log = results / "fleet-logs" / "orange-pi-5b-01.log"
        stale = log.read_text(errors="replace").count("dropped, not trained") if log.exists() else 0
        return self.outcome(
            f"device frozen {self.freeze:.0f} s",
            results,
            [run],
            [code],
            t0,
            f"stale tasks dropped: {stale}",
        )

    def _kill_and_resume(self, fault: str, needle: str) -> Outcome:
        t0 = time.monotonic()
        results, run = self._first_run(fault)
        victim = run.find(needle)
        assert victim is not None, f"no {needle} process"
        victim.kill()
        first = run.wait(600)
        again = self.run(["run", "--resume", str(results), "--local-fleet", str(DEVICES)], fault)
        second = again.wait(900)
        summary = json.loads((results / "summary.json").read_text())
        return self.outcome(
            fault,
            results,
            [run, again],
            [first, second],
            t0,
            f"resumed after round {summary.get('resumed_after_round')}",
        )

    def serverapp_killed(self) -> Outcome:
        return self._kill_and_resume("ServerApp killed + resume", "flwr-serverapp")

    def superlink_killed(self) -> Outcome:
        return self._kill_and_resume("SuperLink killed + resume", "flower-superlink")

    def agent_restarted(self) -> Outcome:
        t0 = time.monotonic()
        # rounds enough for the agent to boot again (torch import, minutes on a loaded host)
        results, run = self._first_run("agent restarted", max(self.rounds, 8))
        agent = self._agent(run, "orange-pi-5b-01")
        argv, env = agent.cmdline(), agent.environ()
        os.killpg(agent.pid, signal.SIGKILL)
        log = open(results / "fleet-logs" / "orange-pi-5b-01.log", "ab")  # noqa: SIM115
        self.extra.append(
            subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        log.close()
        code = run.wait(900)
        back = events(results, "rejoined")
        note = (
            f"rejoined with its model of round {back[0]['resumed_round']}"
            if back
            else "did not rejoin"
        )
        out = self.outcome("agent restarted with its model", results, [run], [code], t0, note)
        return out

    def uninvited_node(self) -> Outcome:
        t0 = time.monotonic()
        # rounds enough for the stranger to boot (torch, flwr) and join while the run goes on:
        # 8 rounds of ~3 s were not enough for it on a loaded CI machine
        results, run = self._first_run("uninvited node", max(self.rounds, 20))
        agent = self._agent(run, "jetson-nano-01")
        argv, env = agent.cmdline(), agent.environ()
        port = argv.index("--metrics-port") + 1
        argv[port] = "0"  # its own port; the same name as a participant
        log = open(self.workdir / "uninvited.log", "ab")  # noqa: SIM115
        self.extra.append(
            subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        log.close()
        code = run.wait(900)
        ignored = events(results, "ignored_node")
        note = f"ignored: {ignored[0]['reason']}" if ignored else "NOT ignored"
        return self.outcome(
            "uninvited node (a participant's name)", results, [run], [code], t0, note
        )

    def link_cut(self) -> Outcome:
        """The device's link to the SuperLink (its relay, the local fleet's link emulation) is
        cut for ``self.cut`` seconds once round 1 is recorded, then comes back."""
        from htfl.workstation.fleet.relay import cut_link

        t0 = time.monotonic()
        fault = f"link cut {self.cut:.0f} s"
        # rounds enough for the device to miss some and come back for others
        rounds = max(self.rounds, 3 + int(self.cut // self.deadline) + 2)
        results, run = self._first_run(fault, rounds)
        name = "orange-pi-5b-01"
        cut_at = len(events(results, "round"))
        cut_link(results / "fleet-logs" / "relay.json", name, self.cut)
        code = run.wait(900)
        rows = []
        with contextlib.suppress(OSError), open(results / "rounds.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["device"] == name]
        missed = [int(r["round"]) for r in rows if r["status"] in ("late", "error")]
        back = [int(r["round"]) for r in rows if r["status"] == "ok" and int(r["round"]) > cut_at]
        # nobody restarts the agent here: back means the same process, with its own model
        rejoined = events(results, "rejoined")
        note = (
            f"cut after round {cut_at}; missed rounds {missed or 'none'}; "
            + (f"back in round {back[0]}" if back else "NOT back")
            + (" (set up again on a new node)" if rejoined else "")
        )
        return self.outcome(fault, results, [run], [code], t0, note)

    def bad_inputs(self) -> Outcome:
        t0 = time.monotonic()
        wrong = {}
        for i, case in enumerate(BAD_INPUTS):
            if problems := check_bad_input(case, self.workdir / "bad" / str(i)):
                wrong[case.name] = problems
                print(f"bad input {case.name!r}: {problems}", file=sys.stderr)
        n = len(BAD_INPUTS)
        return Outcome(
            f"{n} bad inputs",
            0,
            0,
            0,
            0,
            0,
            time.monotonic() - t0,
            0,
            [],
            f"refused as promised: {n - len(wrong)}/{n}",
            failures=len(wrong),
        )


FAULTS: dict[str, Callable[[Bench], Outcome]] = {
    "device-killed": Bench.device_killed,
    "device-frozen": Bench.device_frozen,
    "serverapp-killed": Bench.serverapp_killed,
    "superlink-killed": Bench.superlink_killed,
    "agent-restarted": Bench.agent_restarted,
    "uninvited-node": Bench.uninvited_node,
    "link-cut": Bench.link_cut,
    "bad-inputs": Bench.bad_inputs,
}


def table(outcomes: list[Outcome]) -> str:
    head = ("fault", "rounds", "rows exp/written/dup", "wall s", "leftover", "exits", "note")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for o in outcomes:
        lines.append(
            " | ".join(
                (
                    o.fault,
                    f"{o.rounds_completed}/{o.rounds}",
                    f"{o.rows_expected}/{o.rows_written}/{o.rows_duplicated}",
                    f"{o.wall_seconds:.0f}",
                    str(o.leftover_processes),
                    ",".join(map(str, o.exits)) or "-",
                    o.note,
                )
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--deadline", type=float, default=20.0, help="[devices] deadline_seconds")
    ap.add_argument("--freeze", type=float, default=40.0, help="seconds a device is frozen")
    ap.add_argument("--cut", type=float, default=30.0, help="seconds a device's link is cut")
    ap.add_argument("--faults", default=",".join(FAULTS), help=f"of {', '.join(FAULTS)}")
    args = ap.parse_args(argv)
    chosen = [f for f in args.faults.split(",") if f]
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        ap.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    with tempfile.TemporaryDirectory(prefix="htfl-faults-") as tmp:
        bench = Bench(Path(tmp), args.rounds, args.deadline, args.freeze, args.cut)
        outcomes = []
        for name in chosen:
            outcome = FAULTS[name](bench)
            print(table([outcome]).splitlines()[-1], file=sys.stderr, flush=True)
            outcomes.append(outcome)
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
