"""Who may join: a secure local fleet (TLS between agents and SuperLink, Flower's SuperNode
authentication with keys made by htfl.workstation.deploy.pki) runs an experiment with its
registered devices, and refuses, and logs, a node whose key was never registered."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from htfl.workstation.config.experiment import load_experiment
from htfl.workstation.deploy.pki import make_node_keys
from htfl.workstation.local_fleet import LocalFleet, expand_selection, stop_process_group
from htfl.workstation.server.submit import SuperLinkControl
from tests.fleet_runs import TWO_DEVICES, two_device_fedavg


def test_a_secure_fleet_admits_its_devices_and_refuses_a_stranger(tmp_path: Path) -> None:
    path = tmp_path / "secure.toml"
    path.write_text(two_device_fedavg("secure", rounds=1, train_fraction=0.1))
    with LocalFleet(expand_selection(TWO_DEVICES), tmp_path / "fleet", secure=True) as fleet:
        assert fleet.root_certificates is not None
        exp = load_experiment(path)
        exp = replace(
            exp,
            superlink=replace(
                exp.superlink,
                address=fleet.address,
                insecure=False,
                root_certificates=fleet.root_certificates,
            ),
        )
        out = tmp_path / "results"
        out.mkdir()
        control = SuperLinkControl(exp)
        try:
            control.submit(exp, out)
            summary = fleet.wait_for_run(out, 600)
        finally:
            control.close()
        assert summary["status"] == "finished", summary

        # a stranger with the right CA and a key of its own that nobody registered
        key = make_node_keys(tmp_path / "stranger", "stranger").private_key
        argv = [sys.executable, "-m", "htfl", "agent", "--superlink", fleet.address]
        argv += ["--device-class", "jetson-nano", "--name", "jetson-nano-01"]
        argv += ["--metrics-port", "-1", "--data-dir", str(tmp_path / "stranger-data")]
        argv += ["--root-certificates", fleet.root_certificates, "--auth-private-key", str(key)]
        log = tmp_path / "stranger.log"
        with open(log, "wb") as out_fh:
            stranger = subprocess.Popen(
                argv, stdout=out_fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            code = stranger.wait(300)
        finally:
            stop_process_group(stranger)
        assert code != 0, log.read_text()[-2000:]
        superlink_log = (tmp_path / "fleet" / "superlink.log").read_text()
        assert "Attempted to register SuperNode" in superlink_log
    private = tmp_path / "fleet" / "pki" / "jetson-nano-01.key"
    assert private.stat().st_mode & 0o077 == 0  # private keys readable by their owner only
