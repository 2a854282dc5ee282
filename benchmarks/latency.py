"""Timing loops and their summary: warm-up first, ``time.perf_counter_ns``, outliers counted, not dropped.

A benchmark that hides its slow runs lies about the tail a user feels, so every sample is kept:
the summary reports p50/p90/p99, mean, min, max and how many samples fall outside Tukey's fences
(1.5 IQR beyond the quartiles), and the raw samples go into results.json for the plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_core.errors import CxrEdgeError


class LatencyError(CxrEdgeError, ValueError):
    """A timing plan with out-of-range settings, or a latency summary of no samples."""


@dataclass(frozen=True)
class TimingPlan:
    """How long to time one variant: ``warmup`` untimed calls, then up to ``runs`` timed ones,
    stopping early once ``max_seconds`` of timed calls have passed (at least one timed call)."""

    runs: int = 50
    warmup: int = 5
    max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.runs, int) or not 1 <= self.runs <= 1_000_000:
            raise LatencyError(f"runs={self.runs!r}; expected an integer from 1 to 1000000")
        if not isinstance(self.warmup, int) or not 0 <= self.warmup <= 10_000:
            raise LatencyError(f"warmup={self.warmup!r}; expected an integer from 0 to 10000")
        if not (isinstance(self.max_seconds, int | float) and 0 < self.max_seconds <= 3600):
            raise LatencyError(f"max_seconds={self.max_seconds!r}; expected a number of seconds in (0, 3600]")


def time_calls(call: Callable[[], Any], plan: TimingPlan) -> tuple[list[float], bool]:
    """Run ``call`` ``plan.warmup`` times untimed, then time it; return (samples in ms, truncated).

    ``truncated`` is True when ``max_seconds`` stopped the loop before ``plan.runs`` samples.
    """
    for _ in range(plan.warmup):
        call()
    budget_ns = int(plan.max_seconds * 1e9)
    samples: list[float] = []
    started = time.perf_counter_ns()
    for _ in range(plan.runs):
        t0 = time.perf_counter_ns()
        call()
        t1 = time.perf_counter_ns()
        samples.append((t1 - t0) / 1e6)
        if t1 - started >= budget_ns:
            break
    return samples, len(samples) < plan.runs


def _round(value: float, digits: int = 4) -> float:
    return float(round(value, digits))


def summarize(samples_ms: Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99, mean, std, min, max and Tukey outliers of latency samples in milliseconds."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise LatencyError("summarize got no latency samples; expected at least one")
    q1, p50, q3, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    slow = int((values > high).sum())
    fast = int((values < low).sum())
    return {
        "count": int(values.size),
        "p50": _round(p50),
        "p90": _round(p90),
        "p99": _round(p99),
        "mean": _round(values.mean()),
        "std": _round(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": _round(values.min()),
        "max": _round(values.max()),
        "q1": _round(q1),
        "q3": _round(q3),
        "outliers": {
            "count": slow + fast,
            "slow": slow,
            "fast": fast,
            "share": _round((slow + fast) / values.size),
            "low_fence": _round(low),
            "high_fence": _round(high),
            "rule": "Tukey: outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]; counted, kept in every figure",
        },
    }


def throughput(call: Callable[[], Any], batch: int, plan: TimingPlan) -> dict[str, Any]:
    """Images per second at ``batch`` images per call (one warm-up call, then timed calls)."""
    samples, truncated = time_calls(call, TimingPlan(plan.runs, min(plan.warmup, 1), plan.max_seconds))
    median_ms = float(np.median(samples))
    return {
        "batch": batch,
        "calls": len(samples),
        "ms_per_batch_p50": _round(median_ms),
        "images_per_s": _round(batch * 1000.0 / median_ms, 2) if median_ms > 0 else math.inf,
        "truncated": truncated,
    }
