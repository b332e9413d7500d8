"""Platform detection rules (documented in probes/detect.py and docs/metrics.md)."""

from __future__ import annotations

import pytest

from htfl.device.telemetry.probes import (
    PLATFORMS,
    build_probes,
    detect_platform,
    explain_platform,
)
from htfl.device.telemetry.probes.base import SysReader

from .helpers import denying_opener
from .trees import EXPECTED, PLATFORM_TREES, device_tree, write_tree


@pytest.mark.parametrize("name", sorted(PLATFORM_TREES))
def test_each_fixture_tree_is_detected(make_tree, name):
    root = make_tree(name)
    assert detect_platform(root, environ={}) == EXPECTED[name]["platform"]


def test_reason_names_the_marker(make_tree):
    assert explain_platform(make_tree("jetson_nano"), environ={}) == (
        "jetson",
        "etc/nv_tegra_release exists",
    )
    platform, reason = explain_platform(make_tree("rk3588"), environ={})
    assert platform == "rk3588" and "compatible" in reason


def test_empty_root_is_generic_linux(tmp_path):
    assert detect_platform(tmp_path, environ={}) == "linux"


@pytest.mark.parametrize("var", ["ANDROID_ROOT", "ANDROID_DATA", "TERMUX_VERSION"])
def test_android_from_environment(tmp_path, var):
    assert detect_platform(tmp_path, environ={var: "/system"}) == "android"


def test_environment_ignored_for_fixture_roots_unless_given(tmp_path, monkeypatch):
    monkeypatch.setenv("ANDROID_ROOT", "/system")
    assert detect_platform(tmp_path) == "linux"  # a fixture tree is another device
    assert detect_platform(tmp_path, environ={"ANDROID_ROOT": "/system"}) == "android"


def test_android_wins_over_tegra(make_tree):
    """Android on a Tegra SoC (e.g. a Shield TV) must get the Android probe set."""
    root = make_tree("jetson_nano")
    (root / "system").mkdir()
    (root / "system" / "build.prop").write_text("ro.build.version.release=11\n")
    assert detect_platform(root, environ={}) == "android"


def test_jetson_from_device_tree_only(tmp_path):
    write_tree(tmp_path, device_tree("NVIDIA Jetson Xavier NX Developer Kit", ["nvidia,p3668"]))
    assert detect_platform(tmp_path, environ={}) == "jetson"
    other = tmp_path / "other"
    write_tree(other, device_tree("Some carrier board", ["vendor,board", "nvidia,tegra234"]))
    assert detect_platform(other, environ={}) == "jetson"


@pytest.mark.parametrize(
    ("model", "compatible"),
    [
        ("Orange Pi 5B", ["rockchip,rk3588s-orangepi-5b", "rockchip,rk3588"]),
        ("Orange Pi 5B", []),  # model alone
        ("Radxa ROCK 5B", ["radxa,rock-5b", "rockchip,rk3588"]),
        ("Rockchip RK3588 EVB1 LP4 V10 Board", []),
    ],
)
def test_rk3588_variants(tmp_path, model, compatible):
    write_tree(tmp_path, device_tree(model, compatible))
    assert detect_platform(tmp_path, environ={}) == "rk3588"


def test_other_arm_board_is_generic(tmp_path):
    write_tree(tmp_path, device_tree("Raspberry Pi 4 Model B Rev 1.4", ["raspberrypi,4-model-b"]))
    assert detect_platform(tmp_path, environ={}) == "linux"


def test_x86_from_dmi_without_cpuinfo(tmp_path):
    write_tree(tmp_path, {"sys/class/dmi/id/board_vendor": "LattePanda\n"})
    assert detect_platform(tmp_path, environ={}) == "x86"


def test_unreadable_markers_do_not_crash(make_tree):
    """Detection reads through the opener; denied files simply do not match."""
    root = make_tree("rk3588")
    opener = denying_opener(
        root, ["sys/firmware/devicetree/base/model", "sys/firmware/devicetree/base/compatible"]
    )
    assert detect_platform(root, environ={}, opener=opener) == "linux"
    assert opener.calls  # the hook really was used


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_platform_has_a_probe_set(tmp_path, platform):
    names = [p.name for p in build_probes(platform, SysReader(tmp_path))]
    assert {"cpu", "cpufreq", "memory", "thermal", "netdev"} <= set(names)
    assert len(names) == len(set(names))


def test_unknown_platform_rejected(tmp_path):
    with pytest.raises(ValueError):
        build_probes("sparc", SysReader(tmp_path))
