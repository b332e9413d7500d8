"""Every Flower name htfl uses beyond Flower's public app API, imported here and nowhere else.

Why: ``flwr.app``, ``flwr.serverapp`` and ``flwr.clientapp`` are Flower's public API; everything
else may be renamed or moved by any release. With all of it in one module, an upgrade breaks in
one place, and ``tests/test_flower_internals.py`` imports every name listed here (and every
name the adapter patches), so the break is a failing test that names what moved.

Two kinds of names:

* :data:`__all__`: imported eagerly; htfl cannot run without them (the worker speaks Flower's
  Runtime API with them, the workstation submits runs with them).
* :data:`PATCHED`: the modules and names :mod:`htfl.flower_adapter` tunes. They are imported on
  demand by :func:`patch_targets`, so a Flower that moved them still runs, untuned.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from flwr.cli.build import build_fab_from_files
from flwr.cli.typing import SuperLinkConnection
from flwr.cli.utils import init_http_client_from_connection
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=E0611
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
)
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    iterate_object_tree,
)
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.protobuf.client import (
    ProtobufCall,
    ProtobufClientInterceptor,
    ProtobufRequestContext,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.cli import flower_supernode
from flwr.supernode.runtime.run_clientapp import (
    pull_task_input,
    push_message,
    push_task_output,
)

__all__ = [
    "AcquireTaskRequest",
    "ErrorCode",
    "Fab",
    "HeartbeatSender",
    "ListRunsRequest",
    "RegisterNodeRequest",
    "ProtobufCall",
    "ProtobufClientInterceptor",
    "ProtobufRequestContext",
    "RuntimeHttpClient",
    "RuntimeTokenHttpInterceptor",
    "RuntimeVersionHttpInterceptor",
    "StartRunRequest",
    "StopRunRequest",
    "SubStatus",
    "SuperLinkConnection",
    "TaskType",
    "build_fab_from_files",
    "fab_to_proto",
    "flower_supernode",
    "get_all_nested_objects",
    "init_http_client_from_connection",
    "iterate_object_tree",
    "make_simple_http_retry_invoker",
    "make_task_heartbeat_fn_http",
    "pull_task_input",
    "push_message",
    "push_task_output",
    "user_config_to_proto",
]

#: The SuperNode's main loop, its pull (idle wait) and push (reply wait) steps.
SUPERNODE_LOOP = "flwr.supernode.start_client_internal"
#: The ServerApp's Grid over HTTP: how it pushes and pulls message objects.
GRID = "flwr.superlink.grid.http_grid"
#: Flower's object push and pull helpers.
OBJECT_TRANSFER = "flwr.supercore.inflatable.inflatable_utils"

#: Module -> names in it that :mod:`htfl.flower_adapter` reads or rebinds.
PATCHED: dict[str, tuple[str, ...]] = {
    SUPERNODE_LOOP: (
        "start_client_internal",
        "_pull_and_store_message",
        "_push_messages",
        "pull_objects",
    ),
    GRID: (
        "HttpGrid",
        "get_object_tree",
        "push_objects",
        "pull_objects",
    ),
    OBJECT_TRANSFER: (
        "pull_objects",
        "push_objects",
        "push_object_contents_from_iterable",
        "get_num_workers",
    ),
}


class FlowerInternalsMissing(ImportError):
    """A Flower module or name htfl tunes is not where this release of htfl expects it."""


@functools.cache
def patch_targets() -> dict[str, ModuleType]:
    """Import the modules in :data:`PATCHED`; raise naming every module or name missing."""
    modules: dict[str, ModuleType] = {}
    missing: list[str] = []
    for module_name, names in PATCHED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            missing.append(f"{module_name} ({err})")
            continue
        missing += [f"{module_name}.{n}" for n in names if not hasattr(module, n)]
        modules[module_name] = module
    if missing:
        raise FlowerInternalsMissing("Flower internals not found: " + ", ".join(missing))
    return modules
