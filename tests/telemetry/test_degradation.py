"""Missing, unreadable and malformed sources degrade to "not available", never crash.

Unreadable files are simulated three ways, because tests usually run as root here
and root reads a mode-000 file regardless of its mode:

* ``mode 000`` -- chmod 000 for real; when running as root the probes run in a
  forked child that drops to uid/gid 65534 (nobody) first, so the kernel really
  refuses the open with EACCES.  As a non-root user it runs in-process.
* ``directory`` -- a directory where the file is expected (``IsADirectoryError``,
  an ``OSError`` root cannot bypass).
* ``opener hook`` -- the probes' ``SysReader`` opener raises ``PermissionError``
  for the denied paths (:func:`helpers.denying_opener`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from htfl.device.telemetry.collector import DeviceCollector
from htfl.device.telemetry.probes import Probe, SysReader, WorkerProcessProbe
from htfl.device.telemetry.probes import process as process_module
from htfl.device.telemetry.sampler import Sampler

from .helpers import denying_opener, sampler_for, values
from .trees import ANDROID_UNREADABLE, PLATFORM_TREES, write_tree

NOBODY = 65534


def _android_result(root: Path, opener=None) -> dict:
    """Two samples of the Android probe set, reduced to JSON-able facts."""
    sampler = sampler_for(root, "android", opener)
    sampler.sample_once()
    snap = sampler.sample_once()
    return {
        "euid": os.geteuid(),
        "probes": dict(snap.probes),
        "names": sorted({s.name for s in snap.series}),
        "sensors": sorted(
            dict(labels)["sensor"] for labels in snap.values("htfl_device_temperature_celsius")
        ),
        "cpu_error": snap.errors.get("cpu", ""),
    }


def _in_unprivileged_child(fn) -> dict:
    """Run *fn* in a forked child after dropping root to nobody; return its JSON."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as exc:  # e.g. a container without CAP_SETUID
                payload = json.dumps({"cannot_drop": repr(exc)})
            else:
                payload = json.dumps({"result": fn()})
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            payload = json.dumps({"error": repr(exc)})
        os.write(write_fd, payload.encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b'{"error": "child wrote nothing"}')
    if "cannot_drop" in data:
        pytest.skip(f"cannot drop root privileges here: {data['cannot_drop']}")
    assert "error" not in data, data["error"]
    return data["result"]


def _assert_android_degraded(result: dict) -> None:
    probes = result["probes"]
    assert probes["cpu"] is False, result
    assert "permission" in result["cpu_error"].lower() or "not readable" in result["cpu_error"]
    # Device-wide and per-core utilisation are "not available"...
    assert "htfl_device_cpu_utilisation_ratio" not in result["names"]
    assert "htfl_device_cpu_core_utilisation_ratio" not in result["names"]
    # ...while the worker's own CPU time and everything else readable still is.
    assert probes["process"] is True
    assert {
        "htfl_device_worker_cpu_seconds_total",
        "htfl_device_worker_cpu_utilisation_ratio",
    } <= set(result["names"])
    assert probes["cpufreq"] and probes["memory"] and probes["netdev"] and probes["thermal"]
    assert result["sensors"] == ["BIG", "LITTLE", "battery"]  # zone1 ("MID") denied


@pytest.fixture
def world_readable_android_tree():
    """The Android tree in a directory that uid 65534 can traverse (tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="htfl-android-", dir="/tmp"))
    base.chmod(0o755)
    root = write_tree(base / "root", PLATFORM_TREES["android"]())
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    yield root
    shutil.rmtree(base, ignore_errors=True)


def test_android_unreadable_mode_000(world_readable_android_tree):
    root = world_readable_android_tree
    for rel in ANDROID_UNREADABLE:
        (root / rel).chmod(0)
        assert stat.S_IMODE((root / rel).stat().st_mode) == 0
    if os.geteuid() == 0:
        result = _in_unprivileged_child(lambda: _android_result(root))
        assert result["euid"] == NOBODY  # really ran without root's DAC override
    else:
        result = _android_result(root)
    _assert_android_degraded(result)


def test_android_unreadable_via_opener_hook(make_tree):
    root = make_tree("android")
    opener = denying_opener(root, ANDROID_UNREADABLE)
    _assert_android_degraded(_android_result(root, opener))
    assert any(p.endswith("proc/stat") for p in opener.calls)


def test_android_proc_stat_is_a_directory(make_tree):
    root = make_tree("android")
    (root / "proc" / "stat").unlink()
    (root / "proc" / "stat").mkdir()
    result = _android_result(root)
    assert result["probes"]["cpu"] is False
    assert "IsADirectoryError" in result["cpu_error"]
    assert "htfl_device_cpu_utilisation_ratio" not in result["names"]
    assert result["probes"]["process"] is True


def test_empty_root_everything_down_but_the_worker(tmp_path):
    for platform in ("linux", "jetson", "rk3588", "x86", "android"):
        sampler = sampler_for(tmp_path, platform)
        snap = sampler.sample_once()
        down = {p for p, up in snap.probes.items() if not up}
        assert down == {p.name for p in sampler.probes} - {"process"}, platform
        assert {s.name for s in snap.series} <= {
            "htfl_device_worker_cpu_seconds_total",
            "htfl_device_worker_resident_memory_bytes",
        }
        # The collector still renders a valid exposition with probe_up 0 series.
        registry = CollectorRegistry()
        registry.register(DeviceCollector("d", "c", sampler, platform=platform))
        text = generate_latest(registry).decode()
        [up_family] = [
            f for f in text_string_to_metric_families(text) if f.name == "htfl_device_probe_up"
        ]
        assert sum(s.value for s in up_family.samples) == 1  # only "process"


MALFORMED = [
    ("jetson_nano", "proc/stat", "cpu  a b c d\n", "cpu", "htfl_device_cpu_core_utilisation_ratio"),
    (
        "jetson_nano",
        "proc/stat",
        "intr 1 2 3\nctxt 9\n",
        "cpu",
        "htfl_device_cpu_utilisation_ratio",
    ),
    ("jetson_nano", "proc/stat", "cpu  1 2\n", "cpu", "htfl_device_cpu_utilisation_ratio"),
    ("jetson_nano", "proc/meminfo", "MemFree: 12 kB\n", "memory", "htfl_device_memory_total_bytes"),
    (
        "jetson_nano",
        "proc/meminfo",
        "MemTotal: lots kB\n",
        "memory",
        "htfl_device_memory_total_bytes",
    ),
    (
        "jetson_nano",
        "proc/net/dev",
        "garbage\n",
        "netdev",
        "htfl_device_network_receive_bytes_total",
    ),
    ("jetson_nano", "proc/net/dev", "", "netdev", "htfl_device_network_transmit_bytes_total"),
    (
        "jetson_nano",
        "sys/devices/gpu.0/load",
        "n/a\n",
        "jetson_gpu",
        "htfl_device_gpu_utilisation_ratio",
    ),
    (
        "jetson_nano",
        "sys/devices/gpu.0/load",
        "1500\n",
        "jetson_gpu",
        "htfl_device_gpu_frequency_hertz",
    ),
    (
        "jetson_nano",
        "sys/devices/system/cpu/cpufreq/policy*/scaling_cur_freq",
        "fast\n",
        "cpufreq",
        "htfl_device_cpu_frequency_hertz",
    ),
    (
        "jetson_nano",
        "sys/devices/virtual/thermal/thermal_zone*/temp",
        "hot\n",
        "thermal",
        "htfl_device_temperature_celsius",
    ),
    (
        "rk3588",
        "sys/devices/platform/fb000000.gpu/devfreq/fb000000.gpu/load",
        "busy\n",
        "rk3588_gpu",
        "htfl_device_gpu_utilisation_ratio",
    ),
    (
        "rk3588",
        "sys/kernel/debug/rknpu/load",
        "\x00\xff\n",
        "rk3588_npu",
        "htfl_device_npu_utilisation_ratio",
    ),
    (
        "lattepanda",
        "sys/devices/platform/coretemp.0/hwmon/hwmon2/temp*_input",
        "\n",
        "coretemp",
        None,  # thermal zones still export temperatures on x86
    ),
]


@pytest.mark.parametrize(("tree", "pattern", "content", "probe", "metric"), MALFORMED)
def test_malformed_source(make_tree, tree, pattern, content, probe, metric):
    root = make_tree(tree)
    platform = {"jetson_nano": "jetson", "rk3588": "rk3588", "lattepanda": "x86"}[tree]
    targets = sorted(root.glob(pattern))
    assert targets, pattern
    for target in targets:
        target.write_text(content)
    sampler = sampler_for(root, platform)
    sampler.sample_once()
    snap = sampler.sample_once()
    assert snap.probes[probe] is False, snap.errors
    assert probe in snap.errors
    if metric:
        assert snap.values(metric) == {}
    others = {p: up for p, up in snap.probes.items() if p != probe}
    assert all(others.values()), snap.errors


def test_one_bad_zone_is_skipped_probe_stays_up(make_tree):
    root = make_tree("jetson_nano")
    (root / "sys/devices/virtual/thermal/thermal_zone2/temp").write_text("\n")
    (root / "sys/devices/virtual/thermal/thermal_zone4/temp").unlink()
    snap = sampler_for(root, "jetson").sample_once()
    assert snap.probes["thermal"] is True
    sensors = {dict(k)["sensor"] for k in snap.values("htfl_device_temperature_celsius")}
    assert sensors == {"AO-therm", "CPU-therm", "PLL-therm", "thermal-fan-est"}


def test_missing_gpu_and_npu_files(make_tree):
    root = make_tree("rk3588")
    shutil.rmtree(root / "sys/kernel/debug")
    (root / "sys/devices/platform/fb000000.gpu/devfreq/fb000000.gpu/load").unlink()
    snap = sampler_for(root, "rk3588").sample_once()
    assert snap.probes["rk3588_npu"] is False and snap.probes["rk3588_gpu"] is False
    assert "ProbeUnavailable" in snap.errors["rk3588_npu"]
    assert snap.values("htfl_device_gpu_utilisation_ratio") == {}
    assert snap.probes["thermal"] is True


def test_debugfs_permission_denied_is_down_not_crash(make_tree):
    root = make_tree("rk3588")
    opener = denying_opener(root, ["sys/kernel/debug/rknpu/load"])
    snap = sampler_for(root, "rk3588", opener).sample_once()
    assert snap.probes["rk3588_npu"] is False
    assert "PermissionError" in snap.errors["rk3588_npu"]
    assert snap.probes["rk3588_gpu"] is True


class _Exploding(Probe):
    name = "exploding"

    def read(self):
        raise RuntimeError("bug in a probe")


def test_unexpected_probe_exception_is_contained(tmp_path):
    sampler = Sampler([_Exploding(SysReader(tmp_path))], rate_hz=10)
    snap = sampler.sample_once()
    assert snap.probes == {"exploding": False, "process": True}
    assert "RuntimeError" in snap.errors["exploding"]
    sampler.start(initial_sample=False)
    try:
        deadline = snap.seq + 2
        for _ in range(100):
            if sampler.latest.seq >= deadline:
                break
            sampler._stop.wait(0.02)
        assert sampler.latest.seq >= deadline and sampler.running
    finally:
        assert sampler.stop()


# ------------------------------------------------------------------ worker process fallbacks
def test_worker_probe_falls_back_to_procfs_when_psutil_is_denied(monkeypatch):
    class DeniedProcess:
        def __init__(self, pid):
            # What psutil does on Android: it needs /proc/stat for the boot time.
            raise PermissionError(13, "Permission denied", "/proc/stat")

    real_rss = process_module.psutil.Process().memory_info().rss
    monkeypatch.setattr(process_module.psutil, "Process", DeniedProcess)
    probe = WorkerProcessProbe()
    out = {s.name: s.value for s in probe.read()}
    assert probe.strategy == "procfs"
    assert set(out) == {
        "htfl_device_worker_cpu_seconds_total",
        "htfl_device_worker_resident_memory_bytes",
    }
    # /proc/self/statm gives the same RSS as psutil (give or take allocations since).
    assert out["htfl_device_worker_resident_memory_bytes"] == pytest.approx(real_rss, rel=0.2)
    t = os.times()
    assert 0 < out["htfl_device_worker_cpu_seconds_total"] <= t.user + t.system + 0.02


def test_worker_probe_falls_back_to_os_times(monkeypatch, tmp_path):
    class DeniedProcess:
        def __init__(self, pid):
            raise PermissionError(13, "Permission denied", "/proc/stat")

    monkeypatch.setattr(process_module.psutil, "Process", DeniedProcess)
    probe = WorkerProcessProbe(proc_root=str(tmp_path / "no-proc"))  # procfs unusable too
    # An empty proc root looks like "process gone"; make it unreadable instead.
    (tmp_path / "no-proc" / str(os.getpid())).mkdir(parents=True)
    (tmp_path / "no-proc" / str(os.getpid()) / "stat").mkdir()
    first = {s.name: s.value for s in probe.read()}
    assert probe.strategy == "os.times"
    t = os.times()
    assert 0 < first["htfl_device_worker_cpu_seconds_total"] <= t.user + t.system
    assert "htfl_device_worker_resident_memory_bytes" not in first
    second = {s.name for s in probe.read()}
    assert "htfl_device_worker_cpu_utilisation_ratio" in second


def test_worker_gone_is_not_available():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: the pid no longer exists
    sampler = Sampler([], worker_pid=pid)
    snap = sampler.sample_once()
    assert snap.probes == {"process": False}
    assert values(snap, "htfl_device_worker_cpu_seconds_total") == {}
