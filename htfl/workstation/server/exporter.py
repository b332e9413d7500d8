"""The server's ``/metrics``: experiment progress, device participation, round time, accuracy.

It lives in the ServerApp process (one per experiment) and only mirrors what the round loop
also writes to ``results/<id>/``; a missing or busy port costs the live view, never the run.
Device labels (``device``, ``device_class``, ``arch``) come from the participant list, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)

from htfl.workstation.server.results import ClientRoundRow
from htfl.workstation.server.selection import Participant

log = logging.getLogger(__name__)

DEVICE_LABELS = ("device", "device_class", "arch")
DEVICE_STATES = ("selected", "answering", "late", "error")


class ServerMetrics:
    def __init__(self, experiment: str, algorithm: str, dataset: str, rounds: int) -> None:
        disable_created_metrics()  # no `_created` series: the table lists what is exported
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge(
            "htfl_server_experiment_info",
            "The experiment being run (value 1).",
            ("experiment", "algorithm", "dataset"),
            registry=r,
        )
        self.info.labels(experiment, algorithm, dataset).set(1)
        self.round = Gauge(
            "htfl_server_round", "Round in progress (0 before the first).", registry=r
        )
        Gauge("htfl_server_rounds", "Rounds the experiment will run.", registry=r).set(rounds)
        self.devices = Gauge(
            "htfl_server_devices",
            "Devices by state in the last round (selected, answering, late, error).",
            ("state",),
            registry=r,
        )
        self.round_duration = Gauge(
            "htfl_server_round_duration_seconds",
            "Wall time of the last completed round.",
            registry=r,
        )
        self.round_seconds = Counter(
            "htfl_server_round_seconds",
            "Round wall time split into waiting for devices ('wait') "
            "and the server's own work ('server').",
            ("part",),
            registry=r,
        )
        self.accuracy = Gauge(
            "htfl_server_client_accuracy_ratio",
            "Test accuracy of a client on its own test split, last evaluation.",
            DEVICE_LABELS,
            registry=r,
        )
        self.loss = Gauge(
            "htfl_server_client_test_loss",
            "Test cross-entropy of a client, last evaluation.",
            DEVICE_LABELS,
            registry=r,
        )
        self.mean_accuracy = Gauge(
            "htfl_server_mean_accuracy_ratio",
            "Sample-weighted mean test accuracy over every selected device, one that did not "
            "reply counting with its last accuracy (htfl.workstation.accuracy), last evaluation.",
            registry=r,
        )
        self.payload_bytes = Counter(
            "htfl_server_payload_bytes",
            "Message content bytes per device and direction (down: server to device).",
            (*DEVICE_LABELS, "direction"),
            registry=r,
        )
        self.replies = Counter(
            "htfl_server_client_replies",
            "Training-round outcomes per device (ok, set_aside, late, error).",
            (*DEVICE_LABELS, "status"),
            registry=r,
        )
        self._labels: dict[str, tuple[str, str, str]] = {}
        self._server: WSGIServer | None = None

    def serve(self, port: int, host: str) -> None:
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
            log.info("server metrics on http://%s:%s/metrics", host, self._server.server_port)
        except OSError as err:
            log.warning("server metrics not served on %s:%s: %s", host, port, err)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def participants(self, participants: Iterable[Participant]) -> None:
        for p in participants:
            self._labels[p.device.name] = (p.device.name, p.device.device_class, p.arch)
        self.devices.labels("selected").set(len(self._labels))

    def add_setup_bytes(self, device: str, down: int, up: int) -> None:
        labels = self._labels[device]
        self.payload_bytes.labels(*labels, "down").inc(down)
        self.payload_bytes.labels(*labels, "up").inc(up)

    def round_started(self, rnd: int) -> None:
        self.round.set(rnd)

    def round_finished(
        self,
        rows: list[ClientRoundRow],
        wait_seconds: float,
        total_seconds: float,
        mean_accuracy: float | None,
    ) -> None:
        self.round_duration.set(total_seconds)
        self.round_seconds.labels("wait").inc(wait_seconds)
        self.round_seconds.labels("server").inc(max(0.0, total_seconds - wait_seconds))
        for state, statuses in (
            ("answering", ("ok", "set_aside")),
            ("late", ("late",)),
            ("error", ("error",)),
        ):
            self.devices.labels(state).set(sum(r.status in statuses for r in rows))
        for row in rows:
            labels = self._labels[row.device]
            self.replies.labels(*labels, row.status).inc()
            for direction, n in (
                ("down", row.bytes_down),
                ("up", row.bytes_up),
                ("down", row.eval_bytes_down),
                ("up", row.eval_bytes_up),
            ):
                if n:
                    self.payload_bytes.labels(*labels, direction).inc(n)
            if row.test_accuracy is not None:
                self.accuracy.labels(*labels).set(row.test_accuracy)
            if row.test_loss is not None:
                self.loss.labels(*labels).set(row.test_loss)
        if mean_accuracy is not None:
            self.mean_accuracy.set(mean_accuracy)
