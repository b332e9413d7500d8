"""The htfl ServerApp: what Flower's SuperLink runs for each experiment.

The CLI submits the resolved experiment as run config (``htfl-experiment``, JSON) together
with the results directory; everything else happens here, on the Grid Message API.
"""

from __future__ import annotations

import json
import logging
import time
import traceback

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from htfl import flower_adapter
from htfl.workstation.config.experiment import experiment_from_dict
from htfl.workstation.datasets.delivery import start_shard_delivery
from htfl.workstation.power import rounds as power_rounds
from htfl.workstation.power.rounds import RunPower
from htfl.workstation.server import checkpoint, doorbell, selection
from htfl.workstation.server.exporter import ServerMetrics
from htfl.workstation.server.results import SUMMARY_FILE, ResultsStore, code_version
from htfl.workstation.server.round_loop import RoundLoop

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    flower_adapter.install_server()
    doorbell.start(context.run_config)  # agents woken when their message is in (else they poll)
    raw = json.loads(str(context.run_config["htfl-experiment"]))
    results_dir = str(context.run_config["htfl-results-dir"])
    # `htfl run --resume`: continue from the checkpoint of the last completed round
    resume = checkpoint.load_for_resume(results_dir, context.run_config.get("htfl-resume"))
    results = ResultsStore(results_dir, resume_after=resume.round if resume else None)
    summary: dict = {"status": "running", "run_id": context.run_id, "started": time.time()}
    if resume is not None:
        summary["resumed_after_round"] = resume.round
    metrics: ServerMetrics | None = None
    shard_server = None
    power: RunPower | None = None
    loop: RoundLoop | None = None
    try:
        experiment = experiment_from_dict(raw, str(context.run_config.get("htfl-source", "")))
        torch.set_num_threads(experiment.experiment.server_torch_threads)
        if resume is None:
            results.write_json("experiment.json", raw)
            results.write_json("code_version.json", code_version())
        else:
            results.write_json(f"code_version-resume-{resume.round}.json", code_version())
        # Prepared shards: check them, and serve them over HTTP if so delivered (data.json).
        experiment, shard_server = start_shard_delivery(experiment, results)
        metrics = ServerMetrics(
            experiment.id,
            experiment.algorithm.name,
            experiment.data.dataset,
            experiment.experiment.rounds,
        )
        if experiment.telemetry.server_metrics_port >= 0:
            metrics.serve(
                experiment.telemetry.server_metrics_port, experiment.telemetry.server_metrics_host
            )
        results.progress(event="waiting", needed=experiment.devices.count)
        nodes = selection.wait_for_nodes(
            grid, experiment.devices.count, experiment.devices.wait_for_devices_seconds
        )
        # a slow board (or a heavily dilated simulated one) may still be importing torch
        devices = selection.discover(grid, nodes, experiment.devices.deadline_seconds)
        participants = (
            selection.select(devices, experiment)
            if resume is None
            else selection.reselect(devices, resume.selection)
        )
        # raw traces, and the meters the workstation reads for these devices ([power])
        power = power_rounds.for_run(
            experiment.power.inventory,
            experiment.source,
            results.dir,
            [p.device.name for p in participants],
        )
        results.write_json(
            "devices.json",
            [
                {
                    "node_id": p.device.node_id,
                    "device": p.device.name,
                    "device_class": p.device.device_class,
                    "client_index": p.client_index,
                    "arch": p.arch,
                    "clock_offset_seconds": p.device.clock_offset_seconds,
                    "power_scope": power.scope_of(p.device),
                    **{f"info_{k}": v for k, v in p.device.info.items()},
                }
                for p in participants
            ],
        )
        results.progress(event="setup", devices=len(participants))
        metrics.participants(participants)
        power.export_to(metrics.registry)  # the hub's meters on the server's /metrics
        loop = RoundLoop(grid, experiment, participants, results, metrics, resume)
        loop.power = power
        loop.setup()
        summary.update(loop.run())
        summary["status"] = "finished"
    except Exception as err:
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        log.error("experiment failed:\n%s", traceback.format_exc())
    except BaseException as err:  # SIGTERM/SIGINT (Flower exits via SystemExit) or Ctrl-C
        summary.update(status="stopped", error=f"the ServerApp was stopped ({type(err).__name__})")
        raise
    finally:
        bell = doorbell.stop()
        if bell is not None:  # whether and how much the agents used it
            summary["doorbell"] = bell
        if metrics is not None:
            metrics.close()
        if power is not None:
            power.close()
        if shard_server is not None:
            shard_server.close()
        summary["finished"] = time.time()
        summary.setdefault("last_completed_round", _last_round(loop, resume))
        results.write_json(SUMMARY_FILE, summary)
        results.progress(event="end", status=summary["status"], error=summary.get("error"))
        results.close()


def _last_round(loop: RoundLoop | None, resume: checkpoint.Checkpoint | None) -> int:
    """The last round whose rows and checkpoint were written (0: none)."""
    if loop is not None and loop.history:
        return int(loop.history[-1]["round"])
    return resume.round if resume is not None else 0
