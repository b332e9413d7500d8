"""htfl's Flower App Bundle, built in memory: a manifest pointing at the installed package.

The server and devices run the installed ``htfl`` package (deployed as a wheel), so the FAB
carries only the manifest; its version string ties a run to the htfl build that served it.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import htfl
from htfl.flower_internals import Fab, build_fab_from_files

PUBLISHER = "htfl"
APP_NAME = "htfl"

_PYPROJECT = f"""
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "{htfl.__version__}"
description = "htfl experiment (the htfl package must be installed where it runs)"
dependencies = []

[tool.flwr.app]
publisher = "{PUBLISHER}"

[tool.flwr.app.components]
serverapp = "htfl.workstation.server.app:app"
clientapp = "htfl.device.clientapp:app"

[tool.flwr.app.config]
htfl-experiment = "{{}}"
htfl-results-dir = "results/unnamed"
htfl-source = ""
htfl-resume = "0"
htfl-doorbell = ""
htfl-doorbell-token = ""
"""


@lru_cache(maxsize=1)
def build_fab() -> Fab:
    fab_bytes, _ = build_fab_from_files({"pyproject.toml": _PYPROJECT.encode()})
    return Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
