"""One device's agent: a Flower SuperNode plus htfl's long-lived worker, in one process.

One process (not a SuperNode with a worker beside it) so that a device runs exactly one thing
that a service manager supervises, and stopping it can leave nothing behind. Flower's SuperNode
needs the main thread for its signal handlers; the worker runs in a thread beside it, and torch
releases the GIL while it computes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from htfl import flower_adapter
from htfl.device.instruments import DeviceInstruments
from htfl.device.worker import MessageHandler, RuntimeWorker
from htfl.ports import free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentOptions:
    superlink: str
    device_class: str
    device_name: str
    runtime_port: int = 0
    active_poll_seconds: float = 0.05
    idle_poll_seconds: float = 1.0
    insecure: bool = True
    root_certificates: str | None = None
    #: the device's private key for Flower's SuperNode authentication (None: no auth)
    auth_private_key: str | None = None
    #: give up after this many seconds of failed attempts to reach the SuperLink (None: never)
    superlink_lost_after: float | None = None


class SuperLinkLost(RuntimeError):
    """The SuperNode gave up reaching the SuperLink (``superlink_lost_after`` passed)."""


def supernode_argv(options: AgentOptions, runtime_port: int) -> list[str]:
    """The SuperNode's command line. No ``--node-config``: the device says who it is once, in
    its answer to ``query.hello`` (class, name, versions), which is what the server selects by."""
    argv = [
        "--superlink",
        options.superlink,
        "--isolation",
        "process",
        "--host",
        "127.0.0.1",
        "--port",
        str(runtime_port),
    ]
    if options.insecure:
        argv.append("--insecure")
    if options.root_certificates:
        argv += ["--root-certificates", options.root_certificates]
    if options.auth_private_key:
        argv += ["--auth-supernode-private-key", options.auth_private_key]
    if options.superlink_lost_after is not None:  # Flower's bound on each call's retries
        argv += ["--max-wait-time", str(options.superlink_lost_after)]
    return argv


def run_agent(
    options: AgentOptions, handler: MessageHandler, instruments: DeviceInstruments | None = None
) -> None:
    """Start the worker thread, then run the SuperNode in this thread until signalled."""
    runtime_port = options.runtime_port or free_port()
    pacer = flower_adapter.SuperNodePacer(
        active_poll_seconds=options.active_poll_seconds,
        idle_poll_seconds=options.idle_poll_seconds,
        superlink_host=options.superlink.rpartition(":")[0] or None,
    )
    # Stock Flower (with a logged warning) if the adapter does not fit the installed release.
    on_wire = instruments.phases.add_bytes if instruments is not None else None
    flower_adapter.install(pacer, on_wire)
    observe = instruments.phases.observe_phase if instruments is not None else None
    worker = RuntimeWorker(f"127.0.0.1:{runtime_port}", handler, pacer, observe_phase=observe)
    if instruments is not None:
        instruments.start()
    worker.start()
    log.info(
        "agent %s (%s) joining SuperLink %s",
        options.device_name,
        options.device_class,
        options.superlink,
    )
    try:
        flower_adapter.run_supernode(supernode_argv(options, runtime_port))
        # Flower returns (rather than exits) only when a call gave up retrying: the SuperLink
        # stayed out of reach for superlink_lost_after seconds (a signal exits instead)
        bound = options.superlink_lost_after
        raise SuperLinkLost(
            f"the SuperLink at {options.superlink} was not reachable "
            + (f"for {bound:g} s (--superlink-lost-after)" if bound is not None else "")
            + "; giving up"
        )
    finally:
        worker.stop()
        if instruments is not None:
            instruments.stop()
