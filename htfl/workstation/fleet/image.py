"""The one htfl image (workstation and devices alike), built from the repository's Dockerfile.

The image installs wheels only from ``build/container/`` in the build context, which
this module fills on the workstation: the project's wheel (built from the checkout, as
``htfl deploy`` builds it) and every dependency, fetched through the host's pip (its index,
mirror and cache). So the build itself reaches no network: it runs where containers reach no
registry, and a rebuild after a code change copies wheels instead of downloading torch again.

    python -m htfl.workstation.fleet.image [--tag NAME] [--base-image IMAGE] [--platform P]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from htfl.workstation.deploy.wheel import build_wheel, sha256_of, wheel_requirements
from htfl.workstation.fleet.base_image import LOCAL_BASE, build_base_image, podman_env, require

REPO = Path(__file__).resolve().parents[3]
CONTEXT = Path("build") / "container"
IMAGE = "localhost/htfl:latest"
#: the CPU build of torch (PyPI serves it for x86_64 and aarch64)
TORCH_SPEC = "torch==2.13.0"
#: what the image's `htfl` command imports beyond the base requirements: the workstation
#: commands' console and inventory reading (not ansible, matplotlib: no deploy or plots here)
EXTRA_REQUIREMENTS = ("rich>=13", "pyyaml>=6", "tomli-w>=1")


def prepare_wheels(root: Path = REPO, torch_spec: str = TORCH_SPEC) -> Path:
    """Fill ``build/container/``: ``deps/`` (every dependency's wheel for this host's platform,
    at the versions this interpreter has installed, and ``requirements.txt`` naming them) and
    ``htfl/`` (the checkout's wheel). Two directories, so that a code change rebuilds only the
    image's last layer; pip keeps the wheels it already has."""
    out = root / CONTEXT
    deps, own = out / "deps", out / "htfl"
    deps.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    wheel = build_wheel(own, root, kind="workstation")
    requirements = [r for r in wheel_requirements(wheel.path) if "extra ==" not in r]
    (deps / "requirements.txt").write_text(
        "\n".join([*requirements, torch_spec, *EXTRA_REQUIREMENTS]) + "\n"
    )
    # the versions this workstation runs, so the containers run the same ones
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    constraints = out / "constraints.txt"
    constraints.write_text(frozen)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(deps),
            "--constraint",
            str(constraints),
            "--requirement",
            str(deps / "requirements.txt"),
        ],
        check=True,
        timeout=1800,
    )
    return out


def directory_digest(path: Path) -> str:
    """SHA-256 over a directory's file names and contents (the wheels an image layer uses)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(file.name.encode() + b"\0" + sha256_of(file).encode() + b"\0")
    return digest.hexdigest()


def build_image(
    tag: str = IMAGE,
    base_image: str = LOCAL_BASE,
    platform: str | None = None,
    root: Path = REPO,
) -> None:
    """Build the image with podman from the checkout's Dockerfile (the local Debian base is
    built first when it is the one asked for and missing). One build at a time per checkout
    (a lock file): two at once (tests in parallel workers) would rewrite each other's
    ``build/container/`` mid-build."""
    podman = require("podman", "podman")
    lock_path = root / CONTEXT / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_locked(podman, tag, base_image, platform, root)


def _build_locked(podman: str, tag: str, base_image: str, platform: str | None, root: Path) -> None:
    if base_image == LOCAL_BASE:
        build_base_image()
    context = prepare_wheels(root)
    argv = [podman, "build", "--tag", tag, "--build-arg", f"BASE_IMAGE={base_image}"]
    argv += ["--build-arg", "PIP_OPTIONS=--no-index"]
    argv += ["--build-arg", f"DEPS_DIGEST={directory_digest(context / 'deps')}"]
    argv += ["--build-arg", f"HTFL_DIGEST={directory_digest(context / 'htfl')}"]
    if platform:
        argv += ["--platform", platform]
    # the build's progress goes to stderr: stdout is for what a caller prints (a table)
    subprocess.run(
        [*argv, "--file", "Dockerfile", "."],
        cwd=root,
        env=podman_env(),
        check=True,
        stdout=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", default=IMAGE, help=f"image name (default: {IMAGE})")
    p.add_argument(
        "--base-image",
        default=LOCAL_BASE,
        help=f"base image (default: {LOCAL_BASE}, built here with debootstrap when missing)",
    )
    p.add_argument("--platform", default=None, help="e.g. linux/arm64 (default: the host's)")
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="only fill build/container/ (for a build with docker or another engine)",
    )
    args = p.parse_args(argv)
    start = time.monotonic()
    if args.prepare_only:
        print(prepare_wheels())
        return 0
    build_image(args.tag, args.base_image, args.platform)
    print(f"{args.tag}: built in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
