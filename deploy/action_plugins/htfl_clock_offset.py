"""Ansible action: the device clock's offset from the workstation's, with its uncertainty.

The workstation reads its clock, asks the device for ``date +%s.%N`` over the already open
SSH connection, and reads its clock again; the device's reading happened somewhere in that
window, so ``offset = device - midpoint`` is right to within half the round trip. The sample
with the shortest round trip of ``samples`` tries is kept.

Returns ``offset_ms`` (positive: the device is ahead), ``uncertainty_ms`` and ``samples``.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def _last_timestamp(text: str) -> float | None:
    """The last line that is a fractional epoch (login shells may print their own lines)."""
    for line in reversed(text.replace("\r", "\n").splitlines()):
        line = line.strip()
        if "." in line and line.replace(".", "", 1).isdigit():
            return float(line)
    return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("samples",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        samples = int(self._task.args.get("samples", 5))
        best = None
        for _ in range(max(1, samples)):
            before = time.time()
            res = self._low_level_execute_command("LC_ALL=C date +%s.%N", sudoable=False)
            after = time.time()
            out = res.get("stdout", "")
            device = _last_timestamp(out)
            if res.get("rc") != 0 or device is None:
                raise AnsibleActionFail(f"the device's date cannot give sub-second time: {out!r}")
            trip = after - before
            if best is None or trip < best[0]:
                best = (trip, device - (before + after) / 2)
        trip, offset = best
        result.update(
            changed=False,
            offset_ms=round(offset * 1000, 3),
            uncertainty_ms=round(trip * 500, 3),
            samples=samples,
        )
        return result
