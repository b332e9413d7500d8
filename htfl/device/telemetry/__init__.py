"""Device-side telemetry of the htfl agent: probes, sampler, Prometheus exporter.

See ``docs/metrics.md`` (section *Device exporter*) for every exported metric.
"""

from __future__ import annotations

from .collector import DIRECTIONS, METRICS, PHASES, DeviceCollector, RoundPhaseMetrics
from .exporter import DeviceTelemetry, ExporterServer, start_exporter
from .probes import PLATFORMS, build_probes, detect_platform, explain_platform
from .sampler import Sampler, Snapshot

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "PHASES",
    "PLATFORMS",
    "DeviceCollector",
    "DeviceTelemetry",
    "ExporterServer",
    "RoundPhaseMetrics",
    "Sampler",
    "Snapshot",
    "build_probes",
    "detect_platform",
    "explain_platform",
    "start_exporter",
]
