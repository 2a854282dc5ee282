"""Resident memory of the current process: current RSS and the peak (high-water mark).

edge-bench measures every format in a fresh child process, so the child's own peak RSS is that
format's footprint (Python + numpy + the runtime + the model), not a mix of every format run so
far. Standard library first: ``/proc/self/status`` (VmRSS, VmHWM) on Linux and Android,
``resource.getrusage`` elsewhere (``ru_maxrss`` is KiB on Linux, bytes on macOS); psutil only
when present and nothing else answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        text = _STATUS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            try:
                return int(parts[1])
            except (IndexError, ValueError):
                return None
    return None


def _getrusage_peak_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _psutil_rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / (1024.0 * 1024.0)


def current_rss_mb() -> float | None:
    """Resident set size now, in MiB (None when no source answers)."""
    kib = _status_kib("VmRSS")
    return kib / 1024.0 if kib is not None else _psutil_rss_mb()


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MiB."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024.0
    peak = _getrusage_peak_mb()
    return peak if peak is not None else _psutil_rss_mb()


def memory_source() -> str:
    """Which source :func:`peak_rss_mb` reads on this platform (recorded in results.json)."""
    if _status_kib("VmHWM") is not None:
        return "/proc/self/status VmHWM"
    if _getrusage_peak_mb() is not None:
        return "resource.getrusage ru_maxrss"
    return "psutil rss (current, not peak)" if _psutil_rss_mb() is not None else "unavailable"
