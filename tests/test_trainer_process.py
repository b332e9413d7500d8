"""The trainer split: the channel's frames, a trainer process answering an agent, and what a
trainer that is missing, cannot start, hangs or dies becomes (an error naming it, never a hang).

The trainer processes here run the agent's own interpreter (fast) or interpreters without torch;
the fleet test (tests/integration/test_trainer_fleet.py) runs one in a separate venv without
flwr.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htfl import protocol
from htfl.device import trainer_channel as channel
from htfl.device.client_runtime import ClientRuntime
from htfl.device.remote_trainer import RemoteTrainer, TrainerFailed
from htfl.device.trainer import RunNotSetUp, Trainer
from tests.support.device_runtime import RUN_ID, SETUP, call, msg, pin_task_identity
from tests.support.trainer_venv import bare_venv

ROOT = Path(__file__).resolve().parents[1]


# --- the channel -------------------------------------------------------------------------------
def test_a_message_crosses_the_channel_intact() -> None:
    a, b = socket.socketpair()
    with a, b:
        arrays = {
            "w": np.arange(12, dtype=np.float32).reshape(3, 4),
            "labels": np.array([3, 1, 2], dtype=np.int64),
            "empty": np.zeros((0, 5), dtype=np.float64),
        }
        channel.send(a, {"op": "train", "run_id": 7, "config": {"lr": 0.1, "tags": ["x"]}}, arrays)
        channel.send(a, {"op": "facts"})
        header, got = channel.receive(b)
        assert header == {"op": "train", "run_id": 7, "config": {"lr": 0.1, "tags": ["x"]}}
        assert got.keys() == arrays.keys()
        for name, value in arrays.items():
            assert got[name].dtype == value.dtype and np.array_equal(got[name], value)
        assert channel.receive(b) == ({"op": "facts"}, {})  # frames do not run together


def test_a_large_payload_crosses_in_one_message() -> None:
    """Bigger than any socket buffer: the reader collects the whole frame."""
    a, b = socket.socketpair()
    big = np.random.default_rng(0).standard_normal(3_000_000).astype(np.float32)  # 12 MB
    with a, b:
        import threading

        sender = threading.Thread(target=channel.send, args=(a, {"op": "x"}, {"big": big}))
        sender.start()
        _, got = channel.receive(b)
        sender.join()
    assert np.array_equal(got["big"], big)


def test_a_closed_peer_and_corrupt_frames_are_errors_not_hangs() -> None:
    a, b = socket.socketpair()
    with b:
        a.sendall(channel.encode({"op": "x"})[:10])  # half a frame, then the peer is gone
        a.close()
        with pytest.raises(channel.ChannelClosed):
            channel.receive(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall((2**63).to_bytes(8, "big"))
        with pytest.raises(channel.ChannelError, match="corrupt length"):
            channel.receive(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(len(b"[1]").to_bytes(8, "big") + b"[1]" + (0).to_bytes(8, "big"))
        with pytest.raises(channel.ChannelError, match="not an object"):
            channel.receive(b)


def test_arrays_that_would_need_pickle_are_refused() -> None:
    """Loading runs no code: an object array (pickled by np.savez) is refused on receipt."""
    body = channel.encode({"op": "x"}, {"obj": np.array([{"a": 1}], dtype=object)})
    a, b = socket.socketpair()
    with a, b:
        a.sendall(body)
        with pytest.raises(channel.ChannelError, match="bad arrays"):
            channel.receive(b)


# --- a trainer process -------------------------------------------------------------------------
def _remote(tmp_path: Path, python: str = sys.executable, **kw) -> RemoteTrainer:
    return RemoteTrainer(python, "jetson-nano", "nano-01", tmp_path, torch_threads=1, **kw)


def test_a_trainer_process_trains_like_the_agent_and_keeps_its_state(tmp_path: Path) -> None:
    """Same seed, same numbers whether the trainer is this process or another one; the model
    stays in the trainer process between rounds (round 2 continues from round 1)."""
    local = Trainer("jetson-nano", "nano-01", tmp_path / "local", torch_threads=1)
    remote = _remote(tmp_path / "remote")
    try:
        assert remote.facts()["trainer_executable"] == sys.executable
        assert remote.facts()["torch"] == local.facts()["torch"]
        for trainer in (local, remote):
            info, metrics = trainer.setup(RUN_ID, SETUP)
            assert metrics["num_train"] > 0 and info["label_counts"]
        uploads = []
        for _round in range(2):
            up_local, m_local = local.train(RUN_ID, {})
            up_remote, m_remote = remote.train(RUN_ID, {})
            assert m_remote["train_loss"] == m_local["train_loss"]
            assert up_local.keys() == up_remote.keys()
            for k in up_local:
                assert np.array_equal(up_local[k], up_remote[k])
            uploads.append(up_remote)
        assert not np.array_equal(uploads[0]["prototypes"], uploads[1]["prototypes"])
        ev_local, ev_remote = local.evaluate(RUN_ID, {}), remote.evaluate(RUN_ID, {})
        for key in ("test_accuracy", "test_loss", "num_test"):
            assert ev_remote[key] == ev_local[key]
        with pytest.raises(RunNotSetUp, match=f"run {RUN_ID + 1}: train before train.setup"):
            remote.train(RUN_ID + 1, {})
        pid = remote.proc.pid if remote.proc else None
    finally:
        remote.stop()
    assert pid is not None and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().split()[2] != "Z"


def test_a_missing_interpreter_is_an_error_naming_it(tmp_path: Path) -> None:
    remote = _remote(tmp_path, python=str(tmp_path / "no" / "python3.10"))
    with pytest.raises(TrainerFailed, match=r"trainer_python '.*no/python3.10' cannot run"):
        remote.setup(RUN_ID, SETUP)


def test_an_interpreter_without_the_trainers_packages_is_an_error_saying_so(
    tmp_path: Path,
) -> None:
    python = bare_venv(tmp_path / "bare")
    remote = _remote(tmp_path, python=str(python))
    with pytest.raises(TrainerFailed, match="exited with status 1 during start.*No module named"):
        remote.facts()
    assert remote.proc is None


def test_a_trainer_that_never_says_ready_is_stopped_after_the_start_timeout(
    tmp_path: Path,
) -> None:
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 600\n")
    silent.chmod(0o755)
    remote = _remote(tmp_path, python=str(silent), start_timeout=1.0)
    remote.spawn()
    assert remote.proc is not None
    pid = remote.proc.pid
    with pytest.raises(TrainerFailed, match="did not start within 1 s"):
        remote.facts()
    assert not _alive(pid)


def test_a_trainer_that_dies_is_an_error_then_a_fresh_trainer(tmp_path: Path) -> None:
    remote = _remote(tmp_path)
    try:
        remote.setup(RUN_ID, SETUP)
        assert remote.proc is not None
        os.kill(remote.proc.pid, signal.SIGKILL)
        with pytest.raises(TrainerFailed, match=r"exited with status -9 during train"):
            remote.train(RUN_ID, {})
        # the next request starts a new trainer, which has no runs: setup again, then train
        with pytest.raises(RunNotSetUp, match=r"before train.setup \(trainer process .* -9"):
            remote.train(RUN_ID, {})
        remote.setup(RUN_ID, SETUP)
        _, metrics = remote.train(RUN_ID, {})
        assert metrics["train_loss"] > 0
    finally:
        remote.stop()


# --- the agent's runtime with a trainer process --------------------------------------------------
def test_the_runtime_forwards_messages_to_a_trainer_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_task_identity(monkeypatch)
    runtime = ClientRuntime(
        "jetson-nano", "nano-01", 1, data_dir=tmp_path, trainer_python=sys.executable
    )
    runtime.start()
    try:
        hello = protocol.read_config(call(runtime, msg(protocol.HELLO)))
        assert hello["trainer_executable"] == sys.executable and "cuda_available" in hello
        setup = call(runtime, msg(protocol.SETUP, SETUP))
        assert protocol.read_metrics(setup)["num_train"] > 0
        reply = call(runtime, msg(protocol.TRAIN, {"round": 1}))
        assert protocol.read_payload(reply)["prototypes"].shape[1] == SETUP["feature_dim"]
        assert protocol.read_metrics(reply)["train_loss"] > 0
        with pytest.raises(AttributeError, match="trainer process"):
            _ = runtime.runs
    finally:
        runtime.close()


def test_a_missing_trainer_still_answers_hello_and_fails_setup_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_task_identity(monkeypatch)
    runtime = ClientRuntime("jetson-nano", "nano-01", 1, data_dir=tmp_path, trainer_python="/nope")
    runtime.start()  # logged, not raised: the agent still joins and says what is wrong
    hello = protocol.read_config(call(runtime, msg(protocol.HELLO)))
    assert "trainer_python '/nope' cannot run" in hello["trainer_error"]
    with pytest.raises(TrainerFailed, match="'/nope'"):
        call(runtime, msg(protocol.SETUP, SETUP))


# --- the trainer side in the vendor's Python ---------------------------------------------------
#: Runs a trainer's requests with flwr unimportable; prints the htfl modules that were loaded.
TRAINER_MODULES = """
import importlib.abc, json, sys

class NoFlower(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "flwr" or name.startswith("flwr."):
            raise ImportError("flwr is not installed in the trainer's Python")

sys.meta_path.insert(0, NoFlower())
from pathlib import Path
from htfl.device.trainer import Trainer
from htfl.device.trainer_process import handle

trainer = Trainer("jetson-nano", "nano-01", Path(sys.argv[2]), torch_threads=1)
handle(trainer, {"op": "setup", "run_id": 1, "config": json.loads(sys.argv[1])}, {})
reply, upload = handle(trainer, {"op": "train", "run_id": 1}, {})
handle(trainer, {"op": "evaluate", "run_id": 1}, upload)
assert not [m for m in sys.modules if m.split(".")[0] == "flwr"]
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "htfl" and getattr(m, "__file__", None))))
"""


@pytest.fixture(scope="module")
def trainer_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The source files a trainer process loads to set up, train and evaluate a round."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            TRAINER_MODULES,
            json.dumps(SETUP),
            str(tmp_path_factory.mktemp("d")),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    files = [Path(f) for f in json.loads(out.stdout.strip().splitlines()[-1])]
    assert ROOT / "htfl" / "device" / "trainer_process.py" in files
    return files


#: Names the standard library gained in Python 3.11 ("What's New In Python 3.11",
#: https://docs.python.org/3/whatsnew/3.11.html), by module, as far as a trainer could use them.
NEW_IN_3_11 = {
    "typing": {
        "Self",
        "LiteralString",
        "Never",
        "assert_never",
        "assert_type",
        "reveal_type",
        "dataclass_transform",
        "Required",
        "NotRequired",
        "TypeVarTuple",
        "Unpack",
        "get_overloads",
        "clear_overloads",
    },
    "enum": {
        "StrEnum",
        "ReprEnum",
        "EnumCheck",
        "FlagBoundary",
        "verify",
        "member",
        "nonmember",
        "property",
        "global_enum",
        "show_flag_values",
    },
    "datetime": {"UTC"},
    "hashlib": {"file_digest"},
    "contextlib": {"chdir"},
    "operator": {"call"},
    "asyncio": {"TaskGroup", "Runner", "timeout", "Barrier"},
    "logging": {"getLevelNamesMapping"},
    "tomllib": {"*"},
    "wsgiref.types": {"*"},
}


def _stdlib_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from M import name`` and ``import M`` not guarded by an
    ``except ImportError`` fallback."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers
        ):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "*") for a in node.names]
    return found


def python_3_10() -> str | None:
    """A Python 3.10 here, if any: $HTFL_PYTHON310, python3.10 on PATH, or pyenv's."""
    for candidate in (
        os.environ.get("HTFL_PYTHON310"),
        shutil.which("python3.10"),
        *sorted(str(p) for p in Path("/root/.pyenv/versions").glob("3.10*/bin/python")),
    ):
        if candidate and Path(candidate).exists() and _version(candidate) == "3.10":
            return candidate
    return None


def _version(python: str) -> str:
    """``major.minor`` of an interpreter ('' when it does not run: e.g. a pyenv shim)."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_the_trainer_side_is_python_3_10_code(trainer_files: list[Path]) -> None:
    """JetPack 6's system Python is 3.10. Always: the grammar (ast, feature_version 3.10) and no
    standard-library name that 3.11 added (the list above). Where a real 3.10 interpreter is
    found (this machine's pyenv; CI's clean machine has none): it byte-compiles every file and
    resolves every standard-library import. (Python 3.8, JetPack 5, is not supported: the trainer
    side uses 3.9/3.10 runtime features: builtin generics in aliases, ``X | Y``, zip(strict=))."""
    for path in trainer_files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
        for module, name in _stdlib_imports(path):
            added = NEW_IN_3_11.get(module, set())
            assert name not in added and "*" not in added, f"{path}: {module}.{name} is 3.11+"
    python = python_3_10()
    if python is None:
        return
    check = (
        "import importlib, json, sys\n"
        "for path, imports in json.loads(sys.argv[1]):\n"
        "    compile(open(path).read(), path, 'exec')\n"
        "    for module, name in imports:\n"
        "        top = module.split('.')[0]\n"
        "        if top not in sys.stdlib_module_names:\n"
        "            continue\n"
        "        mod = importlib.import_module(module)\n"
        "        if name != '*' and not hasattr(mod, name):\n"
        "            importlib.import_module(module + '.' + name)  # a submodule\n"
        "print(sys.version_info[:2])\n"
    )
    work = [(str(p), _stdlib_imports(p)) for p in trainer_files]
    out = subprocess.run(
        [python, "-c", check, json.dumps(work)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "(3, 10)"
