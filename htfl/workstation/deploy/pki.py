"""The lab's keys: a CA, the SuperLink's TLS certificate, and one key pair per device.

Flower 1.41 speaks TLS between SuperNodes and the SuperLink (``flower-superlink --ssl-certfile
--ssl-keyfile --ssl-ca-certfile``; ``flower-supernode --root-certificates``) and authenticates
SuperNodes by key pair (``--enable-supernode-auth``; ``--auth-supernode-private-key``). This
module makes those files with the ``cryptography`` package (no openssl command line): EC P-256
keys, certificates valid for a bounded time, private keys written atomically with mode 0600.
They live outside the repository (the deploy tree's ``pki`` directory is git-ignored by the
caller's choice of directory); only public halves are meant to be copied anywhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: how long the lab's certificates are valid
VALID_DAYS = 365


@dataclass(frozen=True)
class ServerFiles:
    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class NodeKeys:
    private_key: Path
    public_key: Path  # OpenSSH format, as Flower's SuperNode auth reads it


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_server_files(directory: Path, hosts: list[str], lab: str = "htfl lab") -> ServerFiles:
    """A CA (``ca.pem``, ``ca.key``) and the SuperLink's certificate for ``hosts`` (the names
    and addresses devices dial) signed by it (``superlink.pem``, ``superlink.key``). An
    existing CA in ``directory`` is reused, so devices keep trusting it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{lab} CA"))
            .issuer_name(_name(f"{lab} CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, _pem_key(ca_key), private=True)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = ServerFiles(ca_cert_path, directory / "superlink.pem", directory / "superlink.key")
    _write(files.key, _pem_key(key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return files


def make_node_keys(directory: Path, device: str) -> NodeKeys:
    """The key pair a device's SuperNode authenticates with (kept if it exists)."""
    keys = NodeKeys(directory / f"{device}.key", directory / f"{device}.pub")
    if keys.private_key.exists() and keys.public_key.exists():
        return keys
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    # OpenSSH format: what flower-supernode --auth-supernode-private-key reads
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    _write(keys.private_key, private, private=True)
    _write(keys.public_key, public + f" {device}\n".encode(), private=False)
    return keys


def public_key_pem(keys: NodeKeys) -> bytes:
    """The device's public key as the SuperLink's Control API registers it (PEM)."""
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def default_pki_dir() -> Path:
    """Where ``htfl deploy`` keeps the lab's keys: ``$HTFL_PKI_DIR``, else
    ``~/.config/htfl/pki`` (outside any checkout, so private keys never reach a repository)."""
    env = os.environ.get("HTFL_PKI_DIR")
    return Path(env) if env else Path.home() / ".config" / "htfl" / "pki"


@dataclass(frozen=True)
class LabFiles:
    directory: Path
    server: ServerFiles
    nodes: dict[str, NodeKeys]


def _covers(cert_path: Path, host: str) -> bool:
    """Whether the certificate at ``cert_path`` names ``host`` and is valid a while longer."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
    if cert.not_valid_after_utc < soon:
        return False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return any(str(n.value) == host for n in names)


def make_lab_files(directory: Path, superlink_host: str, devices: list[str]) -> LabFiles:
    """The lab's keys for ``htfl deploy``: the CA, the SuperLink's certificate for the host the
    devices dial (plus localhost) and one key pair per device. What exists is kept (a device's
    key, the CA every device trusts, a certificate that still names the host), so deploying
    twice changes nothing. ``directory`` is made readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    server = ServerFiles(
        directory / "ca.pem", directory / "superlink.pem", directory / "superlink.key"
    )
    fresh = not all(p.exists() for p in (server.ca_cert, server.cert, server.key))
    if fresh or not _covers(server.cert, superlink_host):
        hosts = list(dict.fromkeys([superlink_host, "localhost", "127.0.0.1"]))
        server = make_server_files(directory, hosts)
    return LabFiles(directory, server, {d: make_node_keys(directory, d) for d in devices})


def superlink_tls_argv(files: ServerFiles) -> list[str]:
    """``flower-superlink``'s options for TLS on every API and only registered SuperNodes."""
    return [
        "--ssl-ca-certfile",
        str(files.ca_cert),
        "--ssl-certfile",
        str(files.cert),
        "--ssl-keyfile",
        str(files.key),
        "--enable-supernode-auth",
    ]
