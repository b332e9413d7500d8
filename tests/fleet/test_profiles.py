"""Class profiles → per-device limits: quotas keep the classes' speed ratios, one dilation
factor when they do not fit, and errors that name the device (or file and key)."""

from __future__ import annotations

import math

import pytest

from htfl.devices import DEVICE_CLASSES, device_class
from htfl.workstation.fleet.profiles import (
    CPU_BURST_US,
    MAX_PERIOD_US,
    MIN_CPU_CORES,
    MIN_PERIOD_US,
    ProfileError,
    cpu_period_us,
    load_profile_file,
    plan_fleet,
    with_overrides,
)

GiB = 2**30


def test_quotas_keep_speed_ratios_and_dilation_fits_them_in_the_host() -> None:
    devices = [
        ("nano-1", "jetson-nano"),
        ("panda-1", "lattepanda-delta-3"),
        ("pi-1", "orange-pi-5b"),
    ]
    plan = plan_fleet(devices, cores=2, reserve_cores=0.5, memory_bytes=24 * GiB)
    # speeds 0.5 + 1.0 + 1.2 = 2.7 > 1.5 usable cores: one factor for all
    assert plan.time_dilation == pytest.approx(2.7 / 1.5)
    assert sum(d.cpu_cores for d in plan.devices) == pytest.approx(1.5)
    nano, panda, pi = plan.devices
    assert panda.cpu_cores / nano.cpu_cores == pytest.approx(2.0)
    assert pi.cpu_cores / panda.cpu_cores == pytest.approx(1.2)
    assert nano.memory_bytes == 4096 * 2**20
    assert nano.link.bandwidth_bit_s == 100e6 and nano.link.latency_s == pytest.approx(0.0005)


def test_no_dilation_when_the_fleet_fits() -> None:
    plan = plan_fleet([("nano-1", "jetson-nano")], cores=16, memory_bytes=64 * GiB)
    assert plan.time_dilation == 1.0
    assert plan.devices[0].cpu_cores == pytest.approx(0.5)
    assert plan.devices[0].cpu_quota_us == 50_000


def test_a_quota_above_the_trainer_threads_dilates_too() -> None:
    # one torch thread cannot use the 4 cores an AGX Orin's profile asks for: the ratio would break
    plan = plan_fleet([("orin-1", "jetson-agx-orin")], cores=64, threads_per_device=1)
    assert plan.time_dilation == pytest.approx(4.0)
    assert plan.devices[0].cpu_cores == pytest.approx(1.0)


def test_a_quota_the_host_cannot_give_names_the_device() -> None:
    devices = [(f"nano-{i}", "jetson-nano") for i in range(4000)]
    with pytest.raises(
        ProfileError, match=r"device nano-0 \(jetson-nano\).*below the kernel's minimum"
    ):
        plan_fleet(devices, cores=2)
    # 1 ms in the kernel's longest CFS period (1 s)
    assert pytest.approx(0.001) == MIN_CPU_CORES


def test_every_device_runs_equal_bursts_between_throttles() -> None:
    """The CFS period grows as the quota shrinks, so every device runs CPU_BURST_US between
    throttles (a slow class no longer pays the cost of coming back from a throttle more often
    per unit of work than a fast one); the quota over the period is still the device's cores."""
    plan = plan_fleet([(c, c) for c in DEVICE_CLASSES], cores=2, memory_bytes=24 * GiB)
    for d in plan.devices:
        assert d.cpu_quota_us == pytest.approx(CPU_BURST_US, abs=1)
        assert d.cpu_quota_us / d.cpu_period_us == pytest.approx(d.cpu_cores, rel=1e-4)
        assert plan.record(d.name)["cpu_period_us"] == d.cpu_period_us
    # the kernel's limits: at most 1 s (a smaller quota then runs shorter bursts), at least 1 ms
    assert cpu_period_us(0.02) == MAX_PERIOD_US
    assert cpu_period_us(100.0) == MIN_PERIOD_US
    tiny = plan_fleet([(f"n{i}", "jetson-nano") for i in range(60)], cores=2)
    assert tiny.devices[0].cpu_period_us == MAX_PERIOD_US
    assert tiny.devices[0].cpu_quota_us == round(tiny.devices[0].cpu_cores * MAX_PERIOD_US)


def test_an_unknown_class_names_the_device() -> None:
    with pytest.raises(ProfileError, match="device x-1: unknown device class 'jetson-tx9'"):
        plan_fleet([("x-1", "jetson-tx9")], cores=2)


def test_profile_overrides_replace_a_class_profile() -> None:
    tiny = with_overrides(device_class("jetson-nano").profile, memory_mb=64)
    plan = plan_fleet([("n", "jetson-nano")], cores=2, profiles={"jetson-nano": tiny})
    assert plan.devices[0].memory_bytes == 64 * 2**20


def test_the_record_says_what_was_applied_and_whether_the_cap_binds() -> None:
    plan = plan_fleet([("orin", "jetson-agx-orin")], cores=2, memory_bytes=24 * GiB)
    rec = plan.record("orin", {"cpu": "cgroup v1"})
    assert rec["time_dilation"] == plan.time_dilation
    assert rec["memory_binding"] is False  # 32 GiB cap on a 24 GiB host
    assert rec["applied"] == {"cpu": "cgroup v1"}


def test_every_shipped_profile_is_usable() -> None:
    for cls in DEVICE_CLASSES.values():
        p = cls.profile
        assert p.relative_speed > 0 and p.memory_mb > 0 and p.link_mbit_s > 0, cls.name
        assert 0 <= p.link_loss < 1 and p.link_jitter_ms >= 0, cls.name
        assert math.isfinite(p.link_latency_ms)


def test_a_profile_file_with_an_unknown_field_is_an_error_naming_file_and_key(tmp_path) -> None:
    path = tmp_path / "jetson-nano.yml"
    path.write_text(
        "relative_speed: 0.5\nmemory_mb: 4096\nlink_mbit_s: 100\nlink_latency_ms: 0.5\n"
        "idle_watts: 2\nbusy_watts: 10\nlink_los: 0.01\n"
    )
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert f"{path}.link_los: unknown key" in str(err.value)


def test_a_profile_file_is_read_and_checked(tmp_path) -> None:
    good = tmp_path / "jetson-nano.yml"
    good.write_text(
        "relative_speed: 0.45\nmemory_mb: 4096\nlink_mbit_s: 94.1\nlink_latency_ms: 0.4\n"
        "idle_watts: 1.9\nbusy_watts: 9.5\nlink_jitter_ms: 0.1\n"
    )
    cls, profile = load_profile_file(good)
    assert cls == "jetson-nano" and profile.relative_speed == 0.45 and profile.link_jitter_ms == 0.1
    bad = tmp_path / "jetson-nano-2.yml"
    bad.write_text("relative_speed: -1\n")
    with pytest.raises(ProfileError, match="unknown device class 'jetson-nano-2'"):
        load_profile_file(bad)
    worse = tmp_path / "orange-pi-5b.yml"
    worse.write_text(
        "relative_speed: -1\nmemory_mb: 1\nlink_mbit_s: 1\nlink_latency_ms: 0\n"
        "idle_watts: 0\nbusy_watts: 0\nlink_loss: 2\n"
    )
    with pytest.raises(ProfileError) as err:
        load_profile_file(worse)
    text = str(err.value)
    assert f"{worse}.relative_speed: expected a number > 0" in text
    assert f"{worse}.link_loss: expected a number in [0, 1]" in text


def test_every_shipped_profile_number_cites_its_source() -> None:
    """Each field of each class's shipped profile names a document and says whether the
    number is published, derived from published figures, or an estimate."""
    from dataclasses import fields

    from htfl.devices import DEVICE_CLASSES, PROFILE_SOURCES, SimulationProfile

    names = [f.name for f in fields(SimulationProfile)]
    assert set(PROFILE_SOURCES) == set(DEVICE_CLASSES)
    for cls, sources in PROFILE_SOURCES.items():
        assert sorted(sources) == sorted(names), cls
        for name, source in sources.items():
            assert source.kind in ("published", "derived", "estimate"), (cls, name)
            assert source.document and source.how, (cls, name)
