"""Thread scaling measured in pairs: one process, single inferences alternating between sessions.

Issue 16 asks how ONNX Runtime INT8 at 2 threads compares with its own 1-thread time. Timed in
separate processes a minute apart (edge-bench's rows), the two p50s also compare two states of the
machine: on this project's development VMs a 1-thread p50 moved by 20-40% from minute to minute
(docs/benchmarks.md), which alone moves the ratio from 0.65 to 0.8. Here one process opens the
baseline (1 thread, default settings) and every variant on the same model file, then runs one
inference of each in turn, reversing the order every other pair, so that drift lands on both sides
of every pair. It reports each variant's p50, the ratio of the p50s and the median of the per-pair
ratios; the two agree when the machine was steady.

Every session runs the bundle's own backend (:func:`cxr_core.runtime.open_model`) on a golden
input, so the settings are exactly the ones ``edge-bench --ab`` and ``--tune`` use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchmarks.measure import optional_golden, sample_inputs
from cxr_core.bundle import Bundle
from cxr_core.errors import CxrEdgeError
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings

logger = logging.getLogger(__name__)

#: A short idle gap after each inference, as between a device's images; it also lets a spinning
#: pool stop (``session.force_spinning_stop``) before the next session runs.
DEFAULT_GAP_S = 0.002


class ThreadScalingError(CxrEdgeError, ValueError):
    """Out-of-range pair counts or an empty variant list (the message names the value)."""


@dataclass(frozen=True)
class ScalingVariant:
    """One session to compare with the 1-thread baseline."""

    threads: int
    settings: RuntimeSettings = DEFAULT_SETTINGS

    def label(self, runtime_family: str) -> str:
        return f"{self.threads} threads, {self.settings.label(runtime_family)}"


@dataclass(frozen=True)
class ScalingResult:
    """One variant against the baseline, over the same pairs."""

    model: str
    threads: int
    settings: dict[str, Any]
    label: str
    pairs: int
    p50_ms: float
    baseline_p50_ms: float
    ratio_of_p50: float  # variant p50 / baseline p50
    median_pair_ratio: float  # median over pairs of variant time / baseline time in that pair

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_variants() -> tuple[ScalingVariant, ...]:
    """2 threads with the default settings, and with spinning during the inference."""
    return (ScalingVariant(2), ScalingVariant(2, RuntimeSettings(spinning=True)))


def measure_thread_scaling(
    bundle: Bundle,
    model: str,
    variants: Sequence[ScalingVariant] | None = None,
    pairs: int = 100,
    warmup: int = 10,
    gap_s: float = DEFAULT_GAP_S,
) -> list[ScalingResult]:
    """Alternate single inferences of ``model`` at 1 thread and at every variant; see the module doc."""
    from cxr_core.runtime import open_model

    chosen = tuple(default_variants() if variants is None else variants)
    if not chosen:
        raise ThreadScalingError("no variants to compare with the 1-thread baseline; expected at least one")
    if not isinstance(pairs, int) or not 2 <= pairs <= 100_000:
        raise ThreadScalingError(f"pairs={pairs!r}; expected an integer from 2 to 100000")
    if not isinstance(warmup, int) or not 0 <= warmup <= 10_000:
        raise ThreadScalingError(f"warmup={warmup!r}; expected an integer from 0 to 10000")
    entry = bundle.model(model)
    one = sample_inputs(bundle, optional_golden(bundle), 1)
    sessions: list[Any] = []
    try:
        for threads, settings in [(1, DEFAULT_SETTINGS), *((v.threads, v.settings) for v in chosen)]:
            sessions.append(open_model(bundle.path(entry), entry, threads=threads, settings=settings))
        for backend in sessions:
            for _ in range(warmup):
                backend(one)
        times = np.zeros((pairs, len(sessions)))
        order = list(range(len(sessions)))
        for pair in range(pairs):
            for index in order if pair % 2 == 0 else order[::-1]:
                start = time.perf_counter_ns()
                sessions[index](one)
                times[pair, index] = (time.perf_counter_ns() - start) / 1e6
                time.sleep(gap_s)
    finally:
        for backend in sessions:
            backend.close()
    baseline = times[:, 0]
    base_p50 = float(np.median(baseline))
    results = []
    for column, variant in enumerate(chosen, start=1):
        p50 = float(np.median(times[:, column]))
        results.append(
            ScalingResult(
                model=model,
                threads=variant.threads,
                settings=variant.settings.to_dict(),
                label=variant.label(entry.runtime),
                pairs=pairs,
                p50_ms=round(p50, 4),
                baseline_p50_ms=round(base_p50, 4),
                ratio_of_p50=round(p50 / base_p50, 4),
                median_pair_ratio=round(float(np.median(times[:, column] / baseline)), 4),
            )
        )
        logger.info("%s %s: %.2f ms, %.3f of 1 thread", model, results[-1].label, p50, p50 / base_p50)
    return results
