"""The experiment on the server: set devices up, run rounds with a deadline, evaluate, record."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

from htfl import protocol
from htfl.algorithms import get_method
from htfl.algorithms.base import Upload
from htfl.workstation.accuracy import AccuracyLedger
from htfl.workstation.config.experiment import Experiment
from htfl.workstation.server.exchange import Exchange, exchange
from htfl.workstation.server.exporter import ServerMetrics
from htfl.workstation.server.results import ClientRoundRow, ResultsStore
from htfl.workstation.server.selection import Participant

log = logging.getLogger(__name__)

#: Abort after this many consecutive rounds in which no device answered.
MAX_SILENT_ROUNDS = 3


#: Reply metrics copied as they are into the results row of the round.
_DEVICE_FIGURES = (
    "train_seconds",
    "serialise_seconds",
    "deserialise_seconds",
    "handle_seconds",
    "download_seconds",
    "idle_seconds",
    "train_loss",
    "evaluate_seconds",
    "test_accuracy",
    "test_loss",
    "energy_joules",
    "idle_energy_joules",
)


class ExperimentAborted(RuntimeError):
    pass


@dataclass
class ClientSetup:
    participant: Participant
    num_train: int
    num_test: int
    num_classes: int
    model_bytes: int
    num_parameters: int
    label_counts: dict[int, int]


def _message(p: Participant, kind: str, config: dict, payload=None) -> Message:
    return Message(
        protocol.content(config=config, payload=payload),
        dst_node_id=p.device.node_id,
        message_type=kind,
    )


class RoundLoop:
    def __init__(
        self,
        grid: Grid,
        experiment: Experiment,
        participants: list[Participant],
        results: ResultsStore,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self._wait_seconds = 0.0
        self.grid = grid
        self.exp = experiment
        self.participants = participants
        self.by_node = {p.device.node_id: p for p in participants}
        self.results = results
        self.method = get_method(experiment.algorithm.name)
        self.setups: dict[int, ClientSetup] = {}
        self.history: list[dict] = []
        #: the run's mean accuracy (htfl.workstation.accuracy: the report's definition too)
        self.accuracy = AccuracyLedger()

    # --- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        exp = self.exp
        base = {
            "algorithm": self.method.name,
            "params": exp.to_dict()["algorithm"]["params"],
            "dataset": exp.data.dataset,
            "partition": {
                "kind": exp.data.partition,
                "classes_per_client": exp.data.classes_per_client,
                "alpha": exp.data.alpha,
                "min_samples": exp.data.min_samples,
                "balanced": exp.data.balanced,
            },
            "train_fraction": exp.data.train_fraction,
            "shards": exp.data.shard_spec(),
            "num_clients": len(self.participants),
            "seed": exp.experiment.seed,
            "feature_dim": exp.models.feature_dim,
            "training": exp.to_dict()["training"],
        }
        messages = [
            _message(
                p,
                protocol.SETUP,
                {
                    **base,
                    "client_index": p.client_index,
                    "arch": p.arch,
                    "clock_offset_seconds": p.device.clock_offset_seconds,
                },
            )
            for p in self.participants
        ]
        result = exchange(self.grid, messages, deadline_seconds=exp.devices.deadline_seconds)
        sent, received = result.bytes_sent, result.bytes_received
        failed = {n: e for n, e in result.errors.items()}
        failed.update({n: "no reply before the deadline" for n in result.missing})
        if failed:
            detail = "; ".join(f"{self.by_node[n].device.name}: {e}" for n, e in failed.items())
            raise ExperimentAborted(f"device setup failed: {detail}")
        for node, reply in result.replies.items():
            m = protocol.read_metrics(reply)
            info = protocol.read_config(reply)
            self.setups[node] = ClientSetup(
                self.by_node[node],
                int(m["num_train"]),
                int(m["num_test"]),
                int(m["num_classes"]),
                int(m["model_bytes"]),
                int(m["num_parameters"]),
                {int(k): int(v) for k, v in info["label_counts"].items()},
            )
        if self.metrics is not None:
            for node, setup in self.setups.items():
                device = setup.participant.device
                self.metrics.add_setup_bytes(
                    device.name,
                    device.hello_bytes[0] + (sent.get(node) or 0),
                    device.hello_bytes[1] + (received.get(node) or 0),
                )
        self.results.write_json(
            "setup.json",
            [
                {
                    "device": s.participant.device.name,
                    "client_index": s.participant.client_index,
                    "arch": s.participant.arch,
                    "num_train": s.num_train,
                    "num_test": s.num_test,
                    "num_parameters": s.num_parameters,
                    "model_bytes": s.model_bytes,
                    "label_counts": s.label_counts,
                    "hello_bytes_down": s.participant.device.hello_bytes[0],
                    "hello_bytes_up": s.participant.device.hello_bytes[1],
                    "setup_bytes_down": sent.get(node),
                    "setup_bytes_up": received.get(node),
                }
                for node, s in sorted(
                    self.setups.items(), key=lambda kv: kv[1].participant.client_index
                )
            ],
        )

    # --- rounds ----------------------------------------------------------------------------
    def run(self) -> dict:
        exp = self.exp
        num_classes = max(s.num_classes for s in self.setups.values())
        server = self.method.server(
            exp.algorithm_params, num_classes, exp.models.feature_dim, exp.experiment.seed
        )
        started = time.time()
        silent = 0
        for rnd in range(1, exp.experiment.rounds + 1):
            t0 = time.time()
            self._wait_seconds = 0.0
            if self.metrics is not None:
                self.metrics.round_started(rnd)
            payload = server.global_payload()
            rows, uploads, answered = self._train_round(rnd, payload)
            t_agg = time.time()
            server.aggregate(uploads)
            aggregate_seconds = time.time() - t_agg
            mark_set_aside(rows, server.rejected)
            if rnd % exp.experiment.eval_every == 0 or rnd == exp.experiment.rounds:
                self._evaluate_round(rows, server.global_payload())
            self.results.add_rows(rows)
            accuracy = self.accuracy.record(
                (r.device, r.test_accuracy, r.num_test) for r in rows
            ).mean
            round_seconds = time.time() - t0
            if self.metrics is not None:
                self.metrics.round_finished(rows, self._wait_seconds, round_seconds, accuracy)
            event = {
                "event": "round",
                "round": rnd,
                "rounds": exp.experiment.rounds,
                "answered": answered,
                "selected": len(self.participants),
                "accuracy": accuracy,
                "round_seconds": round_seconds,
                "wait_seconds": self._wait_seconds,
                "aggregate_seconds": aggregate_seconds,
                "elapsed_seconds": time.time() - started,
            }
            self.history.append(event)
            self.results.progress(**event)
            silent = silent + 1 if answered == 0 else 0
            if silent >= MAX_SILENT_ROUNDS:
                raise ExperimentAborted(f"no device answered in {silent} consecutive rounds")
        accuracies = [h["accuracy"] for h in self.history if h["accuracy"] is not None]
        return {
            "rounds": exp.experiment.rounds,
            "final_accuracy": accuracies[-1] if accuracies else None,
            "best_accuracy": max(accuracies) if accuracies else None,
            "wall_seconds": time.time() - started,
        }

    def _rows(self, rnd: int, ex: Exchange) -> list[ClientRoundRow]:
        rows = []
        for p in self.participants:
            node = p.device.node_id
            row = ClientRoundRow(
                round=rnd,
                node_id=node,
                device=p.device.name,
                device_class=p.device.device_class,
                arch=p.arch,
                client_index=p.client_index,
                status="ok",
                round_started=ex.sent_at,
                bytes_down=ex.bytes_sent.get(node),
            )
            if node in ex.replies:
                reply = ex.replies[node]
                m = protocol.read_metrics(reply)
                row.round_trip_seconds = ex.received_at[node] - ex.sent_at
                row.bytes_up = ex.bytes_received.get(node)
                for key in _DEVICE_FIGURES:
                    if key in m:
                        setattr(row, key, m[key])
                if "energy_partial" in m:
                    row.energy_partial = bool(m["energy_partial"])
                for key in ("num_train", "num_test"):
                    if key in m:
                        setattr(row, key, int(m[key]))
            elif node in ex.errors:
                row.status, row.error = "error", ex.errors[node]
            else:
                row.status = "late"
            rows.append(row)
        return rows

    def _train_round(self, rnd: int, payload) -> tuple[list[ClientRoundRow], list[Upload], int]:
        messages = [_message(p, protocol.TRAIN, {"round": rnd}, payload) for p in self.participants]
        t0 = time.time()
        ex = exchange(
            self.grid,
            messages,
            deadline_seconds=self.exp.devices.deadline_seconds,
            min_replies=self.exp.devices.min_replies,
        )
        self._wait_seconds += time.time() - t0
        rows = self._rows(rnd, ex)
        uploads = []
        for node, reply in ex.replies.items():
            setup = self.setups[node]
            uploads.append(
                Upload(
                    setup.participant.client_index,
                    setup.num_train,
                    protocol.read_payload(reply),
                    setup.label_counts,
                )
            )
        uploads.sort(key=lambda u: u.client_index)
        return rows, uploads, len(ex.replies)

    def _evaluate_round(self, rows: list[ClientRoundRow], payload) -> None:
        targets = [self.by_node[r.node_id] for r in rows]
        messages = [_message(p, protocol.EVALUATE, {}, payload) for p in targets]
        t0 = time.time()
        ex = exchange(self.grid, messages, deadline_seconds=self.exp.devices.deadline_seconds)
        self._wait_seconds += time.time() - t0
        for row in rows:
            row.eval_bytes_down = ex.bytes_sent.get(row.node_id)
            reply = ex.replies.get(row.node_id)
            if reply is None:
                continue
            m = protocol.read_metrics(reply)
            row.eval_bytes_up = ex.bytes_received.get(row.node_id)
            row.test_accuracy = m.get("test_accuracy")
            row.test_loss = m.get("test_loss")
            row.evaluate_seconds = m.get("evaluate_seconds")
            row.num_test = int(m["num_test"]) if "num_test" in m else None
            if "energy_joules" in m:
                row.energy_joules = (row.energy_joules or 0.0) + m["energy_joules"]
                row.energy_partial = bool(row.energy_partial) or bool(m.get("energy_partial"))


def mark_set_aside(rows: list[ClientRoundRow], rejected: list[tuple[int, str]]) -> None:
    """Say in a client's row that the server set its upload aside (e.g. NaN weights): the
    device answered, but nothing of it reached the global knowledge this round."""
    reasons = dict(rejected)
    for row in rows:
        if row.status == "ok" and row.client_index in reasons:
            row.status, row.error = "set_aside", reasons[row.client_index]
