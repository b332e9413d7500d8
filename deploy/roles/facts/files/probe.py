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

    info["torch_threads"] = torch.get_num_threads()
    info["torch_cuda"] = torch.version.cuda or ""
    # "yes" only when a tiny forward/backward really runs on the GPU; "no" without one
    info["cuda"] = "no"
    if torch.cuda.is_available():
        info["accelerator"] = torch.cuda.get_device_name(0)
        try:
            layer = torch.nn.Linear(8, 2).cuda()
            layer(torch.randn(4, 8, device="cuda")).square().mean().backward()
            torch.cuda.synchronize()
            info["cuda"] = "yes" if layer.weight.grad is not None else "error: no gradient"
        except Exception as err:  # noqa: BLE001 - reported, not raised
            info["cuda"] = "error: " + repr(err)[:160]
except Exception as err:  # noqa: BLE001 - reported, not raised
    info["torch_error"] = repr(err)
print(json.dumps(info))
