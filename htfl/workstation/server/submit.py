"""Submit an experiment to a SuperLink through Flower's Control API, watch and stop it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from flwr.app import UserConfig

from htfl.flower_internals import (
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
    SuperLinkConnection,
    fab_to_proto,
    init_http_client_from_connection,
    user_config_to_proto,
)
from htfl.workstation.config.experiment import Experiment
from htfl.workstation.server import doorbell
from htfl.workstation.server.fab import build_fab


class SuperLinkControl:
    """One Control API connection for the life of an ``htfl run``."""

    def __init__(self, exp: Experiment) -> None:
        self.address = exp.superlink.address
        connection = SuperLinkConnection(
            name="htfl",
            address=exp.superlink.address,
            root_certificates=exp.superlink.root_certificates or None,
            insecure=exp.superlink.insecure,
        )
        self._client = init_http_client_from_connection(connection)

    def submit(self, exp: Experiment, results_dir: Path, resume: bool = False) -> int:
        """Start the htfl ServerApp for ``exp``; return Flower's run id. ``resume``: continue
        from the checkpoint in ``results_dir`` (``htfl run --resume``)."""
        overrides: UserConfig = {
            "htfl-experiment": json.dumps(exp.to_dict()),
            "htfl-results-dir": str(results_dir.resolve()),
            "htfl-source": str(exp.source),
            "htfl-resume": "1" if resume else "0",
            # where agents are rung, on [superlink] doorbell_port (0: any free port), and
            # the run's token for it
            **doorbell.run_config_for(self.address, exp.superlink.doorbell_port),
        }
        res = self._client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(build_fab()),
                override_config=user_config_to_proto(overrides),
            )
        )
        if not res.HasField("run_id"):
            raise RuntimeError(f"SuperLink {self.address} refused the run")
        return int(res.run_id)

    def status(self, run_id: int) -> str:
        """Flower's status of the run, e.g. 'running', 'finished:completed'."""
        run = self._client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict.get(run_id)
        if run is None:
            return "unknown"
        s = run.status
        return f"{s.status}:{s.sub_status}" if s.sub_status else s.status

    def stop(self, run_id: int) -> None:
        self._client.StopRun(StopRunRequest(run_id=run_id))

    def close(self) -> None:
        self._client.close()


def register_nodes(address: str, root_certificates: str, keys: dict[str, bytes]) -> dict[str, int]:
    """Admit devices' public keys (PEM, by device name) to a TLS SuperLink run with
    ``--enable-supernode-auth``; their node ids (a key registered before is admitted already
    and left out). A node whose key is not registered is refused, and the SuperLink logs it."""
    connection = SuperLinkConnection(
        name="htfl", address=address, root_certificates=root_certificates, insecure=False
    )
    client = init_http_client_from_connection(connection)
    try:
        ids = {}
        for name, key in keys.items():
            try:
                res = client.RegisterNode(RegisterNodeRequest(public_key=key, name=name))
            except httpx.HTTPStatusError as err:
                if "already in use" in err.response.text:  # registered before: admitted
                    continue
                raise RuntimeError(
                    f"SuperLink {address} refused to register {name}: {err.response.text[:300]}"
                ) from err
            if not res.node_id:
                raise RuntimeError(f"SuperLink {address} refused to register {name}")
            ids[name] = int(res.node_id)
        return ids
    finally:
        client.close()
