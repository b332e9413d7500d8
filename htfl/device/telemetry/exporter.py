"""HTTP ``/metrics`` endpoint and the :class:`DeviceTelemetry` facade.

Typical use in the device agent::

    telemetry = DeviceTelemetry("orin-01", "jetson-orin")
    telemetry.start(port=9101)          # sampler thread + HTTP server threads
    telemetry.phases.set_round(3)
    with telemetry.phases.time_phase("train"):
        train()
    telemetry.phases.add_bytes("up", len(payload))
    ...
    telemetry.stop()

The exporter uses its own :class:`~prometheus_client.CollectorRegistry` holding
only the device collector, so every exported series carries the ``device`` and
``device_class`` labels (the default registry's ``process_*``/``python_*``
series do not and are not exported).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from .collector import DeviceCollector, RoundPhaseMetrics
from .probes import Opener, Probe, SysReader, build_probes, explain_platform
from .sampler import DEFAULT_RATE_HZ, Sampler

__all__ = ["DeviceTelemetry", "ExporterServer", "start_exporter"]

log = logging.getLogger(__name__)


@dataclass
class ExporterServer:
    """A running ``/metrics`` HTTP server (prometheus_client's WSGI server)."""

    httpd: WSGIServer
    thread: threading.Thread
    host: str
    port: int
    _closed: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout)


def start_exporter(
    port: int, host: str = "0.0.0.0", registry: Collector | None = None
) -> ExporterServer:
    """Serve *registry* on ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` binds a free port; the bound port is ``server.port``.
    """
    httpd, thread = start_http_server(port, addr=host, registry=registry or REGISTRY)
    bound_port = httpd.server_address[1]
    return ExporterServer(httpd=httpd, thread=thread, host=host, port=bound_port)


class DeviceTelemetry:
    """Sampler + collector + round-phase metrics + HTTP exporter of one device.

    *worker_pid* is the FL worker process whose RSS/CPU is exported (default:
    the calling process).  *platform* overrides :func:`~.probes.detect_platform`;
    *opener* is the file-reading hook passed to the probes (tests);  *probes*
    replaces the platform's probe set entirely.
    """

    def __init__(
        self,
        device: str,
        device_class: str,
        root: str | os.PathLike[str] = "/",
        worker_pid: int | None = None,
        rate_hz: float = DEFAULT_RATE_HZ,
        *,
        platform: str | None = None,
        opener: Opener | None = None,
        probes: list[Probe] | None = None,
    ) -> None:
        self.root = os.fspath(root)
        if platform is None:
            platform, reason = explain_platform(self.root, opener=opener)
            log.info("telemetry platform %s (%s)", platform, reason)
        self.platform = platform
        self.reader = SysReader(self.root, opener)
        if probes is None:
            probes = build_probes(platform, self.reader)
        self.sampler = Sampler(probes, rate_hz, worker_pid=worker_pid)
        self.phases = RoundPhaseMetrics()
        self.collector = DeviceCollector(
            device, device_class, self.sampler, phases=self.phases, platform=platform
        )
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self.collector)
        self.server: ExporterServer | None = None

    def start(self, port: int, host: str = "0.0.0.0") -> ExporterServer:
        """Take a first sample, start sampling and serve ``/metrics``."""
        if self.server is not None:
            raise RuntimeError("telemetry already started")
        self.sampler.start()
        try:
            self.server = start_exporter(port, host, self.registry)
        except BaseException:
            self.sampler.stop()
            raise
        return self.server

    def stop(self) -> None:
        """Stop the HTTP server and the sampler thread.  Idempotent."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        self.sampler.stop()

    def __enter__(self) -> DeviceTelemetry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
