"""An emulated aarch64 "board" on this x86-64 machine: a Debian arm64 root filesystem run
under QEMU user-mode emulation, reachable over real SSH, for provisioning with deploy/.

Three steps, each a well-kept tool doing its one job:

1. **binfmt_misc** (kernel) + Debian's ``qemu-user-static`` + ``binfmt-support``'s
   ``update-binfmts``: every aarch64 ELF the kernel is asked to run goes to
   ``qemu-aarch64``. Debian registers it with the ``F`` (fix binary) flag, so the interpreter is
   opened once on the host and works inside chroots and containers that do not contain it.
2. **debootstrap** ``--arch=arm64 --foreign`` (download and unpack on the host), then its second
   stage under emulation in a chroot: Debian 12 (bookworm; Python 3.11, which flwr 1.41 needs)
   with what a board image ships (sshd, sudo, Python 3 with venv and apt bindings). The result
   is a tarball in the cache directory (``$HTFL_CACHE_DIR``, default ``~/.cache/htfl``), named
   by the inputs, so it is built once per machine (minutes under emulation).
3. **podman**: the tarball is imported as an arm64 image and run with host networking, its
   command ``sshd`` on a loopback address of its own; root logs in with a key (host key checked
   against a known_hosts written here). The container is the board: ``podman rm -f`` removes
   it with every process the playbook started in it.

Root logs in (not an admin account with sudo as on a board): under binfmt_misc the kernel
ignores the set-uid bit of an emulated binary unless the handler has the ``C`` flag, which
Debian's does not set, so ``sudo`` from an unprivileged account cannot become root here.
Ansible's ``become`` still runs sudo, as root.

pip's cache directory on the device is a bind mount of ``<cache>/arm64-pip``, so reruns take
the aarch64 wheels from the cache rather than from PyPI (pip still installs them, under
emulation). Needs root, and the apt packages in deploy/ci-requirements.apt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from htfl.ports import free_port, wait_for_port
from htfl.workstation.fleet.base_image import image_exists, podman_env
from tests.support.sshfleet import write_inventory

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_HANDLER = "qemu-aarch64"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: What a board's Debian image ships before htfl's playbook: sshd, sudo, Python 3 with venv
#: and apt bindings (Ansible's apt module), CA certificates, ps. The playbook installs the rest.
PACKAGES = (
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-apt",
    "sudo",
    "procps",
    "ca-certificates",
)
DEVICE_CLASS = "orange-pi-5b"  # the debian-arm64 recipe
DEVICE_ADDRESS = "127.0.0.21"
LABEL = "htfl-test=arm64-device"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: The newest CPU-only aarch64 torch on PyPI (146 MB; its METADATA requires nvidia-* and
#: triton on x86_64 only). From 2.11.0 PyPI's aarch64 torch is a CUDA 13 build (~420 MB plus
#: cuda-toolkit, cuDNN, NCCL, triton: GBs), and 2.13.0 (the recipe's default, which the
#: orange-pi-5b class takes from PyTorch's CPU index instead) dies with SIGSEGV on import under
#: Debian 12's qemu 7.2 when installed from PyPI. The workstation index is not reachable from CI.
TORCH_SPEC = "torch==2.10.0"


class Arm64Error(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("HTFL_CACHE_DIR") or Path.home() / ".cache" / "htfl")


def rootfs_key() -> str:
    """Names the tarball and the image by what went into them: a change rebuilds."""
    text = json.dumps([SUITE, "minbase", sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def rootfs_tar() -> Path:
    return cache_dir() / f"arm64-rootfs-{SUITE}-{rootfs_key()}.tar"


def image_name() -> str:
    return f"localhost/htfl-arm64-device:{rootfs_key()}"


def missing_requirements() -> list[str]:
    """What this machine lacks to run an emulated arm64 device (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (binfmt_misc, debootstrap, podman)")
    for program, package in (
        ("debootstrap", "debootstrap"),
        ("update-binfmts", "binfmt-support"),
        ("podman", "podman"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ):
        if shutil.which(program) is None:
            missing.append(f"{program} (apt package {package})")
    if not Path("/usr/share/binfmts/qemu-aarch64").exists():
        missing.append("qemu-aarch64 binfmt entry (apt package qemu-user-static)")
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        missing.append("ansible-playbook in this venv (pip install '.[deploy]')")
    return missing


def ensure_binfmt() -> str:
    """Mount binfmt_misc and enable the aarch64 handler if needed; returns its flags."""
    if not (BINFMT / "register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            check=True,
            capture_output=True,
        )
    entry = BINFMT / QEMU_HANDLER
    if not entry.exists() or entry.read_text().splitlines()[0] != "enabled":
        done = subprocess.run(
            ["update-binfmts", "--enable", QEMU_HANDLER], capture_output=True, text=True
        )
        if done.returncode != 0 or not entry.exists():
            raise Arm64Error(f"update-binfmts --enable {QEMU_HANDLER} failed: {done.stderr}")
    fields = dict(line.split(" ", 1) for line in entry.read_text().splitlines()[1:] if " " in line)
    flags = fields.get("flags:", "").strip()
    if "F" not in flags:
        raise Arm64Error(
            f"{entry}: flags {flags!r} lack F (fix binary): the interpreter would have to be "
            "inside the root filesystem; reinstall Debian's qemu-user-static"
        )
    return flags


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (test workers, a benchmark beside them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_rootfs(mirror: str = MIRROR, log: Path | None = None) -> tuple[Path, float]:
    """The cached arm64 root filesystem tarball: (path, seconds spent building it now; 0 when
    it was cached)."""
    tar = rootfs_tar()
    with _locked(tar.with_suffix(".lock")):
        if tar.exists():
            return tar, 0.0
        ensure_binfmt()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="htfl-arm64-", dir=tar.parent) as tmp:
            root = Path(tmp) / "rootfs"
            steps = [
                ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase"]
                + [f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror],
                # the second stage runs the arm64 maintainer scripts: under emulation
                ["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"],
            ]
            with open(log or os.devnull, "ab") as out:
                for argv in steps:
                    done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
                    if done.returncode != 0:
                        raise Arm64Error(f"{argv[0]} failed (rc {done.returncode}); log: {log}")
            # what an image leaves out: downloaded packages; the mirror for the playbook's apt
            for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                deb.unlink()
            (root / "etc" / "apt" / "sources.list").write_text(f"deb {mirror} {SUITE} main\n")
            partial = Path(tmp) / "rootfs.tar"
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True
            )
            partial.rename(tar)  # whole or not at all
        return tar, time.monotonic() - started


def ensure_image(tar: Path) -> float:
    """Import the tarball as an arm64 image unless it exists; seconds spent now."""
    if image_exists(image_name()):
        return 0.0
    started = time.monotonic()
    subprocess.run(
        ["podman", "import", "--arch", "arm64", str(tar), image_name()],
        env=podman_env(),
        check=True,
        capture_output=True,
        timeout=900,
    )
    return time.monotonic() - started


@dataclass
class Arm64Device:
    """One emulated arm64 board (a podman container running sshd), as an inventory host."""

    name: str = "opi-arm64"
    superlink: str = "127.0.0.1:9"
    base: Path | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    address: str = DEVICE_ADDRESS
    port: int = 0
    exporter_port: int = 0

    @property
    def container(self) -> str:
        return f"htfl-arm64-{self.tag}"

    def start(self, timeout: float = 120.0) -> Arm64Device:
        missing = missing_requirements()
        if missing:
            raise Arm64Error("cannot start an arm64 device; missing: " + "; ".join(missing))
        ensure_binfmt()
        if self.base is None:
            self.base = Path(tempfile.mkdtemp(prefix="htfl-arm64-dev-"))
        ssh = self.base / "ssh"
        ssh.mkdir(parents=True, exist_ok=True)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run(
            [*keygen, "-C", "htfl-arm64-admin", "-f", self.base / "admin_key"], check=True
        )
        subprocess.run([*keygen, "-f", ssh / "ssh_host_ed25519_key"], check=True)
        shutil.copy(self.base / "admin_key.pub", ssh / "admin_key.pub")
        # The device trusts what this machine trusts (where PyPI is reached through a
        # TLS-inspecting proxy, its CA is in the system bundle): pip on the device uses it.
        shutil.copy(HOST_CA_BUNDLE, ssh / "ca-certificates.crt")
        self.port = free_port(self.address)
        self.exporter_port = free_port()
        (ssh / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.address}",
                    "HostKey /etc/htfl-ssh/ssh_host_ed25519_key",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "MaxStartups 50",
                    "MaxSessions 50",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        host_pub = (ssh / "ssh_host_ed25519_key.pub").read_text().split()
        (self.base / "known_hosts").write_text(
            f"[{self.address}]:{self.port} {host_pub[0]} {host_pub[1]}\n"
        )
        pip_cache = cache_dir() / "arm64-pip"
        pip_cache.mkdir(parents=True, exist_ok=True)
        boot = (
            "mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh"
            " && printf '[global]\\ncert = /etc/htfl-ssh/ca-certificates.crt\\n' > /etc/pip.conf"
            " && cp /etc/htfl-ssh/admin_key.pub /root/.ssh/authorized_keys"
            " && chmod 600 /root/.ssh/authorized_keys"
            " && exec /usr/sbin/sshd -D -e -f /etc/htfl-ssh/sshd_config"
        )
        log = self.base / "container.log"
        subprocess.run(
            ["podman", "run", "-d", "--pull", "never", "--arch", "arm64"]
            + ["--name", self.container, "--label", LABEL, "--hostname", self.name]
            + ["--add-host", f"{self.name}:127.0.1.1"]
            + ["--network", "host", "-v", f"{ssh}:/etc/htfl-ssh:ro"]
            + ["-v", f"{pip_cache}:/root/.cache/pip", image_name(), "/bin/sh", "-c", boot],
            env=podman_env(),
            check=True,
            capture_output=True,
            timeout=120,
        )
        try:
            wait_for_port(self.port, timeout, host=self.address, what=f"sshd in {self.container}")
        except RuntimeError as err:
            logs = subprocess.run(
                ["podman", "logs", self.container], env=podman_env(), capture_output=True, text=True
            )
            log.write_text(logs.stdout + logs.stderr)
            raise Arm64Error(f"{err}: {(logs.stdout + logs.stderr)[-2000:]}") from None
        return self

    def exec(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command on the device (in the container), for checks."""
        return subprocess.run(
            ["podman", "exec", self.container, *argv],
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def host_vars(self) -> dict[str, Any]:
        assert self.base is not None
        return {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(self.base / "admin_key"),
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={self.base / 'known_hosts'} -o StrictHostKeyChecking=yes"
            ),
            "htfl_exporter_port": self.exporter_port,
            "htfl_exporter_host": "127.0.0.1",
            "htfl_meter": {"driver": "simulated", "idle_watts": 4.0, "busy_watts": 12.0},
            # What a container is not: no init system, no udev daemon; the clock is the host's.
            "htfl_service_manager": "supervised",
            "htfl_udev_reload": False,
            "htfl_manage_chrony": False,
            # PyPI, not PyTorch's CPU index (not reachable from CI): see TORCH_SPEC.
            "htfl_torch_spec": TORCH_SPEC,
            "htfl_torch_pip_args": [],
            "htfl_torch_threads": 2,
            # an agent takes tens of seconds to import torch and flwr under emulation
            "htfl_service_settle_seconds": 5,
        }

    def write_inventory(self, path: Path | None = None) -> Path:
        """An inventory of this device in a directory that links deploy/'s group_vars."""
        assert self.base is not None
        inv_dir = path or self.base / "inventory"
        return write_inventory(inv_dir, self.superlink, DEVICE_CLASS, {self.name: self.host_vars()})

    def stop(self, remove: bool = True) -> None:
        """Remove the container (and with it every process started in it)."""
        subprocess.run(
            ["podman", "rm", "-f", "-t", "5", self.container],
            env=podman_env(),
            capture_output=True,
            timeout=120,
        )
        if remove and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Arm64Device:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
