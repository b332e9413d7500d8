"""Submit an experiment to a SuperLink through Flower's Control API, and stop it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flwr.cli.typing import SuperLinkConnection
from flwr.cli.utils import init_http_client_from_connection
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=E0611
    ListRunsRequest,
    StartRunRequest,
    StopRunRequest,
)

from htfl.config.experiment import Experiment
from htfl.server.fab import build_fab


@dataclass(frozen=True)
class Submission:
    run_id: int
    results_dir: Path


def _control_client(exp: Experiment):
    connection = SuperLinkConnection(
        name="htfl",
        address=exp.superlink.address,
        root_certificates=exp.superlink.root_certificates or None,
        insecure=exp.superlink.insecure,
    )
    return init_http_client_from_connection(connection)


def submit(exp: Experiment, results_dir: Path) -> Submission:
    results_dir = results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        "htfl-experiment": json.dumps(exp.to_dict()),
        "htfl-results-dir": str(results_dir),
        "htfl-source": str(exp.source),
    }
    client = _control_client(exp)
    try:
        res = client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(build_fab()),
                override_config=user_config_to_proto(overrides),
            )
        )
    finally:
        client.close()
    if not res.HasField("run_id"):
        raise RuntimeError(f"SuperLink {exp.superlink.address} refused the run")
    return Submission(int(res.run_id), results_dir)


def run_status(exp: Experiment, run_id: int) -> str:
    """Flower's status of the run, e.g. 'running', 'finished:completed', 'finished:failed'."""
    client = _control_client(exp)
    try:
        res = client.ListRuns(ListRunsRequest(run_id=run_id))
    finally:
        client.close()
    run = res.run_dict.get(run_id)
    if run is None:
        return "unknown"
    status = run.status
    return f"{status.status}:{status.sub_status}" if status.sub_status else status.status


def stop(exp: Experiment, run_id: int) -> None:
    client = _control_client(exp)
    try:
        client.StopRun(StopRunRequest(run_id=run_id))
    finally:
        client.close()
