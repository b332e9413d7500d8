"""The long-lived worker that serves the SuperNode's Runtime API in place of SuperExec.

Stock Flower starts a new ClientApp process for every message. htfl's worker instead stays up
for the life of the agent, so torch, the private model, its optimizer state and the local data
stay in memory between rounds. It speaks the same Runtime API a ``flwr-clientapp`` process
does, reusing Flower's own pull/push helpers, so the SuperNode cannot tell the difference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx
from flwr.app import Context, Error, Message

from htfl.device.instruments import TaskTiming
from htfl.doorbell import RUN_CONFIG_KEY as DOORBELL_KEY
from htfl.doorbell import TOKEN_KEY as DOORBELL_TOKEN_KEY
from htfl.doorbell import port_of
from htfl.flower_adapter import WORKER_RECHECK_SECONDS, SuperNodePacer
from htfl.flower_internals import (
    AcquireTaskRequest,
    ErrorCode,
    HeartbeatSender,
    ProtobufCall,
    ProtobufClientInterceptor,
    ProtobufRequestContext,
    RuntimeHttpClient,
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SubStatus,
    TaskType,
    make_simple_http_retry_invoker,
    make_task_heartbeat_fn_http,
    pull_task_input,
    push_message,
    push_task_output,
)

log = logging.getLogger(__name__)

#: A task that runs longer than this starts sending Flower's task heartbeats; shorter ones
#: (most rounds on a fast device) skip the extra request.
HEARTBEAT_AFTER_SECONDS = 5.0

MessageHandler = Callable[[Message, Context, TaskTiming], Message]
PhaseObserver = Callable[[str, float], None]


class TaskToken:
    """Flower's token interceptor for whichever task is current, so one HTTP client (one
    kept-alive connection) serves every task."""

    def __init__(self) -> None:
        self._current: RuntimeTokenHttpInterceptor | None = None

    def set(self, token: str) -> None:
        self._current = RuntimeTokenHttpInterceptor(token)

    def intercept(self, context: ProtobufRequestContext, call_next: ProtobufCall) -> httpx.Response:
        if self._current is None:  # before the first task: nothing to authenticate
            return call_next(context)
        return self._current.intercept(context, call_next)


class RuntimeWorker:
    """Acquires ClientApp tasks from the local SuperNode and runs them in this process."""

    def __init__(
        self,
        runtime_api_address: str,
        handler: MessageHandler,
        pacer: SuperNodePacer,
        fallback_poll_seconds: float = 1.0,
        observe_phase: PhaseObserver | None = None,
    ) -> None:
        self.runtime_api_address = runtime_api_address
        self.handler = handler
        self.pacer = pacer
        self.fallback_poll_seconds = fallback_poll_seconds
        self.observe_phase = observe_phase or (lambda phase, seconds: None)
        self._idle_since = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._acquirer: RuntimeHttpClient | None = None
        self._token = TaskToken()
        self._task_client: RuntimeHttpClient | None = None

    def _client(self, *interceptors: ProtobufClientInterceptor) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(
            server_address=self.runtime_api_address,
            insecure=True,
            root_certificates=None,
            interceptors=list(interceptors),
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="htfl-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.pacer.message_stored.set()

    def _loop(self) -> None:
        self._acquirer = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        self._task_client = self._client(
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), self._token
        )
        while not self._stop.is_set():
            # Woken by the SuperNode the moment a message and all its objects are stored (a
            # message stored meanwhile leaves the event set). No timed AcquireTask beside it:
            # one could take a task whose objects are still arriving, and Flower's pull then
            # backs off 1 s. A stock SuperNode (adapter not installed) sets no event: poll.
            self.pacer.message_stored.wait(
                WORKER_RECHECK_SECONDS if self.pacer.event_driven else self.fallback_poll_seconds
            )
            self.pacer.message_stored.clear()
            while not self._stop.is_set() and self._serve_one():
                pass

    def _serve_one(self) -> bool:
        """Run one pending task if there is one; return whether one was run."""
        assert self._acquirer is not None
        try:
            res = self._acquirer.AcquireTask(
                AcquireTaskRequest(
                    supported_task_types=[TaskType.CLIENT_APP], agentapp_fab_hashes=[]
                )
            )
        except Exception:  # the SuperNode may still be starting or already stopping
            log.debug("AcquireTask failed", exc_info=True)
            return False
        if not (res.HasField("task") and res.token):
            return False
        self.pacer.worker_busy = True
        try:
            self._run_task(res.token)
        finally:
            self.pacer.worker_busy = False
        return True

    def _run_task(self, token: str) -> None:
        client = self._task_client
        assert client is not None
        self._token.set(token)
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat_timer = threading.Timer(HEARTBEAT_AFTER_SECONDS, heartbeat.start)
        heartbeat_timer.daemon = True
        heartbeat_timer.start()
        context: Context | None = None
        status, details = SubStatus.FAILED, "htfl worker failed before running the task"
        idle_started = self._idle_since
        try:
            t0 = time.time()
            message, context, _run, _fab = pull_task_input(client)
            self.pacer.use_doorbell(
                port_of(context.run_config.get(DOORBELL_KEY)),
                str(context.run_config.get(DOORBELL_TOKEN_KEY, "") or ""),
            )
            received = time.time()
            timing = TaskTiming(received, received - t0, t0 - idle_started, idle_started)
            self.observe_phase("idle", timing.idle_seconds)
            self.observe_phase("download", timing.download_seconds)
            try:
                reply = self.handler(message, context, timing)
                status, details = SubStatus.COMPLETED, ""
            except Exception as err:  # reported to the server, never crashes the agent
                log.exception("handling %s failed", message.metadata.message_type)
                reason = f"{type(err).__name__}: {err}"
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                    reply_to=message,
                )
                details = reason
            t_push = time.time()
            push_message(client, reply, context)
            self.observe_phase("upload", time.time() - t_push)
        except Exception as err:
            log.exception("runtime API exchange failed")
            details = f"{type(err).__name__}: {err}"
        finally:
            # The heartbeat must be stopped *before* push_task_output: that call invalidates
            # the task token, and a heartbeat sent with a dead token gets HTTP 401, which
            # Flower's retry handler answers by sending this process SIGINT.
            heartbeat_timer.cancel()
            heartbeat_timer.join()  # a start() already under way finishes before we stop it
            if heartbeat.is_running:
                heartbeat.stop()
            push_task_output(client=client, context=context, sub_status=status, details=details)
            self.pacer.reply_pushed.set()
            self._idle_since = time.time()
