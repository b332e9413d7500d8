"""Create directories with a mode and owner, or fix them; print what changed as JSON.

Run with any Python 3 on the device, the specification as JSON in argv[1]: a list of
    {"paths": ["/opt/htfl", ...], "mode": "0755", "owner": "htfl", "group": "htfl"}
(owner/group empty or absent: leave as is). One Ansible task for the whole install tree
instead of one file-module round trip per directory.
"""

import grp
import json
import os
import pwd
import stat
import sys


def ensure(path, spec):
    mode = int(spec["mode"], 8)
    done = []
    if not os.path.isdir(path):
        os.makedirs(path, mode)
        done.append("created")
    uid = pwd.getpwnam(spec["owner"]).pw_uid if spec.get("owner") else -1
    gid = grp.getgrnam(spec["group"]).gr_gid if spec.get("group") else -1
    st = os.stat(path)
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.chown(path, uid, gid)
        done.append("owner")
    if stat.S_IMODE(os.stat(path).st_mode) != mode:
        os.chmod(path, mode)
        done.append("mode")
    return done


def main():
    changes = {}
    for spec in json.loads(sys.argv[1]):
        for path in spec["paths"]:
            done = ensure(path, spec)
            if done:
                changes[path] = done
    print(json.dumps({"changed": bool(changes), "changes": changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
