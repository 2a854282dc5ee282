"""edge-bench refuses sizes beyond a sane maximum (issue 15: --batch 100000 was OOM-killed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.config import BenchConfig, BenchConfigError
from benchmarks.latency import LatencyError, TimingPlan
from cxr_core.cli_common import MAX_BATCH, max_threads


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": MAX_BATCH + 1}, "--batch 257 is out of range; expected 1..256"),
        ({"batch": 0}, "--batch 0 is out of range"),
        ({"threads": (max_threads() + 1,)}, "expected integers from 1 to"),
        ({"rounds": 1000}, "--rounds 1000 is out of range"),
        ({"e2e_repeats": 10**6}, "--e2e-repeats"),
    ],
)
def test_sizes_beyond_the_limit_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(BenchConfigError, match=message):
        BenchConfig(bundle=Path("b"), out=Path("o"), **kwargs)


def test_the_limits_themselves_are_accepted() -> None:
    config = BenchConfig(bundle=Path("b"), out=Path("o"), batch=MAX_BATCH, threads=(1, max_threads()))
    assert config.batch == MAX_BATCH and 1 <= max_threads() <= 64


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runs": 0},
        {"runs": 10**7},
        {"warmup": 10**5},
        {"max_seconds": float("inf")},
        {"max_seconds": float("nan")},
    ],
)
def test_timing_plan_bounds(kwargs: dict) -> None:
    with pytest.raises(LatencyError):
        TimingPlan(**kwargs)
