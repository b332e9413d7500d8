"""Fixture filesystem trees laid out like the real devices' /proc, /sys and /etc.

Each ``*_tree()`` returns ``{relative path: content}``; :class:`Link` values
become symlinks, exactly where the real kernel has them (``/sys/class/thermal``
entries, ``cpuN/cpufreq`` -> ``cpufreq/policyM``, ``/sys/class/devfreq``,
``/sys/class/hwmon``, ``/proc/device-tree``).  :data:`EXPECTED` holds the values
the probes must parse from them, converted to base units by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ANDROID_UNREADABLE",
    "EXPECTED",
    "NANO_STAT_A",
    "NANO_STAT_B",
    "PLATFORM_TREES",
    "Link",
    "bump_proc_stat",
    "proc_stat",
    "write_tree",
]


class Link(str):
    """A symlink target (relative, as on a real sysfs)."""


def write_tree(root: Path, tree: dict[str, str | Link]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    links = []
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            links.append((path, content))
        else:
            path.write_text(content)
    for path, target in links:
        os.symlink(target, path)
    return root


# --------------------------------------------------------------------------- builders
_COLUMNS = 10  # user nice system idle iowait irq softirq steal guest guest_nice


def proc_stat(cores: list[list[int]]) -> str:
    """/proc/stat text whose aggregate ``cpu`` line is the column sum of *cores*."""
    assert all(len(c) == _COLUMNS for c in cores)
    agg = [sum(col) for col in zip(*cores, strict=True)]
    lines = ["cpu  " + " ".join(map(str, agg))]
    lines += [f"cpu{i} " + " ".join(map(str, c)) for i, c in enumerate(cores)]
    lines += [
        "intr 183457223 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
        "ctxt 318762315",
        "btime 1732233600",
        "processes 161903",
        "procs_running 2",
        "procs_blocked 0",
        "softirq 91283737 2 24379101 9 1234 0 0 1121 20123123 0 46779147",
    ]
    return "\n".join(lines) + "\n"


def _generic_cores(n: int, step: int = 0) -> list[list[int]]:
    # Each step adds 60 user + 20 system + 100 idle + 20 iowait ticks per core:
    # utilisation (60 + 20) / 200 = 0.4 on every core.
    return [
        [1000 + 10 * i + 60 * step, 0, 400 + 20 * step, 8000 + 100 * step, 50 + 20 * step]
        + [0, 0, 0, 0, 0]
        for i in range(n)
    ]


def bump_proc_stat(root: Path, ncores: int, step: int = 1) -> None:
    """Rewrite ``proc/stat`` as *step* generic periods later (utilisation 0.4)."""
    path = root / "proc" / "stat"
    mode = path.stat().st_mode if path.is_file() else None
    path.write_text(proc_stat(_generic_cores(ncores, step)))
    if mode is not None:
        path.chmod(mode)


# Jetson Nano, hand-computed deltas (see test_probes.test_cpu_utilisation_by_hand):
#   cpu0: +150 user +50 system +50 idle (+10 guest, already inside user) -> 200/250 = 0.8
#   cpu1: +100 user +25 system +125 idle                                 -> 125/250 = 0.5
#   cpu2: +50 user +25 system +150 idle +25 iowait                        ->  75/250 = 0.3
#   cpu3: +225 idle +25 iowait                                            ->   0/250 = 0.0
#   all : 400 busy of 1000 ticks                                          -> 0.4
NANO_STAT_A = [
    [1000, 10, 400, 8000, 50, 5, 3, 0, 0, 0],
    [900, 0, 300, 8200, 40, 0, 2, 0, 0, 0],
    [800, 0, 250, 8300, 60, 0, 1, 0, 0, 0],
    [700, 0, 200, 8500, 30, 0, 0, 0, 0, 0],
]
NANO_STAT_B = [
    [1150, 10, 450, 8050, 50, 5, 3, 0, 10, 0],
    [1000, 0, 325, 8325, 40, 0, 2, 0, 0, 0],
    [850, 0, 275, 8450, 85, 0, 1, 0, 0, 0],
    [700, 0, 200, 8725, 55, 0, 0, 0, 0, 0],
]


def meminfo(total_kb: int, available_kb: int) -> str:
    free = available_kb // 2
    return (
        f"MemTotal:       {total_kb} kB\n"
        f"MemFree:        {free} kB\n"
        f"MemAvailable:   {available_kb} kB\n"
        "Buffers:           98304 kB\n"
        f"Cached:         {available_kb - free} kB\n"
        "SwapCached:            0 kB\n"
        "Active:          1203340 kB\n"
        "SwapTotal:       2029564 kB\n"
        "SwapFree:        2029564 kB\n"
        "HugePages_Total:       0\n"
        "Hugepagesize:       2048 kB\n"
    )


def net_dev(ifaces: dict[str, tuple[int, int]]) -> str:
    lines = [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast"
        "|bytes    packets errs drop fifo colls carrier compressed",
    ]
    for name, (rx, tx) in ifaces.items():
        lines.append(
            f"{name:>6}: {rx:>8} {rx // 1000:>7} 0 0 0 0 0 0 {tx:>8} {tx // 1000:>7} 0 0 0 0 0 0"
        )
    return "\n".join(lines) + "\n"


def cpufreq(policies: dict[int, tuple[list[int], int]]) -> dict[str, str | Link]:
    """``{policy: (cpus, kHz)}`` -> policy dirs plus ``cpuN/cpufreq`` symlinks."""
    tree: dict[str, str | Link] = {}
    base = "sys/devices/system/cpu"
    for policy, (cpus, khz) in policies.items():
        tree[f"{base}/cpufreq/policy{policy}/scaling_cur_freq"] = f"{khz}\n"
        tree[f"{base}/cpufreq/policy{policy}/scaling_governor"] = "schedutil\n"
        for cpu in cpus:
            tree[f"{base}/cpu{cpu}/cpufreq"] = Link(f"../cpufreq/policy{policy}")
            tree[f"{base}/cpu{cpu}/online"] = "1\n"
    return tree


def thermal(zones: list[tuple[str, int]]) -> dict[str, str | Link]:
    tree: dict[str, str | Link] = {}
    for i, (kind, milli) in enumerate(zones):
        real = f"sys/devices/virtual/thermal/thermal_zone{i}"
        tree[f"{real}/type"] = f"{kind}\n"
        tree[f"{real}/temp"] = f"{milli}\n"
        tree[f"{real}/mode"] = "enabled\n"
        tree[f"sys/class/thermal/thermal_zone{i}"] = Link(
            f"../../devices/virtual/thermal/thermal_zone{i}"
        )
    return tree


def device_tree(model: str, compatible: list[str]) -> dict[str, str | Link]:
    base = "sys/firmware/devicetree/base"
    return {
        f"{base}/model": model + "\x00",
        f"{base}/compatible": "".join(c + "\x00" for c in compatible),
        "proc/device-tree": Link("../sys/firmware/devicetree/base"),
    }


ARM_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd04\n"
)


def x86_cpuinfo(n: int) -> str:
    return "".join(
        f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 190\n"
        f"model name\t: Intel(R) N100\ncpu MHz\t\t: 806.000\n\n"
        for i in range(n)
    )


# --------------------------------------------------------------------------- platforms
def jetson_nano_tree() -> dict[str, str | Link]:
    """Jetson Nano 4 GB, JetPack 4.6.1 (L4T R32.7.1, kernel 4.9)."""
    return {
        "etc/nv_tegra_release": "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, "
        "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n",
        **device_tree(
            "NVIDIA Jetson Nano Developer Kit",
            ["nvidia,p3449-0000-b00+p3448-0002-b00", "nvidia,jetson-nano", "nvidia,tegra210"],
        ),
        "proc/cpuinfo": ARM_CPUINFO,
        "proc/stat": proc_stat(NANO_STAT_A),
        "proc/meminfo": meminfo(4059880, 2563612),
        "proc/net/dev": net_dev(
            {"lo": (1048576, 1048576), "eth0": (734003200, 52428800), "l4tbr0": (0, 0)}
        ),
        **cpufreq({0: ([0, 1, 2, 3], 1479000)}),
        **thermal(
            [
                ("AO-therm", 40500),
                ("CPU-therm", 41000),
                ("GPU-therm", 38500),
                ("PLL-therm", 39000),
                ("PMIC-Die", 100000),
                ("thermal-fan-est", 40200),
            ]
        ),
        "sys/devices/gpu.0/load": "153\n",
        "sys/devices/gpu.0/railgate_enable": "1\n",
        "sys/devices/gpu.0/devfreq/57000000.gpu/cur_freq": "921600000\n",
        "sys/class/devfreq/57000000.gpu": Link("../../devices/gpu.0/devfreq/57000000.gpu"),
        # EMC (JetPack 4 clock debugfs, activity monitor) and the INA3221 GPU rail (IIO)
        "sys/kernel/debug/clk/emc/clk_rate": "1600000000\n",
        "sys/kernel/actmon_avg_activity/mc_all": "192000\n",
        **_ina3221_iio({"POM_5V_IN": 3112, "POM_5V_GPU": 417, "POM_5V_CPU": 832}),
    }


def _ina3221_iio(rails: dict[str, int], bus: str = "6-0040") -> dict[str, str | Link]:
    """JetPack 4's ``ina3221x`` IIO channels: rail name -> mW (channels 0..2)."""
    iio = f"sys/bus/i2c/drivers/ina3221x/{bus}/iio:device0"
    out: dict[str, str | Link] = {}
    for channel, (name, mw) in enumerate(rails.items()):
        out[f"{iio}/rail_name_{channel}"] = f"{name}\n"
        out[f"{iio}/in_power{channel}_input"] = f"{mw}\n"
    return out


def _ina3221_hwmon(rails: dict[str, tuple[int, int]], bus: str = "1-0040") -> dict[str, str | Link]:
    """JetPack 5+'s ``ina3221`` hwmon channels: rail name -> (mV, mA) (channels 1..3)."""
    hwmon = f"sys/bus/i2c/drivers/ina3221/{bus}/hwmon/hwmon3"
    out: dict[str, str | Link] = {}
    for channel, (name, (mv, ma)) in enumerate(rails.items(), start=1):
        out[f"{hwmon}/in{channel}_label"] = f"{name}\n"
        out[f"{hwmon}/in{channel}_input"] = f"{mv}\n"
        out[f"{hwmon}/curr{channel}_input"] = f"{ma}\n"
    return out


def jetson_orin_jp5_tree() -> dict[str, str | Link]:
    """Jetson AGX Orin 32 GB, JetPack 5.1.2 (L4T R35.4.1, kernel 5.10)."""
    return {
        "etc/nv_tegra_release": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, "
        "EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
        **device_tree(
            "NVIDIA Jetson AGX Orin Developer Kit",
            ["nvidia,p3737-0000+p3701-0004", "nvidia,p3701-0004", "nvidia,tegra234"],
        ),
        "proc/cpuinfo": ARM_CPUINFO,
        "proc/stat": proc_stat(_generic_cores(8)),
        "proc/meminfo": meminfo(31002720, 28000000),
        "proc/net/dev": net_dev({"lo": (4096, 4096), "eth0": (91232, 40960), "wlan0": (0, 0)}),
        **cpufreq(
            {0: ([0, 1, 2, 3], 2201600), 4: ([4, 5, 6, 7], 1728000)},
        ),
        **thermal(
            [
                ("cpu-thermal", 47500),
                ("gpu-thermal", 45968),
                ("cv0-thermal", 46125),
                ("cv1-thermal", 46312),
                ("cv2-thermal", 45750),
                ("soc0-thermal", 44937),
                ("soc1-thermal", 45093),
                ("soc2-thermal", 44468),
                ("tj-thermal", 48000),
            ]
        ),
        "sys/devices/17000000.ga10b/load": "537\n",
        "sys/devices/17000000.ga10b/devfreq/17000000.ga10b/cur_freq": "1300500000\n",
        "sys/class/devfreq/17000000.ga10b": Link(
            "../../devices/17000000.ga10b/devfreq/17000000.ga10b"
        ),
        "sys/kernel/debug/bpmp/debug/clk/emc/rate": "3199000000\n",
        "sys/kernel/actmon_avg_activity/mc_all": "1279600\n",
        **_ina3221_hwmon({"VDD_GPU_SOC": (5072, 1421), "VDD_CPU_CV": (5072, 600)}),
    }


def jetson_orin_jp6_tree() -> dict[str, str | Link]:
    """Jetson Orin Nano 8 GB devkit, JetPack 6.0 (L4T R36.3.0, kernel 5.15)."""
    gpu = "sys/devices/platform/bus@0/17000000.gpu"
    return {
        "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, "
        "EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n",
        **device_tree(
            "NVIDIA Jetson Orin Nano Developer Kit",
            ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"],
        ),
        "proc/cpuinfo": ARM_CPUINFO,
        "proc/stat": proc_stat(_generic_cores(6)),
        "proc/meminfo": meminfo(7802216, 6100000),
        "proc/net/dev": net_dev({"lo": (4096, 4096), "eth0": (123456, 7890)}),
        **cpufreq({0: ([0, 1, 2, 3], 1510400), 4: ([4, 5], 729600)}),
        **thermal(
            [
                ("cpu-thermal", 50031),
                ("gpu-thermal", 48750),
                ("cv0-thermal", -256000),  # CV zones read -256 °C when the DLA is off
                ("soc0-thermal", 48562),
                ("tj-thermal", 50031),
            ]
        ),
        f"{gpu}/load": "412\n",
        f"{gpu}/devfreq/17000000.gpu/cur_freq": "624750000\n",
        "sys/class/devfreq/17000000.gpu": Link(
            "../../devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu"
        ),
        "sys/kernel/debug/bpmp/debug/clk/emc/rate": "2133000000\n",
        **_ina3221_hwmon({"VDD_IN": (5000, 1500), "VDD_CPU_GPU_CV": (5000, 800)}),
    }


def rk3588_tree() -> dict[str, str | Link]:
    """Orange Pi 5B (RK3588S, 16 GB), Orange Pi's Ubuntu image, kernel 5.10.160-rockchip."""
    gpu = "sys/devices/platform/fb000000.gpu/devfreq/fb000000.gpu"
    return {
        **device_tree("Orange Pi 5B", ["rockchip,rk3588s-orangepi-5b", "rockchip,rk3588"]),
        "proc/cpuinfo": ARM_CPUINFO,
        "proc/stat": proc_stat(_generic_cores(8)),
        "proc/meminfo": meminfo(16139932, 15000000),
        "proc/net/dev": net_dev(
            {"lo": (2048, 2048), "eth0": (987654321, 123456789), "wlan0": (0, 0)}
        ),
        **cpufreq(
            {
                0: ([0, 1, 2, 3], 1800000),
                4: ([4, 5], 2352000),
                6: ([6, 7], 2352000),
            }
        ),
        **thermal(
            [
                ("soc-thermal", 45307),
                ("bigcore0-thermal", 46230),
                ("bigcore1-thermal", 45307),
                ("littlecore-thermal", 46230),
                ("center-thermal", 44384),
                ("gpu-thermal", 44384),
                ("npu-thermal", 45307),
            ]
        ),
        f"{gpu}/load": "37@600000000Hz\n",
        f"{gpu}/cur_freq": "600000000\n",
        f"{gpu}/governor": "simple_ondemand\n",
        "sys/class/devfreq/fb000000.gpu": Link(
            "../../devices/platform/fb000000.gpu/devfreq/fb000000.gpu"
        ),
        # The rknpu driver prints "%2.d%%": a zero load renders as blanks.
        "sys/kernel/debug/rknpu/load": "NPU load:  Core0: 25%, Core1:   %, Core2:  7%,\n",
        "sys/kernel/debug/rknpu/version": "RKNPU driver: v0.9.6\n",
    }


def lattepanda_tree() -> dict[str, str | Link]:
    """LattePanda Delta 3 (Intel N100, 8 GB), Debian 12, kernel 6.1."""
    hw = "sys/devices"
    return {
        "proc/cpuinfo": x86_cpuinfo(4),
        "proc/stat": proc_stat(_generic_cores(4)),
        "proc/meminfo": meminfo(7843104, 6900000),
        "proc/net/dev": net_dev(
            {"lo": (8192, 8192), "enp1s0": (555555555, 44444444), "wlo1": (1000, 2000)}
        ),
        "sys/class/dmi/id/sys_vendor": "LattePanda\n",
        "sys/class/dmi/id/board_vendor": "LattePanda\n",
        "sys/class/dmi/id/board_name": "LattePanda Delta 3\n",
        **cpufreq(
            {
                0: ([0], 806000),
                1: ([1], 3400000),
                2: ([2], 2900000),
                3: ([3], 1200000),
            }
        ),
        **thermal([("acpitz", 27800), ("INT3400 Thermal", 20000), ("x86_pkg_temp", 52000)]),
        f"{hw}/virtual/thermal/thermal_zone0/hwmon0/name": "acpitz\n",
        f"{hw}/virtual/thermal/thermal_zone0/hwmon0/temp1_input": "27800\n",
        "sys/class/hwmon/hwmon0": Link("../../devices/virtual/thermal/thermal_zone0/hwmon0"),
        f"{hw}/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/hwmon1/name": "nvme\n",
        f"{hw}/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/hwmon1/temp1_input": "38850\n",
        f"{hw}/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/hwmon1/temp1_label": "Composite\n",
        "sys/class/hwmon/hwmon1": Link(
            "../../devices/pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/hwmon1"
        ),
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/name": "coretemp\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp1_label": "Package id 0\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp1_input": "52000\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp1_crit": "105000\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp2_label": "Core 0\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp2_input": "50000\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp3_label": "Core 1\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp3_input": "49000\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp4_label": "Core 2\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp4_input": "51000\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp5_label": "Core 3\n",
        f"{hw}/platform/coretemp.0/hwmon/hwmon2/temp5_input": "48000\n",
        "sys/class/hwmon/hwmon2": Link("../../devices/platform/coretemp.0/hwmon/hwmon2"),
    }


# Files an Android app (Termux, untrusted_app SELinux domain) cannot read.
ANDROID_UNREADABLE = ("proc/stat", "sys/devices/virtual/thermal/thermal_zone1/temp")


def android_tree() -> dict[str, str | Link]:
    """Pixel-class phone, Android 13, seen from Termux (no root)."""
    return {
        "system/build.prop": "ro.build.version.release=13\nro.product.model=Pixel 6\n"
        "ro.product.board=oriole\n",
        "proc/cpuinfo": ARM_CPUINFO,
        # Present but denied by SELinux; tests make it unreadable.
        "proc/stat": proc_stat(_generic_cores(8)),
        "proc/meminfo": meminfo(7843104, 3100000),
        "proc/net/dev": net_dev({"lo": (0, 0), "wlan0": (31415926, 2718281), "rmnet0": (0, 0)}),
        **cpufreq({0: ([0, 1, 2, 3], 1803000), 4: ([4, 5], 2253000), 6: ([6, 7], 2802000)}),
        **thermal([("BIG", 43000), ("MID", 41000), ("LITTLE", 39000), ("battery", 31000)]),
    }


PLATFORM_TREES = {
    "jetson_nano": jetson_nano_tree,
    "jetson_orin_jp5": jetson_orin_jp5_tree,
    "jetson_orin_jp6": jetson_orin_jp6_tree,
    "rk3588": rk3588_tree,
    "lattepanda": lattepanda_tree,
    "android": android_tree,
}

# What the probes must read from each tree, in base units, computed by hand.
# cpu frequencies: kHz * 1000; temperatures: millidegrees / 1000; memory: kB * 1024.
EXPECTED: dict[str, dict] = {
    "jetson_nano": {
        "platform": "jetson",
        "ncores": 4,
        "freq_hz": {str(c): 1_479_000_000.0 for c in range(4)},
        "temp_c": {
            "AO-therm": 40.5,
            "CPU-therm": 41.0,
            "GPU-therm": 38.5,
            "PLL-therm": 39.0,
            "PMIC-Die": 100.0,
            "thermal-fan-est": 40.2,
        },
        "mem": (4059880 * 1024, 2563612 * 1024),
        "net": {"eth0": (734003200, 52428800), "lo": (1048576, 1048576), "l4tbr0": (0, 0)},
        "gpu": (0.153, 921_600_000.0),
    },
    "jetson_orin_jp5": {
        "platform": "jetson",
        "ncores": 8,
        "freq_hz": {
            **{str(c): 2_201_600_000.0 for c in range(4)},
            **{str(c): 1_728_000_000.0 for c in range(4, 8)},
        },
        "temp_c": {
            "cpu-thermal": 47.5,
            "gpu-thermal": 45.968,
            "cv0-thermal": 46.125,
            "cv1-thermal": 46.312,
            "cv2-thermal": 45.75,
            "soc0-thermal": 44.937,
            "soc1-thermal": 45.093,
            "soc2-thermal": 44.468,
            "tj-thermal": 48.0,
        },
        "mem": (31002720 * 1024, 28000000 * 1024),
        "net": {"eth0": (91232, 40960)},
        "gpu": (0.537, 1_300_500_000.0),
    },
    "jetson_orin_jp6": {
        "platform": "jetson",
        "ncores": 6,
        "freq_hz": {
            **{str(c): 1_510_400_000.0 for c in range(4)},
            "4": 729_600_000.0,
            "5": 729_600_000.0,
        },
        "temp_c": {
            "cpu-thermal": 50.031,
            "gpu-thermal": 48.75,
            "cv0-thermal": -256.0,
            "soc0-thermal": 48.562,
            "tj-thermal": 50.031,
        },
        "mem": (7802216 * 1024, 6100000 * 1024),
        "net": {"eth0": (123456, 7890)},
        "gpu": (0.412, 624_750_000.0),
    },
    "rk3588": {
        "platform": "rk3588",
        "ncores": 8,
        "freq_hz": {
            **{str(c): 1_800_000_000.0 for c in range(4)},
            **{str(c): 2_352_000_000.0 for c in range(4, 8)},
        },
        "temp_c": {
            "soc-thermal": 45.307,
            "bigcore0-thermal": 46.23,
            "bigcore1-thermal": 45.307,
            "littlecore-thermal": 46.23,
            "center-thermal": 44.384,
            "gpu-thermal": 44.384,
            "npu-thermal": 45.307,
        },
        "mem": (16139932 * 1024, 15000000 * 1024),
        "net": {"eth0": (987654321, 123456789)},
        "gpu": (0.37, 600_000_000.0),
        "npu": {"0": 0.25, "1": 0.0, "2": 0.07},
    },
    "lattepanda": {
        "platform": "x86",
        "ncores": 4,
        "freq_hz": {"0": 806_000_000.0, "1": 3_400_000_000.0, "2": 2_900_000_000.0, "3": 1.2e9},
        "temp_c": {"acpitz": 27.8, "INT3400 Thermal": 20.0, "x86_pkg_temp": 52.0},
        "coretemp_c": {
            ("Package id 0", "coretemp0_temp1"): 52.0,
            ("Core 0", "coretemp0_temp2"): 50.0,
            ("Core 1", "coretemp0_temp3"): 49.0,
            ("Core 2", "coretemp0_temp4"): 51.0,
            ("Core 3", "coretemp0_temp5"): 48.0,
        },
        "mem": (7843104 * 1024, 6900000 * 1024),
        "net": {"enp1s0": (555555555, 44444444), "wlo1": (1000, 2000)},
    },
    "android": {
        "platform": "android",
        "ncores": 8,
        "freq_hz": {
            **{str(c): 1_803_000_000.0 for c in range(4)},
            "4": 2_253_000_000.0,
            "5": 2_253_000_000.0,
            "6": 2_802_000_000.0,
            "7": 2_802_000_000.0,
        },
        # zone1 ("MID") is unreadable for an app.
        "temp_c": {"BIG": 43.0, "LITTLE": 39.0, "battery": 31.0},
        "mem": (7843104 * 1024, 3100000 * 1024),
        "net": {"wlan0": (31415926, 2718281)},
    },
}
