"""`htfl run EXPERIMENT --simulate N`: the experiment on N virtual clients in Flower's
simulation runtime (Ray backend), with the same ServerApp and results directory as a fleet run.

The ServerApp is htfl's own (:mod:`htfl.workstation.server.app`), given the run config
``htfl run`` would submit; Flower's runtime runs it in a thread against an in-memory grid,
and runs each virtual client's messages through :mod:`.clientapp` in a pool of Ray actors.

On one machine Ray starts locally, with one actor per ``cpus_per_client`` CPUs. To spread the
virtual clients over a Ray cluster, start the cluster (``ray start --head`` on one machine,
``ray start --address HEAD:6379`` on the others, each with htfl installed) and pass
``--ray-address HEAD:6379`` (or write ``ray_address = "HEAD:6379"`` in the experiment's
``[simulation]`` section, or set ``RAY_ADDRESS``): the actor pool then spans every node's CPUs.
With ``--client-state disk`` the state directory must be shared by all of them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from htfl.workstation.config.experiment import Experiment, SimulationSection
from htfl.workstation.simulation.clientapp import (
    STATE_POLICIES,
    VirtualFleet,
    make_client_app,
    virtual_devices,
)


@dataclass(frozen=True)
class SimulationSettings:
    clients: int
    #: where private client state lives between messages: memory (Context.state) or disk
    client_state: str = "memory"
    #: CPUs one virtual client's actor holds (Ray runs CPUs / this actors at once)
    cpus_per_client: float = 1.0
    #: a Ray cluster to join (``HOST:PORT``); None: RAY_ADDRESS, else a local Ray
    ray_address: str | None = None
    #: GPUs one virtual client's actor holds (fractions share a GPU)
    gpus_per_client: float = 0.0

    @classmethod
    def of(cls, section: SimulationSection) -> SimulationSettings:
        """The settings of an experiment's (resolved) [simulation] section."""
        return cls(
            section.clients,
            section.client_state,
            section.cpus_per_client,
            section.ray_address or None,
            section.gpus_per_client,
        )

    def problems(self, exp: Experiment) -> list[str]:
        out = []
        if self.client_state not in STATE_POLICIES:
            out.append(f"--client-state: expected one of {', '.join(STATE_POLICIES)}")
        if not exp.devices.classes:
            out.append(
                f"{exp.source}: [devices] names devices; --simulate needs device classes "
                "(classes = {...}) to give its virtual clients"
            )
        elif self.clients < exp.devices.count:
            out.append(
                f"--simulate {self.clients}: the experiment selects {exp.devices.count} "
                "devices; simulate at least that many"
            )
        if self.cpus_per_client <= 0:
            out.append("--cpus-per-client: expected a number above 0")
        if self.gpus_per_client < 0:
            out.append("--gpus-per-client: expected a number >= 0")
        return out


def server_app(overrides: dict[str, str]) -> ServerApp:
    """htfl's ServerApp, run with the config ``htfl run`` submits to a SuperLink."""
    from htfl.workstation.server.app import main as htfl_main

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        context.run_config.update(overrides)
        htfl_main(grid, context)

    return app


def backend_config(settings: SimulationSettings) -> dict:
    init_args: dict = {"log_to_driver": False}
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        init_args["address"] = address
    return {
        "client_resources": {
            "num_cpus": settings.cpus_per_client,
            "num_gpus": settings.gpus_per_client,
        },
        "init_args": init_args,
    }


def simulate(exp: Experiment, results_dir: Path, settings: SimulationSettings) -> dict:
    """Run ``exp`` on ``settings.clients`` virtual clients; its summary (``summary.json``)."""
    from flwr.simulation import run_simulation

    results_dir.mkdir(parents=True, exist_ok=True)
    # the virtual clients' data and (with --client-state disk) private state, removed after
    # the run: the record is the rows, as on a fleet, where private models stay on devices
    state_root = results_dir / "simulation-state"
    fleet = VirtualFleet(
        tuple(virtual_devices(exp.devices.classes, settings.clients)),
        settings.client_state,
        str(state_root / "client-state"),
        os.environ.get("HTFL_DATA_DIR") or str(state_root / "data"),
    )
    overrides = {
        "htfl-experiment": json.dumps(exp.to_dict()),
        "htfl-results-dir": str(results_dir.resolve()),
        "htfl-source": str(exp.source),
    }
    logging.getLogger("flwr").setLevel(logging.WARNING)
    try:
        run_simulation(
            server_app=server_app(overrides),
            client_app=make_client_app(fleet),
            num_supernodes=settings.clients,
            backend_config=backend_config(settings),
        )
    except RuntimeError as err:  # Flower wraps the cause (e.g. Ray that did not start)
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return {
            "status": "failed",
            "error": f"Flower's simulation runtime stopped: {type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}",
        }
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
    summary_file = results_dir / "summary.json"
    if not summary_file.exists():
        return {"status": "failed", "error": "the ServerApp wrote no summary"}
    return json.loads(summary_file.read_text())
