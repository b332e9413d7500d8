"""The aarch64 recipe, proven here before a board: an arm64 Debian root filesystem under QEMU
user-mode emulation is provisioned by the real playbook over ssh, its agent joins a real
SuperLink on this machine and completes one round.

Runs ``python -m benchmarks.aarch64_qemu`` as a user would (its table is the timing the issue
asks for: rootfs, provisioning, pip install torch under emulation, agent start, round) and checks
what it left: the provisioning outcome, the device's row and that the agent ran aarch64.
Needs root and the apt packages in deploy/ci-requirements.apt (qemu-user-static,
binfmt-support, debootstrap, podman); see tests/support/arm64_rootfs.py. First run on a
machine: the rootfs is built (minutes) and the aarch64 wheels downloaded (torch: 146 MB), both
cached under ~/.cache/htfl.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from htfl.workstation.server.results import read_rows
from tests.deploy.conftest import REPO, require
from tests.support.arm64_rootfs import DEVICE_CLASS, missing_requirements

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.benchmark, pytest.mark.qemu]


@pytest.mark.timeout(3600)
def test_emulated_arm64_board_is_provisioned_and_completes_a_round(tmp_path) -> None:
    require(missing_requirements())
    results, outcome_file = tmp_path / "results", tmp_path / "outcome.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.aarch64_qemu"]
        + ["--results", str(results), "--json", str(outcome_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3500,
    )
    print(proc.stdout)  # the timing table, shown with -s or -rA
    assert proc.returncode == 0, proc.stderr[-6000:]
    for phase in ("rootfs", "provision", "provision: pip install torch", "agent start", "round"):
        assert f"\n{phase} " in proc.stdout, (phase, proc.stdout)
    outcome = json.loads(outcome_file.read_text())

    # The real playbook installed it and the agent runs the build it was given.
    provision = outcome["provision"]["hosts"]["opi-arm64"]
    assert provision["outcome"] == "changed" and provision["failed"] == 0, provision
    status = outcome["start"]["published"]["opi-arm64"]["htfl_agent_status"]
    assert status["state"] == "running", status

    # One round finished with the emulated board's row, and the agent said it is aarch64.
    out = results / "aarch64-qemu"
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    rows = read_rows(out)
    assert [(r["round"], r["device"], r["status"]) for r in rows] == [("1", "opi-arm64", "ok")]
    assert float(rows[0]["train_seconds"]) > 0 and int(rows[0]["num_train"]) > 0
    (device,) = json.loads((out / "devices.json").read_text())
    assert device["device_class"] == DEVICE_CLASS
    assert device["info_machine"] == "aarch64", device
    assert device["info_python"].startswith("3.11"), device

    # The stop left no agent on the device.
    assert "htfl agent" not in outcome["processes"], outcome["processes"]
