"""Time each exported format once at export, to name the fastest passing format per runtime.

A short batch-1 measurement (warm-up, then the median of a few runs at 2 threads) through the
device's own backend (``cxr_core.runtime``): enough to rank formats of one runtime on the export
machine. It is not a benchmark (``edge-bench`` measures properly on the target device), and the
ranking can differ on other hardware (INT8 gains most on CPUs with dot-product instructions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle import ModelEntry

logger = logging.getLogger(__name__)

TIMING_THREADS = 2
WARMUP_RUNS = 3
TIMED_RUNS = 15


def time_format(
    path: str | Path, entry: ModelEntry, sample: NDArray[np.float32], runs: int = TIMED_RUNS
) -> dict[str, Any]:
    """``{"median_ms", "runs", "threads"}`` of batch-1 inference, or ``{"error": ...}`` when it cannot run."""
    try:
        from cxr_core.runtime import open_model

        backend = open_model(path, entry, threads=TIMING_THREADS)
        try:
            for _ in range(WARMUP_RUNS):
                backend(sample)
            times = []
            for _ in range(runs):
                start = time.perf_counter_ns()
                backend(sample)
                times.append((time.perf_counter_ns() - start) / 1e6)
        finally:
            backend.close()
    except Exception as exc:  # timing is advisory: a format that cannot be timed is still published
        logger.warning("could not time %s: %s: %s", path, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "median_ms": round(float(np.median(times)), 3),
        "runs": runs,
        "threads": TIMING_THREADS,
        "runtime": backend.runtime,
    }


def recommend(entries: Sequence[ModelEntry], report: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Per runtime, the fastest format that was built and passed its parity thresholds."""
    best: dict[str, tuple[float, str]] = {}
    for entry in entries:
        row = report.get(entry.name, {})
        latency = (row.get("latency") or {}).get("median_ms")
        if row.get("status") != "ok" or row.get("failures") or latency is None:
            continue
        runtime = entry.runtime
        if runtime not in best or latency < best[runtime][0]:
            best[runtime] = (float(latency), entry.name)
    return {runtime: name for runtime, (_, name) in sorted(best.items())}
