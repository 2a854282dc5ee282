"""benchmarks.thread_scaling: 1-thread and 2-thread sessions timed in alternating pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.thread_scaling import (
    ScalingVariant,
    ThreadScalingError,
    default_variants,
    measure_thread_scaling,
)
from cxr_core.bundle import BundleError, load_bundle
from cxr_core.runtime.settings import RuntimeSettings


def test_pairs_of_real_sessions_give_a_ratio_per_variant(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    rows = measure_thread_scaling(bundle, "onnx-int8", pairs=6, warmup=1)
    assert [row.label for row in rows] == [v.label("onnxruntime") for v in default_variants()]
    assert rows[1].settings["spinning"] is True and rows[0].settings["spinning"] is False
    for row in rows:
        assert row.pairs == 6 and row.threads == 2
        assert row.p50_ms > 0 and row.baseline_p50_ms > 0
        assert row.ratio_of_p50 == pytest.approx(row.p50_ms / row.baseline_p50_ms, rel=1e-3)
        assert row.median_pair_ratio > 0
    # the same baseline sessions' times stand under every variant
    assert rows[0].baseline_p50_ms == rows[1].baseline_p50_ms


def test_a_named_variant_and_its_settings_are_used(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    variant = ScalingVariant(2, RuntimeSettings(optimization="extended"))
    (row,) = measure_thread_scaling(bundle, "onnx-int8", [variant], pairs=2, warmup=0)
    assert row.settings["optimization"] == "extended"
    assert "opt-extended" in row.label


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variants": []}, "no variants"),
        ({"pairs": 1}, "pairs=1"),
        ({"warmup": -1}, "warmup=-1"),
    ],
)
def test_bad_plans_are_refused_with_the_value(session_bundle: Path, kwargs: dict, message: str) -> None:
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    with pytest.raises(ThreadScalingError, match=message):
        measure_thread_scaling(bundle, "onnx-int8", **kwargs)


def test_an_unknown_model_is_refused(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    with pytest.raises(BundleError, match="no-such-model"):
        measure_thread_scaling(bundle, "no-such-model", pairs=2)
