"""cgroups per simulated device: the files each cgroup version is given, a process that joins
its group before it runs, the OOM killer seen, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from htfl.workstation.fleet.cgroups import ROOT, CgroupError, CgroupTree, detect, unavailable_reason


def fake_v2(root: Path) -> Path:
    """A cgroup2 tree as files. A stand-in: this project's test machines have the cpu and memory
    controllers bound to v1 (cgroup2 is mounted without them), so v2 cannot run here for real;
    the test checks the files and values the kernel documents (Documentation/admin-guide/
    cgroup-v2.rst: cpu.max "$MAX $PERIOD", memory.max bytes, memory.events "oom_kill N")."""
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_detection_prefers_v2_with_controllers_else_v1_else_none(tmp_path: Path) -> None:
    assert detect(fake_v2(tmp_path / "v2")) == "v2"
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "memory").mkdir()
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    (v1 / "cgroup.controllers").write_text("")  # hybrid: an empty cgroup2 root beside v1
    assert detect(v1) == "v1"
    assert detect(tmp_path / "nothing") is None
    assert "no cgroup v1 or v2" in (unavailable_reason(tmp_path / "nothing") or "")


def test_v2_files(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "cg")
    tree = CgroupTree(root=root, fleet_id="f1")
    group = tree.add("jetson-nano-01", 25_000, 100_000, 4096 * 2**20)
    d = root / "htfl" / "f1" / "jetson-nano-01"
    assert group.dirs == [d]
    assert (d / "cpu.max").read_text() == "25000 100000"
    assert (d / "memory.max").read_text() == str(4096 * 2**20)
    assert (d / "cpu.weight").read_text() == "25"  # in proportion to the quota
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (root / "htfl" / "f1" / "cgroup.subtree_control").read_text() == "+cpu +memory"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1 and group.memory_failures() == 3


def test_wrap_moves_the_process_in_before_it_runs(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "cg")
    group = CgroupTree(root=root, fleet_id="f1").add("dev", 10_000, 100_000, 2**30)
    out = subprocess.run(
        group.wrap([sys.executable, "-c", "import os; print(os.getpid())"]),
        capture_output=True,
        text=True,
        check=True,
    )
    # the pid written to cgroup.procs is the program's own: sh exec'd it
    assert (group.dirs[0] / "cgroup.procs").read_text().strip() == out.stdout.strip()


def test_a_value_the_kernel_refuses_names_the_device(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "cg")
    tree = CgroupTree(root=root, fleet_id="f1")
    (root / "htfl" / "f1" / "dev-x").mkdir(parents=True)
    (root / "htfl" / "f1" / "dev-x" / "cpu.max").mkdir()  # writing it fails
    with pytest.raises(CgroupError, match="device dev-x: cannot set its cgroup limits"):
        tree.add("dev-x", 10_000, 100_000, 2**30)


def test_no_usable_hierarchy_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup v1 or v2"):
        CgroupTree(root=tmp_path)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or detect() is None, reason="real cgroups need root and a cgroup hierarchy"
)


@pytest.mark.root
@needs_root
def test_real_quota_cap_oom_and_cleanup() -> None:
    tree = CgroupTree()
    try:
        busy = tree.add("busy", 20_000, 100_000, 2**30)  # 0.2 cores
        prog = (
            "import time, resource\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_utime)"
        )
        cpu = float(
            subprocess.run(
                busy.wrap([sys.executable, "-c", prog]),
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        assert cpu < 0.45  # 0.2 cores for 1.5 s is 0.3 s of CPU; unlimited it would be ~1.5 s
        hog = tree.add("hog", 100_000, 100_000, 48 * 2**20)
        proc = subprocess.run(
            hog.wrap([sys.executable, "-c", "b = bytearray(512 * 2**20); print('alive')"]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == -9 and "alive" not in proc.stdout
        assert hog.oom_kills() >= 1
        dirs = [d for g in tree.groups.values() for d in g.dirs]
    finally:
        tree.remove()
    assert not any(d.exists() for d in dirs)
    assert not any((ROOT / c / "htfl" / tree.fleet_id).exists() for c in ("", "cpu", "memory"))
