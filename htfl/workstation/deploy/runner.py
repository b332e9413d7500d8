"""Run one of deploy/'s playbooks through ansible-runner and sum it up per host.

ansible-runner starts ``ansible-playbook`` with deploy/ansible.cfg and streams its events
here: :func:`run_playbook` hands each one to ``on_event`` (for progress), collects failure
messages and the per-host records that the playbooks publish (``htfl_agent_status``,
``htfl_device_facts``), and returns ansible's own recap counts per host.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from htfl.workstation.deploy.paths import deploy_dir

#: Variables the playbooks publish with a ``debug: var=...`` task, collected per host.
PUBLISHED_VARS = ("htfl_agent_status", "htfl_device_facts")


class RunnerMissingError(RuntimeError):
    pass


@dataclass
class HostResult:
    name: str
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.changed:
            return "changed"
        if self.ok:
            return "ok"
        return "skipped"


@dataclass
class PlaybookResult:
    playbook: str
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int
    hosts: dict[str, HostResult]
    published: dict[str, dict[str, Any]]  # host -> {var: value}
    artifacts: Path
    seconds: float
    error: str = ""

    @property
    def bad_hosts(self) -> list[str]:
        return [h.name for h in self.hosts.values() if h.failed or h.unreachable]

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and not self.bad_hosts


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "stdout", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text if len(text) <= 600 else text[:300] + " ... " + text[-300:]
    return "(no message)"


def _stats_from_events(events: list[dict[str, Any]]) -> dict[str, dict[str, int]] | None:
    for ev in reversed(events):
        if ev.get("event") == "playbook_on_stats":
            return ev.get("event_data", {})
    return None


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    limit: str | None = None,
    extravars: dict[str, Any] | None = None,
    forks: int | None = None,
    artifacts_dir: Path,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    verbosity: int = 0,
) -> PlaybookResult:
    try:
        import ansible_runner
    except ImportError:
        raise RunnerMissingError(
            "ansible-runner is not installed: pip install 'htfl[deploy]'"
        ) from None
    tree = deploy_dir()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        # ansible-playbook and ansible-inventory come with ansible-core in this environment.
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    ident = f"{playbook}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    hosts: dict[str, HostResult] = {}
    published: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []

    def handle(ev: dict[str, Any]) -> bool:
        kind = ev.get("event", "")
        data = ev.get("event_data", {}) or {}
        host = data.get("host")
        res = data.get("res") or {}
        if kind == "playbook_on_stats":
            events.append(ev)
        if host and kind == "runner_on_failed" and not data.get("ignore_errors"):
            hosts.setdefault(host, HostResult(host)).messages.append(
                f"{data.get('task', '?')}: {_message(res)}"
            )
        elif host and kind == "runner_on_unreachable":
            hosts.setdefault(host, HostResult(host)).messages.append(
                f"unreachable: {_message(res)}"
            )
        elif host and kind == "runner_on_ok":
            for var in PUBLISHED_VARS:
                if var in res:
                    published.setdefault(host, {})[var] = res[var]
        if on_event is not None:
            on_event(ev)
        return True

    (artifacts_dir / ident).mkdir()
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(artifacts_dir / ident),
        project_dir=str(tree),
        playbook=f"{playbook}.yml",
        inventory=str(Path(inventory).resolve()),
        limit=limit,
        extravars=extravars or {},
        forks=forks,
        envvars=env,
        quiet=True,
        verbosity=verbosity or None,
        event_handler=handle,
        suppress_env_files=True,
        rotate_artifacts=30,
    )
    seconds = time.monotonic() - started
    stats = runner.stats or _stats_from_events(events) or {}
    columns = {
        "ok": "ok",
        "changed": "changed",
        "dark": "unreachable",
        "failures": "failed",
        "skipped": "skipped",
        "rescued": "rescued",
        "ignored": "ignored",
    }
    for key, attr in columns.items():
        for host, count in (stats.get(key) or {}).items():
            setattr(hosts.setdefault(host, HostResult(host)), attr, int(count))
    error = ""
    if runner.rc != 0 and not any(h.failed or h.unreachable for h in hosts.values()):
        try:
            error = runner.stdout.read()[-3000:].strip()
        except (AttributeError, OSError):
            error = f"ansible-playbook exited with {runner.rc}"
    return PlaybookResult(
        playbook=playbook,
        status=runner.status,
        rc=int(runner.rc if runner.rc is not None else 1),
        hosts=hosts,
        published=published,
        artifacts=Path(runner.config.artifact_dir),
        seconds=seconds,
        error=error,
    )
