"""The experiment on the server: set devices up, run rounds with a deadline, evaluate, record."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flwr.app import Message
from flwr.serverapp import Grid

from htfl import protocol
from htfl.algorithms import get_method
from htfl.algorithms.base import Upload
from htfl.workstation.accuracy import AccuracyLedger
from htfl.workstation.config.experiment import Experiment
from htfl.workstation.server import checkpoint, selection
from htfl.workstation.server.checkpoint import Checkpoint
from htfl.workstation.server.exchange import Exchange, exchange
from htfl.workstation.server.exporter import ServerMetrics
from htfl.workstation.server.results import ClientRoundRow, ResultsStore, read_rows
from htfl.workstation.server.selection import Participant
from htfl.workstation.simulation.deadline import modelled_stragglers, wall_deadline

if TYPE_CHECKING:
    from htfl.workstation.power.rounds import RunPower

log = logging.getLogger(__name__)

#: Abort after this many consecutive rounds in which no device answered.
MAX_SILENT_ROUNDS = 3

#: A train message lives this many deadlines (Flower's TTL): the longest the exchange waits
#: for it when fewer than min_replies answered; past it the SuperLink drops it, undelivered.
GRACE_FACTOR = 3.0


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
    #: the round of the private model the device restored (0: a fresh model)
    resumed_round: int = 0


def _message(
    p: Participant, kind: str, config: dict, payload=None, ttl: float | None = None
) -> Message:
    return Message(
        protocol.content(config=config, payload=payload),
        dst_node_id=p.device.node_id,
        message_type=kind,
        ttl=ttl,
    )


def prime_accuracy(ledger: AccuracyLedger, rows: list[dict[str, str]]) -> None:
    """Feed ``rounds.csv`` rows (a resumed run's earlier rounds) to ``ledger``, round by round."""
    by_round: dict[int, list[tuple[str, float | None, float | None]]] = {}
    for r in rows:
        by_round.setdefault(int(r["round"]), []).append(
            (
                r["device"],
                float(r["test_accuracy"]) if r.get("test_accuracy") else None,
                float(r["num_test"]) if r.get("num_test") else None,
            )
        )
    for rnd in sorted(by_round):
        ledger.record(by_round[rnd])


class RoundLoop:
    #: the run's power traces and workstation-read meters (the ServerApp sets it)
    power: RunPower | None = None

    def __init__(
        self,
        grid: Grid,
        experiment: Experiment,
        participants: list[Participant],
        results: ResultsStore,
        metrics: ServerMetrics | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        self.metrics = metrics
        self.resume = resume
        self._wait_seconds = 0.0
        self.grid = grid
        self.exp = experiment
        self.participants = participants
        self.by_node = {p.device.node_id: p for p in participants}
        self.results = results
        self.method = get_method(experiment.algorithm.name)
        self.setups: dict[int, ClientSetup] = {}
        self.history: list[dict] = list(resume.history) if resume else []
        #: the run's mean accuracy (htfl.workstation.accuracy: the report's definition too);
        #: a resumed run carries forward what its rounds so far recorded
        self.accuracy = AccuracyLedger()
        if resume is not None:
            prime_accuracy(self.accuracy, read_rows(results.dir))
        self.setup_base: dict = {}
        #: nodes already asked who they are (everyone connected at selection, returning
        #: devices, strangers): only nodes that connect later are asked before a round
        self._asked: set[int] = set(grid.get_node_ids()) | set(self.by_node)
        #: participants whose last train got no reply: their agent may come back as a new node
        self._absent: set[int] = set()

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
            # the agent keeps its private model per experiment (and resumes it)
            "experiment_id": exp.id,
        }
        if self.resume is not None:  # the same data assignment; each device's own model
            base = {**self.resume.setup, "experiment_id": exp.id, "resume_private_state": True}
        self.setup_base = base
        messages = [self._setup_message(p) for p in self.participants]
        result = exchange(
            self.grid,
            messages,
            deadline_seconds=wall_deadline(self.grid, exp.devices.setup_deadline_seconds),
        )
        sent, received = result.bytes_sent, result.bytes_received
        failed = {n: e for n, e in result.errors.items()}
        failed.update({n: "no reply before the deadline" for n in result.missing})
        if failed:
            detail = "; ".join(f"{self.by_node[n].device.name}: {e}" for n, e in failed.items())
            raise ExperimentAborted(f"device setup failed: {detail}")
        for node, reply in result.replies.items():
            self.setups[node] = _client_setup(self.by_node[node], reply)
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
                    "resumed_round": s.resumed_round,
                }
                for node, s in sorted(
                    self.setups.items(), key=lambda kv: kv[1].participant.client_index
                )
            ],
        )

    def _setup_message(self, p: Participant, **extra) -> Message:
        config = {
            **self.setup_base,
            "client_index": p.client_index,
            "arch": p.arch,
            "clock_offset_seconds": p.device.clock_offset_seconds,
            **extra,
        }
        return _message(p, protocol.SETUP, config)

    def _ignore_unreadable(self, node: int, reason: str) -> None:
        """A node that joined mid-run speaking another htfl: named in the log, never sent work."""
        log.warning("node %s is ignored: %s", node, reason)
        self.results.progress(event="ignored_node", node_id=node, reason=reason)

    def rejoin(self) -> None:
        """Nodes that connected since the last round: a participant whose agent restarted
        (power loss, update) is set up again on its new node and continues with its own model
        (``resume_private_state``); a node claiming the name of a participant that still
        answers, or a device outside the selection, is logged and never sent work."""
        new = [n for n in self.grid.get_node_ids() if n not in self._asked]
        if not new:
            return
        self._asked.update(new)
        by_name = {p.device.name: p for p in self.participants}
        for device in selection.discover(
            self.grid, new, self.exp.devices.deadline_seconds, self._ignore_unreadable
        ):
            old = by_name.get(device.name)
            if old is None:
                log.warning(
                    "node %s (%r) is not in this experiment: ignored", device.node_id, device.name
                )
                self.results.progress(
                    event="ignored_node",
                    node_id=device.node_id,
                    device=device.name,
                    reason="not selected",
                )
                continue
            if old.device.node_id not in self._absent:
                log.error(
                    "node %s claims device name %r, which node %s answers as: ignored",
                    device.node_id,
                    device.name,
                    old.device.node_id,
                )
                self.results.progress(
                    event="ignored_node",
                    node_id=device.node_id,
                    device=device.name,
                    reason="duplicate device name",
                )
                continue
            back = Participant(device, old.client_index, old.arch)
            ex = exchange(
                self.grid,
                [self._setup_message(back, resume_private_state=True)],
                deadline_seconds=self.exp.devices.setup_deadline_seconds,
            )
            reply = ex.replies.get(device.node_id)
            if reply is None:
                log.warning("returning device %s: setup failed: %s", device.name, ex.errors)
                continue
            self.participants[self.participants.index(old)] = back
            del self.by_node[old.device.node_id]
            self.by_node[device.node_id] = back
            self.setups.pop(old.device.node_id, None)
            self.setups[device.node_id] = _client_setup(back, reply)
            self._absent.discard(old.device.node_id)
            resumed = int(protocol.read_metrics(reply).get("resumed_round", 0))
            log.info(
                "device %s is back as node %s (its model of round %d)",
                device.name,
                device.node_id,
                resumed,
            )
            self.results.progress(
                event="rejoined", device=device.name, node_id=device.node_id, resumed_round=resumed
            )

    # --- rounds ----------------------------------------------------------------------------
    def run(self) -> dict:
        exp = self.exp
        num_classes = max(s.num_classes for s in self.setups.values())
        if self.resume is not None:
            server, first = self.resume.server, self.resume.round + 1
        else:
            server, first = (
                self.method.server(
                    exp.algorithm_params, num_classes, exp.models.feature_dim, exp.experiment.seed
                ),
                1,
            )
        started = time.time()
        silent = 0
        for rnd in range(first, exp.experiment.rounds + 1):
            t0 = time.time()
            self._wait_seconds = 0.0
            if self.metrics is not None:
                self.metrics.round_started(rnd)
            self.rejoin()
            payload = server.global_payload()
            rows, uploads, answered, late = self._train_round(rnd, payload)
            self._absent = {r.node_id for r in rows if r.status in ("late", "error")}
            t_agg = time.time()
            server.aggregate(uploads)
            aggregate_seconds = time.time() - t_agg
            mark_set_aside(rows, server.rejected)
            if rnd % exp.experiment.eval_every == 0 or rnd == exp.experiment.rounds:
                self._evaluate_round(rows, server.global_payload())
            self._collect_late(rows, late)
            if self.power is not None:  # energy from the meters the workstation reads
                self.power.price_rows(rows)
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
            # the checkpoint before the round's event: whoever sees "round N" (htfl run's
            # progress, a watcher that kills the ServerApp) can resume from round N
            checkpoint.save(
                self.results.dir,
                Checkpoint(rnd, server, self.selection(), self.setup_base, self.history),
            )
            self.results.progress(**event)
            silent = silent + 1 if answered == 0 else 0
            if silent >= MAX_SILENT_ROUNDS:
                raise ExperimentAborted(f"no device answered in {silent} consecutive rounds")
        accuracies = [h["accuracy"] for h in self.history if h["accuracy"] is not None]
        return {
            "rounds": exp.experiment.rounds,
            "last_completed_round": exp.experiment.rounds,
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
                if self.power is not None:  # energy intervals; samples to the trace
                    self.power.absorb(row, reply, p.device, train=True)
                for key in _DEVICE_FIGURES:
                    if key in m:
                        setattr(row, key, m[key])
                if "energy_partial" in m:
                    row.energy_partial = bool(m["energy_partial"])
                if "modelled" in m:  # a simulated client: its figures are its class's model
                    row.modelled = bool(m["modelled"])
                    row.bytes_down, row.bytes_up = _modelled_bytes(m, row.bytes_down, row.bytes_up)
                for key in ("num_train", "num_test"):
                    if key in m:
                        setattr(row, key, int(m[key]))
            elif node in ex.errors:
                row.status, row.error = "error", ex.errors[node]
            else:
                row.status, row.error = "late", "no reply before the deadline"
            rows.append(row)
        return rows

    def selection(self) -> list[dict]:
        """Who takes part, by device name (node ids change when a device reconnects)."""
        return [
            {
                "device": p.device.name,
                "device_class": p.device.device_class,
                "client_index": p.client_index,
                "arch": p.arch,
            }
            for p in self.participants
        ]

    def _collect_late(self, rows: list[ClientRoundRow], late: Exchange) -> None:
        """Replies to this round's ``train`` that came after its deadline: their measurements
        go into the device's ``late`` row (the upload is not merged: the round is closed)."""
        if not late.pending:
            return
        node_of = {mid: node for node, mid in late.pending.items()}
        by_node = {r.node_id: r for r in rows}
        for reply in self.grid.pull_messages(list(node_of)):
            node = node_of.get(reply.metadata.reply_to_message_id)
            if node is None or reply.has_error():
                continue
            row = by_node[node]
            m = protocol.read_metrics(reply)
            row.round_trip_seconds = time.time() - late.sent_at
            if self.power is not None:  # its samples too: the trace has no hole
                self.power.absorb(row, reply, self.by_node[node].device, train=True)
            for key in _DEVICE_FIGURES:
                if key in m and key not in ("test_accuracy", "test_loss", "evaluate_seconds"):
                    setattr(row, key, m[key])
            row.error = "reply after the deadline: measured, not merged"

    def _train_round(
        self, rnd: int, payload
    ) -> tuple[list[ClientRoundRow], list[Upload], int, Exchange]:
        deadline = self.exp.devices.deadline_seconds
        # The device drops a train task older than its deadline when it gets to it (frozen,
        # or behind): the server has closed that round, and training it would be wasted.
        config = {"round": rnd, "deadline_seconds": deadline}
        ttl = deadline * GRACE_FACTOR
        messages = [
            _message(p, protocol.TRAIN, config, payload, ttl=wall_deadline(self.grid, ttl))
            for p in self.participants
        ]
        t0 = time.time()
        ex = exchange(
            self.grid,
            messages,
            deadline_seconds=wall_deadline(self.grid, deadline),
            min_replies=self.exp.devices.min_replies,
            grace_factor=GRACE_FACTOR,
        )
        self._wait_seconds += time.time() - t0
        # simulated clients: late when their modelled round time is past the deadline
        stragglers = modelled_stragglers(ex, deadline)
        rows = self._rows(rnd, ex)
        for row in rows:
            row.error = stragglers.get(row.node_id, row.error)
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
        return rows, uploads, len(ex.replies), ex

    def _evaluate_round(self, rows: list[ClientRoundRow], payload) -> None:
        # Only devices that answered this round's train: one that missed it is late or gone,
        # and waiting for it again would spend a second deadline on the same round.
        targets = [self.by_node[r.node_id] for r in rows if r.status in ("ok", "set_aside")]
        if not targets:
            return
        messages = [_message(p, protocol.EVALUATE, {}, payload) for p in targets]
        t0 = time.time()
        ex = exchange(
            self.grid,
            messages,
            deadline_seconds=wall_deadline(self.grid, self.exp.devices.evaluate_deadline_seconds),
        )
        self._wait_seconds += time.time() - t0
        for row in rows:
            row.eval_bytes_down = ex.bytes_sent.get(row.node_id)
            reply = ex.replies.get(row.node_id)
            if reply is None:
                continue
            m = protocol.read_metrics(reply)
            row.eval_bytes_up = ex.bytes_received.get(row.node_id)
            if "modelled" in m:
                row.eval_bytes_down, row.eval_bytes_up = _modelled_bytes(
                    m, row.eval_bytes_down, row.eval_bytes_up
                )
            if self.power is not None:
                self.power.absorb(row, reply, self.by_node[row.node_id].device, train=False)
            row.test_accuracy = m.get("test_accuracy")
            row.test_loss = m.get("test_loss")
            row.evaluate_seconds = m.get("evaluate_seconds")
            row.num_test = int(m["num_test"]) if "num_test" in m else None
            if "energy_joules" in m:
                row.energy_joules = (row.energy_joules or 0.0) + m["energy_joules"]
                row.energy_partial = bool(row.energy_partial) or bool(m.get("energy_partial"))


def _client_setup(p: Participant, reply: Message) -> ClientSetup:
    m = protocol.read_metrics(reply)
    info = protocol.read_config(reply)
    return ClientSetup(
        p,
        int(m["num_train"]),
        int(m["num_test"]),
        int(m["num_classes"]),
        int(m["model_bytes"]),
        int(m["num_parameters"]),
        {int(k): int(v) for k, v in info["label_counts"].items()},
        int(m.get("resumed_round", 0)),
    )


def mark_set_aside(rows: list[ClientRoundRow], rejected: list[tuple[int, str]]) -> None:
    """Say in a client's row that the server set its upload aside (e.g. NaN weights): the
    device answered, but nothing of it reached the global knowledge this round."""
    reasons = dict(rejected)
    for row in rows:
        if row.status == "ok" and row.client_index in reasons:
            row.status, row.error = "set_aside", reasons[row.client_index]


def _modelled_bytes(m: dict, down: int | None, up: int | None) -> tuple[int | None, int | None]:
    """A simulated client's bytes each way where no wire counted any (Flower's in-memory
    grid): what a deployment would have moved for the message and its reply, as the virtual
    client measured them (``htfl.workstation.simulation.clientapp.wire_bytes``)."""
    if down is None and "modelled_bytes_down" in m:
        down = int(m["modelled_bytes_down"])
    if up is None and "modelled_bytes_up" in m:
        up = int(m["modelled_bytes_up"])
    return down, up
