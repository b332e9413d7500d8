# One image for the workstation (SuperLink + htfl's ServerApp) and the simulated devices
# (htfl agent), used by docker-compose.yml and `htfl fleet --engine compose`.
#
# Build it with `python -m htfl.workstation.fleet.image` (fills build/container/ with htfl's
# wheel and its dependencies' wheels, then builds with no network). By hand:
#
#   python -m htfl.workstation.fleet.image --tag localhost/htfl:latest    # amd64, podman, offline
#
#   python -m htfl.workstation.fleet.image --prepare-only                 # then, with a registry:
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim --build-arg PIP_OPTIONS=--no-index \
#       -t localhost/htfl:latest .                                        # amd64
#   podman build --platform linux/arm64 --build-arg BASE_IMAGE=debian:bookworm-slim \
#       -t localhost/htfl:arm64 .       # arm64 (qemu-user-static on an x86 host): pip takes the
#                                       # aarch64 wheels (torch's too) from PyPI, htfl's from here
#
# BASE_IMAGE: a Debian bookworm image. Without a registry, htfl.workstation.fleet.base_image
# builds localhost/debian:bookworm-slim with debootstrap (Python included, so this build needs
# no apt); the stock debian:bookworm-slim gets Python 3.11 from apt below.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN python3 -c "import ensurepip, venv" 2>/dev/null || { \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }

# PIP_OPTIONS=--no-index: wheels from the build context only (an arm64 build leaves it empty,
# so pip takes the platform's wheels, torch's among them, from PyPI). The dependencies are one
# layer, htfl's own wheel the next, so a code change rebuilds only the last (seconds).
# *_DIGEST: the mounted wheels' digests, so a build cache never reuses a layer made from
# other wheels (a bind mount's content is not part of the cache key).
ARG PIP_OPTIONS=""
ARG DEPS_DIGEST=""
RUN --mount=type=bind,source=build/container/deps,target=/tmp/deps \
    python3 -m venv /opt/htfl \
    && /opt/htfl/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_OPTIONS \
         --find-links /tmp/deps --requirement /tmp/deps/requirements.txt
ARG HTFL_DIGEST=""
RUN --mount=type=bind,source=build/container/htfl,target=/tmp/htfl \
    /opt/htfl/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
         /tmp/htfl/htfl-[0-9]*.whl

ENV PATH=/opt/htfl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLWR_HOME=/var/lib/flwr \
    HTFL_DATA_DIR=/var/lib/htfl/data
WORKDIR /var/lib/htfl
# The SuperLink's Runtime API and an agent's /metrics
EXPOSE 8000 9464
CMD ["htfl", "--help"]
