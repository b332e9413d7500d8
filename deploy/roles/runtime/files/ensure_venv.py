"""Make sure the agent's venv exists as the recipe wants it; print what was done as JSON.

Run with the base Python (``htfl_python``):

    python ensure_venv.py VENV --min 3.11 [--system-site-packages] [--extra-site DIR]...

Checks the base Python's version, removes a venv made by another Python version or with other
site settings, creates the venv (with pip), and writes (or removes) ``htfl-extra-site.pth``
naming extra site directories. One Ansible task instead of seven; idempotent. Written for any
Python 3 so that a too-old one can still say what it is.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

PTH = "htfl-extra-site.pth"


def read_cfg(path):
    cfg = {}
    try:
        with open(path) as fh:
            for line in fh:
                key, sep, value = line.partition("=")
                if sep:
                    cfg[key.strip()] = value.strip()
    except OSError:
        return None
    return cfg


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("venv")
    parser.add_argument("--min", default="3.11")
    parser.add_argument("--system-site-packages", action="store_true")
    parser.add_argument("--extra-site", action="append", default=[])
    args = parser.parse_args()
    version = "{}.{}.{}".format(*sys.version_info[:3])
    out = {"python": version, "executable": sys.executable, "changed": False, "actions": []}
    wanted = tuple(int(x) for x in args.min.split("."))
    if sys.version_info[: len(wanted)] < wanted:
        out["error"] = f"Python {version} is older than {args.min} (flwr 1.41 needs it)"
        print(json.dumps(out))
        return 0

    cfg = read_cfg(os.path.join(args.venv, "pyvenv.cfg"))
    site_flag = "true" if args.system_site_packages else "false"
    if cfg is not None and (
        cfg.get("include-system-site-packages", "false").lower() != site_flag
        or cfg.get("version", cfg.get("version_info", "")) != version
    ):
        shutil.rmtree(args.venv)
        out["actions"].append(f"removed a venv made differently ({cfg})")
        cfg = None
    python = os.path.join(args.venv, "bin", "python")
    if cfg is None or not os.path.exists(python):
        cmd = [sys.executable, "-m", "venv"]
        if args.system_site_packages:
            cmd.append("--system-site-packages")
        proc = subprocess.Popen(cmd + [args.venv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0:
            out["error"] = "python -m venv failed: " + output[-1500:]
            print(json.dumps(out))
            return 0
        out["actions"].append("created " + args.venv)

    site = os.path.join(
        args.venv, "lib", "python{}.{}".format(*sys.version_info[:2]), "site-packages"
    )
    out["site"] = site
    pth = os.path.join(site, PTH)
    content = "".join(d + "\n" for d in args.extra_site)
    current = None
    if os.path.exists(pth):
        with open(pth) as fh:
            current = fh.read()
    if args.extra_site and current != content:
        with open(pth, "w") as fh:
            fh.write(content)
        out["actions"].append("wrote " + pth)
    elif not args.extra_site and current is not None:
        os.remove(pth)
        out["actions"].append("removed " + pth)
    out["changed"] = bool(out["actions"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
