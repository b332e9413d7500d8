"""`htfl deploy` against two local devices over real SSH, then a real experiment on them.

Needs root (see tests/deploy/README). The tests run in order and share one fleet: provision
(twice: the second run must change nothing), facts, an unreachable device, start, a 2-round
FedProto run on a local SuperLink, logs, stop. The lab is secure (``htfl_secure``): htfl deploy
makes the CA, the SuperLink's certificate and each device's key outside the checkout, each
device gets its own key and the CA, and the agents join the SuperLink over TLS with SuperNode
authentication.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from htfl.ports import free_port
from htfl.workstation.deploy.pki import ServerFiles
from htfl.workstation.deploy.wheel import build_wheel
from htfl.workstation.local_fleet import flower_env, start_superlink, stop_process_group
from tests.deploy.conftest import REPO, htfl_deploy, require
from tests.support.sshfleet import SshFleet, missing_requirements

# One SSH fleet for the module and its tests in order (make test's --dist loadscope keeps a
# module on one worker).
pytestmark = [pytest.mark.integration, pytest.mark.root]

EXPERIMENT = """
[experiment]
id = "deploy-ssh"
rounds = 2
seed = 3
eval_every = 1
[algorithm]
name = "fedproto"
[algorithm.params]
lamda = 1.0
[data]
dataset = "digits"
partition = "iid"
[training]
batch_size = 32
learning_rate = 0.05
momentum = 0.9
[devices]
classes = {{ "lattepanda-delta-3" = 2 }}
deadline_seconds = 120
min_replies = 2
[models]
feature_dim = 32
"lattepanda-delta-3" = "cnn4"
[superlink]
address = "{address}"
insecure = false
root_certificates = "{ca}"
"""


@dataclass
class Lab:
    fleet: SshFleet
    inventory: Path
    wheel: Path
    wheel_sha: str
    work: Path
    superlink: subprocess.Popen | None = None
    superlink_address: str = ""

    @property
    def pki(self) -> Path:
        """Where htfl deploy keeps this lab's keys (outside the checkout)."""
        return self.work / "pki"

    def deploy(self, action: str, *extra: str, inventory: Path | None = None):
        return htfl_deploy(
            action,
            "--inventory",
            str(inventory or self.inventory),
            "--artifacts",
            str(self.work / "artifacts"),
            "--pki",
            str(self.pki),
            "-e",
            "htfl_secure=true",
            *extra,
            json_path=self.work / f"{action}.json",
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    require(missing_requirements())
    work = tmp_path_factory.mktemp("deploy-ssh")
    # The SuperLink's port is known before the inventory is written; it starts later.
    fleet = SshFleet(2, superlink=f"127.0.0.1:{free_port()}")
    try:
        fleet.start()
        wheel = build_wheel(fleet.base / "wheel")  # one build for every run of this module
        lab = Lab(fleet, fleet.write_inventory(), wheel.path, wheel.sha256, work)
        lab.superlink_address = fleet.superlink
        yield lab
    finally:
        if "lab" in locals() and lab.superlink is not None:
            stop_process_group(lab.superlink)
        fleet.stop()


def _summary(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\nSTDERR:\n{proc.stderr[-6000:]}"


def test_provision_installs_every_device_and_a_second_run_changes_nothing(lab: Lab) -> None:
    datasets = lab.work / "datasets"
    (datasets / "common").mkdir(parents=True)
    (datasets / "common" / "labels.txt").write_text("0 1 2 3 4 5 6 7 8 9\n")
    (datasets / "panda-t1").mkdir()
    (datasets / "panda-t1" / "shard-0.txt").write_text("only for panda-t1\n")
    args = ("--wheel", str(lab.wheel), "--datasets", str(datasets))

    proc, first = lab.deploy("provision", *args)
    assert proc.returncode == 0, _summary(proc)
    assert set(first["hosts"]) == {"panda-t1", "panda-t2"}
    for name, host in first["hosts"].items():
        assert host["outcome"] == "changed" and host["failed"] == host["unreachable"] == 0, name
    # The recap table and the per-host progress are what a person sees.
    assert "panda-t1" in proc.stderr and "unreachable" in proc.stderr

    for host in lab.fleet.hosts:
        prefix = host.prefix
        build = json.loads((prefix / "state" / "build.json").read_text())
        assert build["sha256"] == lab.wheel_sha  # the exact build from the workstation
        installed = subprocess.run(
            [prefix / "venv" / "bin" / "python", "-c", "import htfl; print(htfl.__file__)"],
            capture_output=True,
            text=True,
            cwd=host.root,  # not the checkout, whose htfl/ would come first
        )
        assert installed.stdout.startswith(str(prefix / "venv")), installed
        # The device install is the device wheel: no workstation code, device commands only.
        htfl = prefix / "venv" / "bin" / "htfl"
        agent = subprocess.run([htfl, "agent", "--help"], capture_output=True, text=True)
        assert agent.returncode == 0, agent.stderr
        deploy = subprocess.run([htfl, "deploy", "--help"], capture_output=True, text=True)
        assert deploy.returncode == 2 and "invalid choice" in deploy.stderr, deploy
        assert not (Path(installed.stdout.strip()).parent / "workstation").exists()
        assert (prefix / "bin" / "htfl-agentctl").exists()
        assert (prefix / "bin" / "htfl-supervise").exists()
        assert [w.name for w in (prefix / "wheels").iterdir()] == [lab.wheel.name]
        account = pwd.getpwnam(host.user)  # the service account exists
        assert (prefix / "log").stat().st_uid == account.pw_uid
        rules = host.root / "etc" / "udev" / "rules.d" / "99-htfl-power-meters.rules"
        assert 'KERNEL=="rfcomm[0-9]*"' in rules.read_text()
        assert (prefix / "data" / "labels.txt").read_text().startswith("0 1 2")
        # Its own key (owner only) and the lab's CA; the agent's command line carries them.
        keys = prefix / "pki"
        assert (keys / "node.key").read_bytes() == (lab.pki / f"{host.name}.key").read_bytes()
        assert (keys / "node.key").stat().st_mode & 0o777 == 0o600
        assert (keys / "node.key").stat().st_uid == account.pw_uid
        assert keys.stat().st_mode & 0o777 == 0o700
        assert (keys / "ca.pem").read_bytes() == (lab.pki / "ca.pem").read_bytes()
        assert sorted(p.name for p in keys.iterdir()) == ["ca.pem", "node.key"]
        argv = (prefix / "bin" / "htfl-supervise").read_text()
        assert f"--auth-private-key {keys / 'node.key'}" in argv, argv
        assert f"--root-certificates {keys / 'ca.pem'}" in argv, argv
    # The workstation's copy: private keys readable by their owner only, outside the checkout.
    assert lab.pki.stat().st_mode & 0o777 == 0o700
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in lab.pki.glob("*.key"))
    # Shards for one device go to that device only: the two share no files.
    assert (lab.fleet.hosts[0].prefix / "data" / "shard-0.txt").exists()
    assert not (lab.fleet.hosts[1].prefix / "data" / "shard-0.txt").exists()

    proc, second = lab.deploy("provision", *args)
    assert proc.returncode == 0, _summary(proc)
    for name, host in second["hosts"].items():
        assert host["changed"] == 0 and host["outcome"] == "ok", (name, proc.stderr[-4000:])


def test_facts_check_passes_and_names_a_device_of_the_wrong_class(lab: Lab) -> None:
    proc, facts = lab.deploy("facts")
    assert proc.returncode == 0, _summary(proc)
    for name in ("panda-t1", "panda-t2"):
        record = facts["published"][name]["htfl_device_facts"]
        assert record["arch"] == "x86_64" and record["python"].startswith("3.11")
        assert record["torch"] and record["flwr"].startswith("1.41")
        # One clock here: the estimate must be within its own error bound of zero.
        assert abs(record["clock_offset_ms"]) <= record["clock_uncertainty_ms"] + 1
    assert "device facts" in proc.stderr

    wrong = lab.fleet.write_inventory(lab.work / "wrong-class", device_class="orange-pi-5b")
    proc, outcome = lab.deploy("facts", inventory=wrong)
    assert proc.returncode == 1, _summary(proc)
    assert all(h["outcome"] == "failed" for h in outcome["hosts"].values())
    assert "is x86_64, but class orange-pi-5b is aarch64" in proc.stderr


def test_an_unreachable_device_does_not_stop_the_others(lab: Lab) -> None:
    dead = {
        "panda-dead": {
            **lab.fleet.host_vars(lab.fleet.hosts[0]),
            "ansible_host": "127.0.0.99",
            "ansible_port": 9,  # nothing listens there
        }
    }
    inventory = lab.fleet.write_inventory(lab.work / "with-dead", extra_hosts=dead)
    proc, outcome = lab.deploy("status", inventory=inventory)
    assert proc.returncode == 1, _summary(proc)
    assert outcome["hosts"]["panda-dead"]["outcome"] == "unreachable"
    for name in ("panda-t1", "panda-t2"):
        assert outcome["hosts"][name]["outcome"] == "ok"
        assert outcome["published"][name]["htfl_agent_status"]["state"] == "stopped"


def test_agents_start_join_the_superlink_finish_an_experiment_and_stop(lab: Lab) -> None:
    port = int(lab.superlink_address.rsplit(":", 1)[1])
    home = lab.work / "superlink"
    tls = ServerFiles(lab.pki / "ca.pem", lab.pki / "superlink.pem", lab.pki / "superlink.key")
    lab.superlink = start_superlink(
        port, home / "superlink.log", flower_env(home / "flwr-home"), tls=tls
    )
    address = lab.superlink_address

    proc, started = lab.deploy("start")
    assert proc.returncode == 0, _summary(proc)
    assert all(h["changed"] == 1 for h in started["hosts"].values()), started["hosts"]
    for host in lab.fleet.hosts:
        status = started["published"][host.name]["htfl_agent_status"]
        assert status["state"] == "running" and status["build"] == lab.wheel_sha
    # Each agent runs from its own prefix, as its own service account.
    users = {user for _pid, user, cmd in lab.fleet.agent_processes() if " agent " in cmd}
    assert users == {h.user for h in lab.fleet.hosts}

    proc, again = lab.deploy("start")  # already running: nothing changes
    assert proc.returncode == 0, _summary(proc)
    assert all(h["changed"] == 0 for h in again["hosts"].values())

    exp = lab.work / "exp.toml"
    exp.write_text(EXPERIMENT.format(address=address, ca=lab.pki / "ca.pem"))
    results = lab.work / "results"
    run = subprocess.run(
        [sys.executable, "-m", "htfl", "run", str(exp), "--results", str(results)]
        + ["--timeout", "300"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out_dir = results / "deploy-ssh"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    devices = json.loads((out_dir / "devices.json").read_text())
    assert sorted(d["device"] for d in devices) == ["panda-t1", "panda-t2"]
    from htfl.workstation.server.results import read_rows

    rows = read_rows(out_dir)
    assert sorted((int(r["round"]), r["device"]) for r in rows) == [
        (1, "panda-t1"),
        (1, "panda-t2"),
        (2, "panda-t1"),
        (2, "panda-t2"),
    ]
    assert all(r["status"] == "ok" for r in rows)

    # A new build rolls out one device at a time and restarts the running agents on it.
    snapshot = lab.work / "src-v2"
    snapshot.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, snapshot / name)
    shutil.copytree(REPO / "htfl", snapshot / "htfl", ignore=shutil.ignore_patterns("__pycache__"))
    with open(snapshot / "htfl" / "device" / "__init__.py", "a") as fh:
        fh.write("# build 2\n")
    v2 = build_wheel(lab.work / "wheel-v2", root=snapshot)
    before = {h: started["published"][h]["htfl_agent_status"]["pid"] for h in started["hosts"]}
    proc, updated = lab.deploy("update", "--wheel", str(v2.path), "-e", "htfl_update_batch=1")
    assert proc.returncode == 0, _summary(proc)
    for name in updated["hosts"]:
        status = updated["published"][name]["htfl_agent_status"]
        assert status["build"] == v2.sha256 and status["state"] == "running", status
        assert status["pid"] != before[name]  # restarted on the new build
    assert proc.stderr.count("Roll out the build") == 2  # one batch per device

    dest = lab.work / "device-logs"
    proc, _ = lab.deploy("logs", "--dest", str(dest))
    assert proc.returncode == 0, _summary(proc)
    for host in lab.fleet.hosts:
        log = (dest / host.name / "agent.log").read_text()
        assert "htfl-supervise: starting the agent" in log

    proc, stopped = lab.deploy("stop")
    assert proc.returncode == 0, _summary(proc)
    assert all(h["changed"] == 1 for h in stopped["hosts"].values())
    deadline = time.monotonic() + 5
    while lab.fleet.agent_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.fleet.agent_processes() == []
    for host in lab.fleet.hosts:
        assert not list((host.prefix / "run").glob("*.pid"))
