"""A Debian base image built here, for machines that reach no image registry.

``debootstrap`` builds a minimal Debian bookworm root filesystem (with Python 3.11 and venv,
so the image build needs no network of its own) and ``podman import`` turns it into
``localhost/debian:bookworm-slim``; the Dockerfile takes it as ``--build-arg BASE_IMAGE=...``.
Where a registry is reachable, the stock ``debian:bookworm-slim`` works unchanged (the
Dockerfile installs Python there). Cached: nothing is built when the image exists.

    python -m htfl.workstation.fleet.base_image [--image NAME] [--mirror URL] [--arch amd64|arm64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCAL_BASE = "localhost/debian:bookworm-slim"
MIRROR = "http://deb.debian.org/debian"
#: what the image build needs from Debian; everything else comes from wheels
PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: htfl's podman settings (runc, no default ulimits), used unless CONTAINERS_CONF is set
CONTAINERS_CONF = Path(__file__).resolve().parents[3] / "deploy" / "containers" / "containers.conf"


class ContainerToolMissing(RuntimeError):
    """A program the container engine needs is not installed; the message names its package."""


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for podman and podman-compose: htfl's containers.conf unless the user
    named one."""
    env = dict(os.environ if base is None else base)
    if "CONTAINERS_CONF" not in env and CONTAINERS_CONF.exists():
        env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def require(program: str, package: str) -> str:
    """The path of ``program``, or :class:`ContainerToolMissing` naming the package to install."""
    path = shutil.which(program)
    if path is None:
        raise ContainerToolMissing(
            f"{program} is not installed: install it with `apt-get install {package}`"
        )
    return path


def image_exists(image: str) -> bool:
    podman = require("podman", "podman")
    done = subprocess.run(
        [podman, "image", "exists", image], env=podman_env(), capture_output=True, timeout=60
    )
    return done.returncode == 0


def build_base_image(
    image: str = LOCAL_BASE, mirror: str = MIRROR, arch: str | None = None
) -> bool:
    """Build and import ``image`` unless it exists; True when it was built now. Needs root
    (debootstrap); an ``arch`` other than the host's needs qemu-user-static."""
    if image_exists(image):
        return False
    debootstrap = require("debootstrap", "debootstrap")
    podman = require("podman", "podman")
    with tempfile.TemporaryDirectory(prefix="htfl-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}"]
        if arch:
            argv.append(f"--arch={arch}")
        subprocess.run([*argv, "bookworm", str(root), mirror], check=True, timeout=1800)
        # what a slim image leaves out: the package cache
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        platform = ["--arch", arch] if arch else []
        subprocess.run(
            [podman, "import", *platform, "-", image],
            stdin=tar.stdout,
            env=podman_env(),
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the root filesystem failed")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=LOCAL_BASE, help=f"image name (default: {LOCAL_BASE})")
    p.add_argument("--mirror", default=MIRROR, help=f"Debian mirror (default: {MIRROR})")
    p.add_argument("--arch", default=None, help="Debian architecture (default: the host's)")
    args = p.parse_args(argv)
    start = time.monotonic()
    try:
        built = build_base_image(args.image, args.mirror, args.arch)
    except ContainerToolMissing as err:
        print(f"base_image: error: {err}", file=sys.stderr)
        return 2
    what = "built" if built else "already present"
    print(f"{args.image}: {what} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
