"""Print, as one JSON line, what the htfl venv on this device has (run with the venv's python)."""

import importlib.metadata
import json
import os
import platform
import sys

info = {
    "python": "{}.{}.{}".format(*sys.version_info[:3]),
    "machine": platform.machine(),
    "prefix": sys.prefix,
}
for dist in ("htfl", "flwr", "torch"):
    try:
        info[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        info[dist] = None
try:
    import htfl

    info["htfl_path"] = os.path.dirname(htfl.__file__)
except Exception as err:  # noqa: BLE001 - reported, not raised
    info["htfl_error"] = repr(err)
try:
    import torch

    info["cuda"] = bool(torch.cuda.is_available())
    info["torch_threads"] = torch.get_num_threads()
except Exception as err:  # noqa: BLE001 - reported, not raised
    info["torch_error"] = repr(err)
print(json.dumps(info))
