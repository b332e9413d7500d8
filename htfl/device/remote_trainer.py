"""The agent's side of a trainer process in another interpreter (``--trainer-python``).

Same methods as :class:`htfl.device.trainer.Trainer` (``facts``, ``setup``, ``train``,
``evaluate``), answered by a long-lived :mod:`htfl.device.trainer_process` over a socket pair.
The trainer runs the agent's own htfl code (loaded from the agent's install, so the two can
never be different builds); its interpreter supplies only torch, NumPy and pydantic, e.g.
NVIDIA's CUDA torch in JetPack 6's system Python 3.10.

A trainer that cannot start (no such interpreter, no torch there), does not say ready in time
or dies mid-round is a :class:`TrainerFailed` for that request, which the worker reports as
the device's error row; the next request starts a fresh trainer (its runs are gone, so train
or evaluate then ask for a new setup).
"""

from __future__ import annotations

import collections
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import htfl
from htfl import accelerator
from htfl.device import trainer_channel as channel
from htfl.device.trainer import Arrays, RunNotSetUp

log = logging.getLogger(__name__)

#: Seconds a trainer may take from its start to ``ready`` (importing torch: a few seconds on a
#: board, longer on a cold SD card).
START_TIMEOUT_SECONDS = 300.0

#: Loads htfl from the agent's install into the trainer's interpreter, whatever that has
#: installed (nothing else of the agent's site-packages comes along: no flwr), then serves.
BOOT = """import importlib.util, sys
spec = importlib.util.spec_from_file_location(
    "htfl", {init!r}, submodule_search_locations=[{pkg!r}]
)
module = importlib.util.module_from_spec(spec)
sys.modules["htfl"] = module
spec.loader.exec_module(module)
from htfl.device.trainer_process import main
sys.exit(main(sys.argv[1:]))
"""

#: error types that keep their meaning across the channel
_KNOWN_ERRORS: dict[str, type[Exception]] = {
    "RunNotSetUp": RunNotSetUp,
    "AcceleratorError": accelerator.AcceleratorError,
}


class TrainerFailed(RuntimeError):
    """The trainer process is missing, did not start, or died; names its interpreter."""


def boot_argv(python: str, fd: int, options: list[str]) -> list[str]:
    pkg = Path(htfl.__file__).resolve().parent
    code = BOOT.format(init=str(pkg / "__init__.py"), pkg=str(pkg))
    return [python, "-c", code, "--fd", str(fd), *options]


class RemoteTrainer:
    def __init__(
        self,
        python: str,
        device_class: str,
        device_name: str,
        data_dir: Path,
        *,
        torch_threads: int = 0,
        training_device: str = "auto",
        state_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        self.python = python
        self.start_timeout = start_timeout
        self.options = [
            "--device-class",
            device_class,
            "--device-name",
            device_name,
            "--data-dir",
            str(data_dir),
            "--torch-threads",
            str(torch_threads),
            "--training-device",
            training_device,
            *(["--state-dir", str(state_dir)] if state_dir is not None else []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._facts: dict[str, Any] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_reader: threading.Thread | None = None
        self._lock = threading.Lock()
        #: why the trainer was last replaced (its runs went with it), for the next RunNotSetUp
        self._lost: str | None = None

    # --- process ---------------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the trainer (not waiting for it): its imports overlap the agent's start."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return
            self._lost = f"the trainer process ({self.python}) had exited with status {code}"
        self._close()
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                boot_argv(self.python, theirs.fileno(), self.options),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as err:  # no such interpreter, not executable
            ours.close()
            raise TrainerFailed(f"trainer_python {self.python!r} cannot run: {err}") from None
        finally:
            theirs.close()  # the child holds its own copy: its exit is our end-of-file
        self.sock = ours
        self._facts = None
        self._stderr_tail.clear()
        assert self.proc.stderr is not None
        self._stderr_reader = threading.Thread(
            target=self._relay_stderr, args=(self.proc.stderr,), daemon=True
        )
        self._stderr_reader.start()

    def _relay_stderr(self, stream: IO[bytes]) -> None:
        """The trainer's log goes to the agent's log, and its last lines into any error."""
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self._stderr_tail.append(line)
            print(f"[trainer] {line}", file=sys.stderr, flush=True)

    def _ready(self) -> socket.socket:
        self.spawn()
        assert self.sock is not None
        if self._facts is None:
            self.sock.settimeout(self.start_timeout)
            try:
                header, _ = channel.receive(self.sock)
            except TimeoutError:
                self._close(wait=0)
                raise TrainerFailed(
                    f"trainer ({self.python}) did not start within {self.start_timeout:.0f} s"
                ) from None
            except (channel.ChannelClosed, OSError) as err:
                raise self._died("start", err) from None
            self.sock.settimeout(None)  # a round may train for as long as it needs
            self._facts = dict(header.get("info") or {})
            log.info(
                "trainer ready: Python %s at %s, torch %s",
                self._facts.get("trainer_python"),
                self.python,
                self._facts.get("torch"),
            )
        return self.sock

    def _died(self, op: str, err: BaseException) -> TrainerFailed:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
        if self._stderr_reader is not None:
            self._stderr_reader.join(2)
        tail = " | ".join(line for line in list(self._stderr_tail)[-3:] if line.strip())
        self._close()
        status = "still running" if code is None else f"exited with status {code}"
        failed = f"trainer process ({self.python}) {status} during {op}: {tail or err}"[:1000]
        self._lost = failed
        return TrainerFailed(failed)

    def _close(self, wait: float = 10.0) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.wait(wait)  # it exits at end-of-file on its socket
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        self._facts = None

    def stop(self) -> None:
        with self._lock:
            self._close()

    # --- requests --------------------------------------------------------------------------
    def _call(
        self, header: dict[str, Any], arrays: Arrays | None = None
    ) -> tuple[dict[str, Any], Arrays]:
        op = str(header["op"])
        with self._lock:
            sock = self._ready()
            try:
                channel.send(sock, header, arrays)
                reply, out = channel.receive(sock)
            except (channel.ChannelClosed, OSError) as err:
                raise self._died(op, err) from None
        if "error" in reply:
            kind = _KNOWN_ERRORS.get(str(reply.get("error_type")), TrainerFailed)
            if kind is TrainerFailed:
                raise TrainerFailed(f"{reply.get('error_type')}: {reply['error']}")
            if kind is RunNotSetUp and self._lost:  # say why the run is gone
                raise RunNotSetUp(f"{reply['error']} ({self._lost}; a new one has no runs)")
            raise kind(reply["error"])
        return reply, out

    def facts(self) -> dict[str, Any]:
        with self._lock:
            self._ready()
            assert self._facts is not None
            return dict(self._facts)

    def setup(self, run_id: int, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        reply, _ = self._call({"op": "setup", "run_id": run_id, "config": cfg})
        self._lost = None
        return reply["info"], reply["metrics"]

    def train(self, run_id: int, payload: Arrays) -> tuple[Arrays, dict[str, float]]:
        reply, upload = self._call({"op": "train", "run_id": run_id}, payload)
        return upload, reply["metrics"]

    def evaluate(self, run_id: int, payload: Arrays) -> dict[str, float]:
        reply, _ = self._call({"op": "evaluate", "run_id": run_id}, payload)
        return dict(reply["metrics"])
