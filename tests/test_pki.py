"""The lab's keys as ``htfl deploy`` makes them (htfl.workstation.deploy.pki): made once and
kept, private halves readable by their owner only, the SuperLink's certificate naming the
host devices dial; an inventory's ``htfl_secure``; and ``htfl deploy start`` refusing to start
agents that a SuperLink could not admit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509

from htfl.ports import free_port
from htfl.workstation.deploy.pki import make_lab_files, superlink_tls_argv
from htfl.workstation.inventory import load_inventory

REPO = Path(__file__).resolve().parents[1]


def _names(cert: Path) -> list[str]:
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in san]


def test_lab_files_are_made_once_kept_and_private(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    first = make_lab_files(pki, "10.0.0.100", ["nano-01", "opi-01"])
    contents = {p.name: p.read_bytes() for p in pki.iterdir()}
    assert set(contents) == {
        "ca.pem",
        "ca.key",
        "superlink.pem",
        "superlink.key",
        "nano-01.key",
        "nano-01.pub",
        "opi-01.key",
        "opi-01.pub",
    }
    assert pki.stat().st_mode & 0o777 == 0o700
    for key in pki.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert "10.0.0.100" in _names(first.server.cert)

    again = make_lab_files(pki, "10.0.0.100", ["nano-01", "opi-01"])
    assert again == first
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == contents  # nothing re-made

    # the SuperLink moved: a new certificate for it, from the same CA; device keys kept
    moved = make_lab_files(pki, "lab-server.local", ["nano-01", "opi-01"])
    assert "lab-server.local" in _names(moved.server.cert)
    assert (pki / "ca.pem").read_bytes() == contents["ca.pem"]
    assert (pki / "nano-01.key").read_bytes() == contents["nano-01.key"]
    assert superlink_tls_argv(moved.server)[-1] == "--enable-supernode-auth"


def _inventory(tmp_path: Path, superlink: str, secure: bool) -> Path:
    doc = {
        "all": {
            "vars": {"htfl_superlink": superlink, "htfl_secure": secure},
            "children": {
                "jetson_nano": {
                    "vars": {"htfl_device_class": "jetson-nano"},
                    "hosts": {"nano-01": {"ansible_host": "127.0.0.1"}},
                }
            },
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_inventory_says_whether_the_lab_is_secure(tmp_path: Path) -> None:
    assert load_inventory(_inventory(tmp_path, "10.0.0.100:8000", True), use_ansible=False).secure
    plain = load_inventory(_inventory(tmp_path, "10.0.0.100:8000", False), use_ansible=False)
    assert not plain.secure


def test_deploy_start_of_a_secure_lab_without_its_superlink_is_a_clear_error(
    tmp_path: Path,
) -> None:
    """The keys are made outside the checkout; the agents are not started, since a SuperLink
    that has not registered their keys would refuse them."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    pki = tmp_path / "pki"
    proc = subprocess.run(
        [sys.executable, "-m", "htfl", "deploy", "start", "--pki", str(pki)]
        + ["--inventory", str(_inventory(tmp_path, address, True))]
        + ["--artifacts", str(tmp_path / "artifacts")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"cannot register the devices' keys with the SuperLink at {address}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (pki / "nano-01.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "artifacts").exists()  # no playbook ran
