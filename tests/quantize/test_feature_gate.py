"""The learned feature gate: fitted on the training split at export, a threshold per model file set on the
held-out validation images, applied by the Predictor wherever the classifier runs (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_core.bundle import BundleIntegrityError, load_bundle, load_feature_gate
from cxr_core.feature_gate import (
    FLOOR_MARGIN,
    FeatureGate,
    FeatureGateError,
    FeatureGateSignal,
    LowRankPrecision,
    TriangularPrecision,
    ledoit_wolf,
    threshold_at,
)
from cxr_core.gate_signals import GateRefusedError, LearnedGate, share_acceptance
from cxr_core.input_gate import ImageRefusedError, InputGate, default_checks
from cxr_core.predictor import OVERRIDE_WARNING, Predictor, clear_bundle_cache
from cxr_core.runtime import open_backend

#: The 64 px phantoms of this module would be refused by the size check; everything else applies.
SMALL_GATE = InputGate(default_checks(min_side=32))


def test_ledoit_wolf_matches_scikit_learn() -> None:
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    x = np.random.default_rng(0).standard_normal((40, 60)) @ np.diag(np.linspace(0.5, 3, 60))
    mean, covariance, shrinkage = ledoit_wolf(x)
    reference = sklearn_covariance.LedoitWolf().fit(x)
    assert shrinkage == pytest.approx(reference.shrinkage_, rel=1e-6)
    np.testing.assert_allclose(covariance, reference.covariance_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mean, reference.location_)


def test_fitting_is_deterministic_and_thresholds_accept_the_stated_share() -> None:
    x = np.random.default_rng(1).standard_normal((50, 8))
    a, b = FeatureGate.fit(x, "mean"), FeatureGate.fit(x.copy(), "mean")
    np.testing.assert_array_equal(a.precision, b.precision)
    rng = np.random.default_rng(3)
    validation = np.exp(rng.normal(3.0, 0.2, 31))  # 31 validation distances, as in the demo
    threshold = threshold_at(validation, 0.99)
    assert threshold > np.median(validation)
    fresh = np.exp(rng.normal(3.0, 0.2, 20000))  # new in-distribution images
    assert (fresh > threshold).mean() < 0.03  # about 1% refused, not the 1/32 an empirical max gives
    few = np.full(12, 7.0)  # the conformal floor is the largest distance: a rounding margin above it
    assert 7.0 < threshold_at(few, 0.99) <= 7.0 * (1 + FLOOR_MARGIN)
    with pytest.raises(FeatureGateError, match="acceptance=0.2"):
        threshold_at(validation, 0.2)
    with pytest.raises(FeatureGateError, match="at least 10"):
        threshold_at(validation[:5], 0.99)
    with pytest.raises(FeatureGateError, match="expected \\(N, 8\\)"):
        a.distances(np.zeros((2, 9)))


def test_the_gate_travels_in_the_bundle_hashed_with_a_threshold_per_model(gated_bundle: Path) -> None:
    bundle = load_bundle(gated_bundle)
    info = bundle.manifest.gate
    assert info is not None and info.signal == "feature_mahalanobis"
    # feature distance, autoencoder and quality checks share the bundle's 1% refusal budget
    assert info.acceptance == pytest.approx(share_acceptance(0.99, 3), abs=1e-6)
    assert set(info.thresholds) == {"onnx", "onnx-int8"} and all(t > 0 for t in info.thresholds.values())
    assert "training split" in info.fitted_on and info.train_images > 40
    assert "gate.npz" in bundle.manifest.files
    gate = load_feature_gate(bundle)
    assert gate is not None and gate.mean.shape == (gate.precision.shape[0],)
    # the INT8 file runs with a gate fitted on its own features of the same training images
    assert set(info.model_fits) == {"onnx-int8"} and info.model_fits["onnx-int8"].file == "gate-onnx-int8.npz"
    assert "gate-onnx-int8.npz" in bundle.manifest.files
    assert info.fit_for("onnx") == ("gate.npz", info.shrinkage)
    own = load_feature_gate(bundle, "onnx-int8")
    assert own is not None and not np.array_equal(own.mean, gate.mean)
    assert own.shrinkage == pytest.approx(info.model_fits["onnx-int8"].shrinkage, abs=1e-6)
    assert np.array_equal(load_feature_gate(bundle, "onnx").mean, gate.mean)  # FP32: the shared gate
    # new bundles compare unit-length features, and say so in the manifest
    assert info.normalization == "l2" and gate.normalization == "l2"
    assert json.loads((gated_bundle / "manifest.json").read_text())["gate"]["normalization"] == "l2"
    assert np.linalg.norm(gate.mean) == pytest.approx(1.0, abs=0.05)  # the mean of unit vectors
    # the signal knows what the gate was fitted on, which bounds its low-rank form
    signal = FeatureGateSignal.from_bundle(bundle, "onnx-int8")
    assert signal is not None and signal.train_images == info.train_images
    assert signal.wait_until_prepared(timeout=60)


def test_unit_length_features_ignore_the_overall_activation_strength() -> None:
    """With ``l2`` an image whose features are all twice as strong is as far from the training images
    as the image itself; as pooled (``none``, older bundles) it is farther."""
    rng = np.random.default_rng(5)
    train = np.abs(rng.normal(1.0, 0.3, size=(80, 16)))
    image = np.abs(rng.normal(1.0, 0.3, size=(1, 16))).astype(np.float32)
    scaled = FeatureGate.fit(train, "max")
    assert scaled.normalization == "l2"
    assert scaled.distances(2.0 * image)[0] == pytest.approx(scaled.distances(image)[0], rel=1e-5)
    plain = FeatureGate.fit(train, "max", normalization="none")
    assert plain.distances(2.0 * image)[0] > 2.0 * plain.distances(image)[0]
    assert np.isfinite(scaled.distances(np.zeros((1, 16), dtype=np.float32))).all()  # no division by 0
    with pytest.raises(FeatureGateError, match="normalization 'l1'"):
        FeatureGate.fit(train, "max", normalization="l1")


def test_an_older_manifest_reads_as_pooled_features_with_one_gate(gated_bundle: Path) -> None:
    from cxr_core.bundle.schema import GateInfo

    recorded = json.loads((gated_bundle / "manifest.json").read_text())["gate"]
    older = {k: v for k, v in recorded.items() if k not in ("normalization", "model_fits")}
    assert GateInfo.from_dict(older, "gate").normalization == "none"
    assert GateInfo.from_dict(older, "gate").model_fits == {}  # every file runs with the shared gate
    assert GateInfo.from_dict(recorded, "gate").to_dict() == recorded


def test_a_tampered_gate_file_is_refused(gated_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(gated_bundle, tmp_path / "b"))
    with np.load(copy / "gate.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mean"] = arrays["mean"] + 1.0
    np.savez(copy / "gate.npz", **arrays)
    with pytest.raises(BundleIntegrityError, match="gate.npz"):
        load_bundle(copy)
    shutil.copy(gated_bundle / "gate.npz", copy / "gate.npz")
    with np.load(copy / "gate-onnx-int8.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["precision"] = arrays["precision"] * 0.5  # the INT8 file's own gate, tampered
    np.savez(copy / "gate-onnx-int8.npz", **arrays)
    with pytest.raises(BundleIntegrityError, match="gate-onnx-int8.npz"):
        load_bundle(copy)


def _feature_rows(decisions: Any) -> list[Any]:
    """The feature-space signal's rows (the bundle carries other signals too, e.g. the quality checks)."""
    return [d for d in decisions if d.signal == "feature_mahalanobis"]


def _test_phantoms(bundle: Path) -> list[Path]:
    root = Path(load_bundle(bundle).manifest.calibration["root"])
    names = set((root / "test_list.txt").read_text().split())
    return sorted(p for p in root.rglob("*.png") if p.name in names)


def _natural_photo(path: Path) -> Path:
    from sklearn.datasets import load_sample_image

    grey = np.asarray(Image.fromarray(load_sample_image("china.jpg")).convert("L").resize((96, 96)))
    Image.fromarray(grey).save(path)
    return path


@pytest.mark.parametrize("model", ["onnx", "onnx-int8"])
def test_in_distribution_images_pass_and_unlike_ones_are_refused(
    gated_bundle: Path, tmp_path: Path, model: str
) -> None:
    """On the test split (never seen by the gate) most phantoms pass; noise, a photo and a flat image do not.

    The tiny set (about 20 validation images set the 99% threshold) makes the test split's false
    refusal rate noisy; the figures on the demo-sized set are in docs/input-gate.md.
    """
    clear_bundle_cache()
    bundle = load_bundle(gated_bundle)
    accepted = refused = 0
    with Predictor(bundle, open_backend(bundle, model=model, threads=1), gate=SMALL_GATE) as predictor:
        for path in _test_phantoms(gated_bundle):
            try:
                prediction = predictor.predict_file(path)
            except ImageRefusedError:
                refused += 1
            else:
                accepted += 1
                (decision,) = _feature_rows(prediction.gate_signals)
                assert decision.signal == "feature_mahalanobis" and decision.accepted
                assert decision.score <= decision.threshold and prediction.gate_override == ()
        assert accepted >= 3 * refused and accepted > 0, (accepted, refused)
        rng = np.random.default_rng(2)
        Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(tmp_path / "noise.png")
        Image.fromarray(np.full((96, 96), 128, np.uint8)).save(tmp_path / "flat.png")
        for ood in (tmp_path / "noise.png", tmp_path / "flat.png", _natural_photo(tmp_path / "photo.png")):
            with pytest.raises(
                ImageRefusedError, match="unlike the images this model was trained on"
            ) as info:
                predictor.predict_file(ood)
            assert any("synthetic phantoms" in r for r in info.value.reasons if "unlike the images" in r)
            assert isinstance(info.value, GateRefusedError)
            assert [d.accepted for d in _feature_rows(info.value.decisions)] == [False]
            # "score anyway": scored, and the result carries what was overridden
            overridden = predictor.predict_file(ood, override_gate=True)
            assert overridden.gate_override == info.value.reasons
            assert any(w.startswith(OVERRIDE_WARNING) for w in overridden.warnings)
            assert not _feature_rows(overridden.gate_signals)[0].accepted


def test_a_bundle_without_the_gate_still_loads_and_says_so(session_bundle: Path, tmp_path: Path) -> None:
    from tests.cxr_core.test_input_gate import chest
    from tests.file_factory import write_png

    assert json.loads((session_bundle / "manifest.json").read_text())["gate"] is None
    with Predictor.load(session_bundle, model="onnx") as predictor:
        prediction = predictor.predict_file(write_png(tmp_path / "a.png", chest()))
    assert prediction.gate_signals == ()
    assert any("no learned out-of-distribution gate" in w for w in prediction.warnings)


def test_cxr_predict_records_every_signal_and_score_anyway(gated_bundle: Path, tmp_path: Path) -> None:
    """A refusal's JSON failure record carries each signal's verdict; --score-anyway scores it, marked."""
    from cxr_core.predict_cli import main

    clear_bundle_cache()
    rng = np.random.default_rng(3)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)).save(noise)  # passes the size rule
    args = [str(noise), "--bundle", str(gated_bundle), "--model", "onnx"]
    assert main([*args, "--json", str(tmp_path / "refused.json")]) == 1
    (failure,) = json.loads((tmp_path / "refused.json").read_text())["failures"]
    assert failure["error"] == "GateRefusedError"
    (signal,) = [s for s in failure["gate_signals"] if s["signal"] == "feature_mahalanobis"]
    assert signal["signal"] == "feature_mahalanobis" and signal["accepted"] is False
    assert signal["score"] > signal["threshold"] and any(signal["reason"] in r for r in failure["reasons"])

    assert main([*args, "--score-anyway", "--json", str(tmp_path / "anyway.json")]) == 0
    (result,) = json.loads((tmp_path / "anyway.json").read_text())["results"]
    assert result["gate_override"] == failure["reasons"]
    assert [s["accepted"] for s in result["gate_signals"] if s["signal"] == "feature_mahalanobis"] == [False]
    assert any("at the user's request" in w for w in result["warnings"])


def test_a_few_rows_give_the_same_distances_without_blas() -> None:
    """The device's batch of one takes numpy's own loop (no BLAS thread pool); the export's batches
    take BLAS: both must give the same distances, or a threshold set at export would not hold."""
    from cxr_core.feature_gate import SINGLE_THREAD_ROWS

    rng = np.random.default_rng(4)
    gate = FeatureGate.fit(rng.normal(size=(64, 32)), "mean")
    rows = rng.normal(size=(SINGLE_THREAD_ROWS + 4, 32)).astype(np.float32)
    batched = gate.distances(rows)  # BLAS
    single = np.concatenate([gate.distances(row[None]) for row in rows])  # numpy's loop
    np.testing.assert_allclose(single, batched, rtol=1e-5)


def test_fewer_training_images_than_channels_give_the_same_distances_through_the_low_rank_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """40 images of 256 channels: the shrunk covariance's inverse is one repeated eigenvalue except along
    the 39 directions the centred images span, and a single image's distance is read through those."""
    rng = np.random.default_rng(6)
    train = rng.normal(size=(40, 256)) * np.linspace(0.2, 2.0, 256)
    gate = FeatureGate.fit(train, "mean")
    assert gate.low_rank is None  # derived on demand (the Predictor does it on a thread of its own)
    gate.derive_low_rank()
    assert gate.low_rank is not None and gate.low_rank.rank == 39
    assert gate.triangle is None  # built first, dropped once the smaller low-rank form is there
    rows = np.concatenate([rng.normal(size=(6, 256)), train[:3] * 0.9, np.zeros((1, 256))]).astype(np.float32)
    batched = gate.distances(rows)  # the full precision matrix through BLAS, as at export
    single = np.concatenate([gate.distances(row[None]) for row in rows])  # the low-rank form
    np.testing.assert_allclose(single, batched, rtol=2e-5)
    loaded = FeatureGate.from_arrays(gate.arrays(), "mean", gate.shrinkage, gate.normalization)
    signal = FeatureGateSignal(loaded, threshold=10.0, acceptance=0.99)  # as a bundle loads
    assert LearnedGate(output_signals=[signal]).wait_until_prepared(timeout=60)  # what benchmarks wait for
    assert loaded.low_rank is not None and loaded.low_rank.rank == 39
    # numpy 1 has no np.vecdot: the projection then takes einsum's loop, to float32 rounding
    monkeypatch.delattr(np, "vecdot", raising=False)
    without = np.concatenate([loaded.distances(row[None]) for row in rows])
    np.testing.assert_allclose(without, single, rtol=2e-5)
    monkeypatch.undo()
    full_rank = FeatureGate.fit(rng.normal(size=(300, 16)) * np.linspace(0.2, 2.0, 16), "mean")
    assert full_rank.derive_low_rank() is None  # more images than channels: no low-rank form
    assert full_rank.low_rank is None and full_rank.triangle is not None


def test_a_gate_fitted_on_as_many_images_as_channels_skips_the_eigendecomposition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 images of 16 channels: a low-rank form could have up to 299 rows, never fewer values than
    the 16 x 16 triangle, so no eigendecomposition is started; 5 images (4 rows) would be worth one."""
    rng = np.random.default_rng(11)
    gate = FeatureGate.fit(rng.normal(size=(300, 16)), "mean")

    def no_eigendecomposition(precision: np.ndarray) -> None:
        raise AssertionError("eigendecomposition started")

    monkeypatch.setattr(LowRankPrecision, "of", staticmethod(no_eigendecomposition))
    assert gate.derive_low_rank(train_images=300) is None
    assert gate.triangle is not None and gate.low_rank is None
    with pytest.raises(AssertionError, match="eigendecomposition started"):
        gate.derive_low_rank(train_images=5)
    with pytest.raises(AssertionError, match="eigendecomposition started"):
        gate.derive_low_rank()  # unknown: try it


@pytest.mark.parametrize(("size", "block_rows"), [(16, 256), (300, 64), (300, 7), (1024, 256)])
def test_the_packed_upper_triangle_gives_the_quadratic_form_of_the_whole_matrix(
    size: int, block_rows: int
) -> None:
    rng = np.random.default_rng(size + block_rows)
    root = rng.normal(size=(size, size))
    precision = (root @ root.T / size).astype(np.float32)
    precision[0, -1] += 1e-3  # a stored matrix need not be exactly symmetric: its symmetric part counts
    form = TriangularPrecision.of(precision, block_rows)
    assert sum(block.shape[0] for block in form.blocks) == size
    # each block row holds its rows times the columns from its start on: a little over half the matrix
    starts = range(0, size, block_rows)
    assert form.values == sum((min(start + block_rows, size) - start) * (size - start) for start in starts)
    assert form.values <= size * size
    wide = precision.astype(np.float64)
    for row in rng.normal(size=(5, size)).astype(np.float32):
        expected = float(row.astype(np.float64) @ wide @ row.astype(np.float64))
        assert form.quadratic(row) == pytest.approx(expected, rel=1e-6)


def test_the_packed_triangle_is_refused_for_a_matrix_that_is_not_square() -> None:
    with pytest.raises(FeatureGateError, match=r"\(3, 4\)"):
        TriangularPrecision.of(np.zeros((3, 4), np.float32))


def test_more_images_than_channels_read_the_packed_triangle_for_single_images() -> None:
    """A real-data gate (1,000 images of 1,024 channels) has no low-rank form; 700 images leave one,
    but it would read more values (699 x 1,024) than the triangle (655,360): the triangle is kept."""
    rng = np.random.default_rng(9)
    scale = np.linspace(0.2, 2.0, 1024)
    for images in (1100, 700):
        gate = FeatureGate.fit(np.abs(rng.normal(size=(images, 1024))) * scale, "mean", "l2")
        rows = (np.abs(rng.normal(size=(12, 1024))) * scale).astype(np.float32)
        rows[:4] *= np.linspace(0.5, 3.0, 1024).astype(np.float32)  # some unlike the training images
        batched = gate.distances(rows)  # more than SINGLE_THREAD_ROWS: the BLAS product, as at export
        assert gate.derive_low_rank() is None
        assert gate.low_rank is None and gate.triangle is not None
        single = np.concatenate([gate.distances(row[None]) for row in rows])
        np.testing.assert_allclose(single, batched, rtol=2e-6)


_EXIT_RIGHT_AFTER_OPENING = """
import atexit, numpy as np
from cxr_core.feature_gate import FeatureGate, FeatureGateSignal
rng = np.random.default_rng(0)
gate = FeatureGate.fit(rng.normal(size=(300, 1024)), "mean")  # rank 299 of 1,024: a low-rank form
loaded = FeatureGate.from_arrays(gate.arrays(), "mean", gate.shrinkage, gate.normalization)
atexit.register(lambda: print("derived" if loaded.low_rank is not None else "not derived", flush=True))
FeatureGateSignal(loaded, threshold=10.0, acceptance=0.99)  # starts the eigendecomposition, then exits
"""


def test_a_process_that_ends_right_after_opening_waits_for_the_eigendecomposition() -> None:
    """A process that ended while the low-rank form was being derived had OpenBLAS shut its threads
    down under LAPACK's call: `cxr-predict` then hung at exit in 6 of 30 runs. The interpreter now
    waits for the derivation before its exit handlers (a 1,024-channel eigendecomposition takes a
    few tenths of a second, far longer than this script's exit)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _EXIT_RIGHT_AFTER_OPENING], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "derived", done.stdout + done.stderr


def test_thresholds_bound_the_acceptance_quantile_with_the_stated_confidence() -> None:
    from statistics import NormalDist

    from cxr_core.feature_gate import TOLERANCE_CONFIDENCE, tolerance_factor

    # the exact one-sided factors (non-central t) at 99.67% and 95%: 3.530 (31 samples), 3.251 (61)
    assert tolerance_factor(31, 1 - 0.01 / 3) == pytest.approx(3.530, rel=0.01)
    assert tolerance_factor(61, 1 - 0.01 / 3) == pytest.approx(3.251, rel=0.01)
    rng = np.random.default_rng(11)
    quantile = float(np.exp(3.0 + 0.2 * NormalDist().inv_cdf(0.99)))
    below = [threshold_at(np.exp(rng.normal(3.0, 0.2, 31)), 0.99) < quantile for _ in range(600)]
    # a threshold below the true 99% point refuses more than 1%: that happens in at most ~5% of draws
    assert np.mean(below) <= (1 - TOLERANCE_CONFIDENCE) + 0.03
