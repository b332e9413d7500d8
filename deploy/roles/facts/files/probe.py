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
# A device installs the device wheel (distribution htfl-device); a workstation-style venv, htfl.
for key, names in (("htfl", ("htfl-device", "htfl")), ("flwr", ("flwr",)), ("torch", ("torch",))):
    info[key] = None
    for name in names:
        try:
            info[key] = importlib.metadata.version(name)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
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
