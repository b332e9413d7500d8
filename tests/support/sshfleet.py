"""A fleet of local "devices" reachable over real SSH, for the deploy tests and benchmark.

Each device is one OpenSSH server (Debian's ``sshd``) on its own loopback address
(127.0.0.11, .12, ...) and port, with its own host key, authorized_keys and install prefix,
so two devices share no files. Ansible reaches them exactly as it reaches a board: ssh with a
key, host keys checked against a known_hosts file written here.

Ansible logs in as a test admin account (``htfl<tag>a``, shell /bin/sh, passwordless sudo
through /etc/sudoers.d/htfl-sshfleet-<tag>; the device accounts are ``htfl<tag>1``, ... ; the
tag is random per fleet, and :meth:`SshFleet.stop` removes them all) and becomes root
with sudo, as on the boards. (Logging in as root would work too, but root's shell start-up
here runs pyenv's init for every command Ansible sends.)

The devices are all "lattepanda-delta-3" (the x86-64 class, recipe debian-x86, the one recipe
this machine can run) with the supervised service mode (no systemd here). To keep provisioning
fast, torch and flwr are not installed per device: each device's venv is made by Debian's
``/usr/bin/python3 -m venv --system-site-packages`` and sees a shared, read-only site directory
(symlinks to this interpreter's packages, htfl itself left out) through a ``.pth`` file; the
htfl wheel is installed into each venv for real.

Needs root (sshd, accounts, sudoers), Debian's openssh-server, sudo, python3-venv and
python3-apt, and a /usr/bin/python3 of the same minor version as this interpreter.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from htfl.ports import free_port, wait_for_port
from htfl.workstation.deploy.paths import deploy_dir

SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"
DEVICE_CLASS = "lattepanda-delta-3"
#: Entries of site-packages that the shared site directory leaves out.
_NOT_SHARED = ("htfl", "__editable__", "_htfl", "pip", "setuptools", "_distutils_hack")


class SshFleetError(RuntimeError):
    pass


def missing_requirements() -> list[str]:
    """What this machine lacks to run an SSH fleet (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (sshd and per-device service accounts)")
    for path, package in (
        (SSHD, "openssh-server"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
        (SYSTEM_PYTHON, "python3"),
        ("/usr/bin/setpriv", "util-linux"),
        ("/usr/bin/sudo", "sudo"),
    ):
        if not Path(path).exists():
            missing.append(f"{path} (apt package {package})")
    if Path(SYSTEM_PYTHON).exists():
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys, ensurepip, apt; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            missing.append("python3-venv and python3-apt for /usr/bin/python3")
        elif probe.stdout.strip() != str(tuple(sys.version_info[:2])):
            missing.append(
                f"/usr/bin/python3 {probe.stdout.strip()} differs from this Python "
                f"{sys.version_info[:2]} (the shared site directory needs the same minor)"
            )
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        missing.append("ansible-runner (pip install '.[deploy]')")
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        missing.append("ansible-playbook in this venv (pip install '.[deploy]')")
    return missing


def write_inventory(
    inv_dir: Path, superlink: str, device_class: str, hosts: dict[str, dict[str, Any]]
) -> Path:
    """``inv_dir``/hosts.yml: ``hosts`` (name -> host variables) as one group of
    ``device_class``; ``inv_dir`` links deploy/'s group_vars, so the class's recipe applies."""
    inv_dir = inv_dir.resolve()
    inv_dir.mkdir(parents=True, exist_ok=True)
    group_vars = inv_dir / "group_vars"
    if not group_vars.exists():
        group_vars.symlink_to(deploy_dir() / "inventory" / "group_vars")
    doc = {
        "all": {
            "vars": {"htfl_superlink": superlink},
            "children": {
                device_class.replace("-", "_"): {
                    "vars": {"htfl_device_class": device_class},
                    "hosts": hosts,
                }
            },
        }
    }
    out = inv_dir / "hosts.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@dataclass
class SshHost:
    name: str
    address: str
    port: int
    user: str  # the service account the agent runs as
    root: Path  # everything of this device lives below
    exporter_port: int
    proc: subprocess.Popen | None = None

    @property
    def prefix(self) -> Path:
        return self.root / "opt" / "htfl"


@dataclass
class SshFleet:
    """``count`` SSH devices under ``base`` (made private to this fleet, removed by stop)."""

    count: int
    superlink: str = "127.0.0.1:9"
    base: Path | None = None
    name_prefix: str = "panda-t"
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: list[SshHost] = field(default_factory=list)
    _users_made: list[str] = field(default_factory=list)

    @property
    def admin(self) -> str:
        return f"htfl{self.tag}a"

    @property
    def sudoers(self) -> Path:
        return Path(f"/etc/sudoers.d/htfl-sshfleet-{self.tag}")

    # -- setup ---------------------------------------------------------------------------
    def start(self) -> SshFleet:
        missing = missing_requirements()
        if missing:
            raise SshFleetError("cannot start an SSH fleet; missing: " + "; ".join(missing))
        if self.base is None:
            # Not under pytest's tmp (mode 0700): the service accounts must reach their prefix.
            self.base = Path(tempfile.mkdtemp(prefix="htfl-sshfleet-"))
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        key = self.base / "admin_key"
        if not key.exists():
            keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "htfl-deploy-test"]
            subprocess.run([*keygen, "-f", key], check=True)
        known = []
        for i in range(1, self.count + 1):
            host = self._start_host(i)
            self.hosts.append(host)
            pub = (host.root / "etc" / "ssh_host_ed25519_key.pub").read_text().split()
            known.append(f"[{host.address}]:{host.port} {pub[0]} {pub[1]}")
        (self.base / "known_hosts").write_text("\n".join(known) + "\n")
        self._admin_account()
        self._shared_site()
        return self

    def _admin_account(self) -> None:
        home = self.base / "admin-home"
        if subprocess.run(["id", self.admin], capture_output=True).returncode != 0:
            subprocess.run(
                ["useradd", "--system", "--create-home", "--home-dir", str(home)]
                + ["--shell", "/bin/sh", self.admin],
                check=True,
            )
        else:
            subprocess.run(["usermod", "--home", str(home), self.admin], check=True)
            home.mkdir(exist_ok=True)
            shutil.chown(home, self.admin, self.admin)
        # No password, but not locked: sshd (without PAM) refuses keys for a locked account.
        subprocess.run(["usermod", "--password", "*", self.admin], check=True)
        rule = f"Defaults:{self.admin} !requiretty\n{self.admin} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        tmp = self.sudoers.with_suffix(".tmp")
        tmp.write_text(rule)
        os.chmod(tmp, 0o440)
        subprocess.run(["visudo", "-cq", "-f", str(tmp)], check=True)
        tmp.rename(self.sudoers)
        for host in self.hosts:  # the admin's authorized_keys, as ~/.ssh/authorized_keys is
            shutil.chown(host.root / "admin_authorized_keys", self.admin, self.admin)

    def _start_host(self, i: int) -> SshHost:
        address = f"127.0.0.{10 + i}"
        root = self.base / "hosts" / f"{self.name_prefix}{i}"
        etc = root / "etc"
        (etc / "udev" / "rules.d").mkdir(parents=True, exist_ok=True)
        host_key = etc / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True
            )
        authorized = root / "admin_authorized_keys"
        admin_pub = (self.base / "admin_key.pub").read_text()
        if not authorized.exists():
            authorized.write_text(admin_pub)
        port = free_port(address)
        config = etc / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    f"ListenAddress {address}",
                    f"HostKey {host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxStartups 200",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        log = root / "sshd.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(port, 10.0, proc, log, host=address, what=f"sshd on {address}")
        except RuntimeError as err:
            raise SshFleetError(f"{err}: {log.read_text()[-2000:]}") from None
        return SshHost(
            name=f"{self.name_prefix}{i}",
            address=address,
            port=port,
            user=f"htfl{self.tag}{i}",
            root=root,
            exporter_port=free_port(),
            proc=proc,
        )

    def _shared_site(self) -> None:
        """Symlinks to this interpreter's packages except htfl's own: torch, flwr and the rest."""
        shared = self.base / "shared-site"
        if shared.exists():
            return
        shared.mkdir()
        site = Path(sysconfig.get_paths()["purelib"])
        for entry in sorted(site.iterdir()):
            if entry.name.startswith(_NOT_SHARED) or entry.suffix == ".pth":
                continue
            (shared / entry.name).symlink_to(entry)

    # -- inventory -----------------------------------------------------------------------
    def host_vars(self, host: SshHost) -> dict[str, Any]:
        return {
            "ansible_host": host.address,
            "ansible_port": host.port,
            "ansible_user": self.admin,
            "ansible_become": True,
            "ansible_python_interpreter": SYSTEM_PYTHON,
            "ansible_ssh_private_key_file": str(self.base / "admin_key"),
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={self.base / 'known_hosts'} -o StrictHostKeyChecking=yes"
            ),
            # This device's own tree and service account.
            "htfl_prefix": str(host.prefix),
            "htfl_user": host.user,
            "htfl_admin_authorized_keys": [(self.base / "admin_key.pub").read_text().strip()],
            "htfl_admin_authorized_keys_file": str(host.root / "admin_authorized_keys"),
            "htfl_udev_rules_dir": str(host.root / "etc" / "udev" / "rules.d"),
            "htfl_exporter_port": host.exporter_port,
            "htfl_meter": {"driver": "simulated", "idle_watts": 4.0, "busy_watts": 12.0},
            # What this machine is not: no systemd, no udev daemon, the clock is the host's,
            # the apt lists are as CI left them.
            "htfl_service_manager": "supervised",
            "htfl_udev_reload": False,
            "htfl_manage_chrony": False,
            "htfl_apt_update_cache": False,
            # torch and flwr come from the shared site directory, not from pip.
            "htfl_venv_system_site_packages": True,
            "htfl_venv_extra_site_dirs": [str(self.base / "shared-site")],
            "htfl_torch_source": "base",
            "htfl_torch_threads": 1,
            "htfl_service_settle_seconds": 2,
        }

    def write_inventory(
        self,
        path: Path | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        extra_hosts: dict[str, dict[str, Any]] | None = None,
        device_class: str = DEVICE_CLASS,
    ) -> Path:
        """An inventory of these hosts in a directory that links deploy/'s group_vars."""
        hosts = {}
        for host in self.hosts:
            hv = self.host_vars(host)
            hv.update((overrides or {}).get(host.name, {}))
            hosts[host.name] = hv
        hosts.update(extra_hosts or {})
        return write_inventory(path or self.base / "inventory", self.superlink, device_class, hosts)

    # -- inspection and teardown ---------------------------------------------------------
    def agent_processes(self) -> list[tuple[int, str, str]]:
        """(pid, user, command line) of live processes started from any device's prefix."""
        import psutil

        marks = [str(h.prefix) for h in self.hosts]
        found = []
        for proc in psutil.process_iter(["pid", "username", "cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if any(m in cmd for m in marks):
                found.append((proc.info["pid"], proc.info.get("username") or "?", cmd))
        return found

    def _account_processes(self) -> list[int]:
        """Processes of this fleet's accounts: agents a failed test left, and the sshd
        sessions that ssh's ControlPersist keeps open after the sshd listeners are gone."""
        import psutil

        users = {h.user for h in self.hosts} | {self.admin}
        return [
            p.info["pid"]
            for p in psutil.process_iter(["pid", "username"])
            if p.info.get("username") in users
        ]

    def stop(self, remove: bool = True) -> None:
        for pid, _user, _cmd in self.agent_processes():  # a failed test may leave agents
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for host in self.hosts:
            if host.proc and host.proc.poll() is None:
                host.proc.terminate()
                try:
                    host.proc.wait(5)
                except subprocess.TimeoutExpired:
                    host.proc.kill()
                    host.proc.wait()
        self.sudoers.unlink(missing_ok=True)
        for pid in self._account_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        for user in [h.user for h in self.hosts] + [self.admin]:
            for cmd in (["userdel", "--force", user], ["groupdel", user]):
                subprocess.run(cmd, capture_output=True)
        if remove and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> SshFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
