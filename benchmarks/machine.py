"""What machine a benchmark ran on: CPU, cores, flags, OS, Python, runtime versions, thermal state.

Latency figures mean little without the machine beside them: INT8 speed depends on the CPU's
dot-product instructions (x86 ``avx512_vnni`` / ``avx_vnni``, ARM ``asimddp``), a throttled Pi
or a ``powersave`` governor halves throughput. Everything is read from ``/proc`` and ``/sys``
where readable (Linux, Android) and left ``None`` elsewhere; nothing here imports a runtime
(versions come from package metadata).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: CPU feature flags that decide how fast FP32 / INT8 convolutions can run.
FLAGS_OF_INTEREST: tuple[str, ...] = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "asimdhp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)

#: Distributions whose versions matter for the figures (read from metadata, never imported).
PACKAGES: tuple[str, ...] = (
    "cxr-edge",
    "numpy",
    "pillow",
    "onnxruntime",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorflow",
    "torch",
)

_CPUINFO = Path("/proc/cpuinfo")
_THERMAL = Path("/sys/class/thermal")
_CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each ``key : value`` line of /proc/cpuinfo (the first processor's block)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def physical_cores(text: str | None = None) -> int | None:
    """Physical cores from /proc/cpuinfo (unique (package, core) pairs), else None."""
    text = _read(_CPUINFO) if text is None else text
    if not text:
        return None
    pairs: set[tuple[str, str]] = set()
    package = core = ""
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core:
                pairs.add((package, core))
            package = core = ""
    return len(pairs) or None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical and physical cores, and the flags of :data:`FLAGS_OF_INTEREST` present."""
    text = _read(_CPUINFO) or ""
    fields = _cpuinfo_fields(text)
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "model": model or None,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(text) if text else None,
        "flags": [flag for flag in FLAGS_OF_INTEREST if flag in flags],
        "int8_dot_product": bool(flags & {"avx512_vnni", "avx_vnni", "asimddp", "amx_int8"}),
    }


def thermal_state() -> list[dict[str, Any]]:
    """Each readable thermal zone: its type and temperature in degrees Celsius."""
    zones = []
    if not _THERMAL.is_dir():
        return zones
    for zone in sorted(_THERMAL.glob("thermal_zone*")):
        raw = _read(zone / "temp")
        try:
            celsius = int(raw) / 1000.0 if raw is not None else None
        except ValueError:
            celsius = None
        if celsius is not None:
            zones.append({"zone": zone.name, "type": _read(zone / "type"), "celsius": celsius})
    return zones


def frequency_state() -> dict[str, Any]:
    """cpu0's frequency governor and current / max frequency in MHz, where readable."""

    def mhz(name: str) -> float | None:
        raw = _read(_CPUFREQ / name)
        try:
            return int(raw) / 1000.0 if raw is not None else None
        except ValueError:
            return None

    return {
        "governor": _read(_CPUFREQ / "scaling_governor"),
        "current_mhz": mhz("scaling_cur_freq"),
        "max_mhz": mhz("cpuinfo_max_freq"),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent), from metadata only."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: a busy machine explains noisy latencies."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """Everything above in one JSON-able dict (the ``machine`` block of results.json)."""
    return {
        "hostname": platform.node() or None,
        "os": platform.platform(),
        "system": platform.system(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "cpu": cpu_info(),
        "memory_total_mb": _total_memory_mb(),
        "load_average": load_average(),
        "thermal": thermal_state(),
        "frequency": frequency_state(),
        "packages": package_versions(),
    }


def _total_memory_mb() -> float | None:
    text = _read(Path("/proc/meminfo"))
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            try:
                return round(int(parts[1]) / 1024.0, 1)
            except (IndexError, ValueError):
                return None
    return None
