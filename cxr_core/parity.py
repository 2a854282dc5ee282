"""Parity: how close a model file's outputs are to the FP32 reference, and the limits they must meet.

The one home of parity in cxr-edge (numpy only). The export gate (``cxr-export``), ``cxr-export
verify``, the app's self-test (:mod:`cxr_core.selftest`) and ``edge-bench`` all compute their
figures with these functions and judge them with these limits, so they cannot disagree.

**Export parity** (:func:`compare`, :func:`failures`, :func:`check_gate`): a format against PyTorch FP32
on many images.

For each format the export runs the same preprocessed images through the format and through
PyTorch in FP32. By default these are the *evaluation* images: the labelled validation split
minus the calibration images (INT8 ranges were fitted on those, so parity there is optimistic).
It reports:

* ``max_abs_dp`` / ``mean_abs_dp``: max and mean |p_format - p_torch| over images and findings;
* ``call_agreement``: fraction of (image, finding) pairs with the same decision ``p >= t`` at the
  finding's operating point ``t`` (what the calibrated app shows as positive / negative);
* ``top1_agreement``: fraction of images whose most probable finding is the same;
* ``feature_map_rel_error``: ``||F_format - F_torch|| / ||F_torch||`` (what the CAM is built from);
* ``cam_correlation`` (mean) and ``cam_correlation_min``: Pearson correlation of the format's and
  PyTorch's class activation map of each image's most probable finding (classifier weights given);
* with labels: ``mean_auc`` (format) and ``reference_mean_auc`` (PyTorch), ``auc_drop`` (reference
  minus format, positive = worse), ``max_class_auc_drop`` and ``per_class_auc``.

The gate (thresholds configurable on the CLI; ``None`` = reported, not gated). INT8 defaults:

* ``auc_drop <= 0.01`` and ``max_class_auc_drop <= 0.02``: quantization may not cost more than a
  hundredth of mean AUC, or two hundredths on any one finding (the issue's budget).
* ``call_agreement >= 0.97``: at most three decisions in a hundred may flip at the operating points.
* ``mean_abs_dp <= 0.02``: the typical image must be essentially unchanged.
* ``feature_map_rel_error <= 0.25``: the CAM is a qualitative overlay; a quarter of the norm still
  shows the same regions, more than that and the heat map misleads.
* ``max_abs_dp`` is reported, not gated: a single image near a saturated logit can move by 0.2
  while every decision and the AUC stay put (measured on the trained DGC, docs/export.md).

FP32 formats must match to numerical noise (``max_abs_dp <= 1e-4``, feature map ``<= 1e-3``,
CAM correlation ``>= 0.99``): anything larger is an export bug, not quantization.

**Golden parity** (:func:`golden_check`): a device's run of the bundle's golden inputs against the
FP32 outputs recorded at export, within the model entry's ``golden_tolerance``
(:func:`golden_tolerance_for`; entries without one get the default of their precision). A
non-finite output never passes. Decisions tied at an operating point (``|p_ref - t| <= TIE``) are
not counted as flips, here and in export parity alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.schema import GoldenTolerance, ModelEntry
from cxr_core.errors import CxrEdgeError
from cxr_core.formats import Precision
from cxr_core.metrics import mean_auc, per_class_auc


class ParityInputError(CxrEdgeError, ValueError):
    """Outputs and reference (or operating points) of different shapes: they cannot be compared."""


class ParityThresholdError(CxrEdgeError, ValueError):
    """A parity limit that is not a finite number in its range."""


class ParityGateError(CxrEdgeError, RuntimeError):
    """A format drifted beyond the parity thresholds; the bundle is not published."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParityThresholds:
    """Limits a format must meet to be published; ``None`` reports a figure without gating it."""

    max_abs_dp: float | None = None
    mean_abs_dp: float | None = 0.02
    min_call_agreement: float | None = 0.97
    max_feature_rel_error: float | None = 0.25
    max_auc_drop: float | None = 0.01
    max_class_auc_drop: float | None = 0.02
    min_cam_correlation: float | None = None

    def __post_init__(self) -> None:
        limits = ("max_abs_dp", "mean_abs_dp", "max_feature_rel_error", "max_auc_drop", "max_class_auc_drop")
        for name in limits:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ParityThresholdError(
                    f"ParityThresholds.{name}={value!r}; expected a finite number >= 0 or None"
                )
        for name, low in (("min_call_agreement", 0.0), ("min_cam_correlation", -1.0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and low <= value <= 1.0):
                expected = f"expected a value in [{low:g}, 1] or None"
                raise ParityThresholdError(f"ParityThresholds.{name}={value!r}; {expected}")

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


#: |p_ref - operating point| below which a decision counts as a tie, not a flip.
TIE = 1e-6

#: Positive and negative images a finding needs before its own AUC drop is gated.
MIN_CLASS_CASES = 10

#: What an FP32 format must meet: numerical noise only.
FP32_THRESHOLDS = ParityThresholds(
    max_abs_dp=1e-4,
    mean_abs_dp=1e-5,
    min_call_agreement=0.99,
    max_feature_rel_error=1e-3,
    max_auc_drop=1e-3,
    max_class_auc_drop=2e-3,
    min_cam_correlation=0.99,
)
INT8_THRESHOLDS = ParityThresholds()
#: FP16 sits between: half-precision weights move probabilities by up to a few hundredths
#: (0.03 on CheXNet, docs/toolchain-notes.md).
FP16_THRESHOLDS = ParityThresholds(
    max_abs_dp=0.05, mean_abs_dp=5e-3, min_call_agreement=0.99, max_feature_rel_error=0.05
)
#: The export thresholds of each precision (cxr_core.formats gives every format its precision).
THRESHOLDS_BY_PRECISION: dict[str, ParityThresholds] = {
    "fp32": FP32_THRESHOLDS,
    "fp16": FP16_THRESHOLDS,
    "int8": INT8_THRESHOLDS,
}
#: Golden tolerance of an entry that records none (bundles exported before tolerances were
#: recorded): FP32 numerical noise; for reduced precision, the floor the export itself uses
#: (:func:`golden_tolerance_from_drift`) for FP16 and the export's INT8 gate limits for INT8.
DEFAULT_GOLDEN_TOLERANCE: dict[str, GoldenTolerance] = {
    "fp32": GoldenTolerance(max_abs_dp=1e-4, feature_map_rel_error=1e-3),
    "fp16": GoldenTolerance(max_abs_dp=0.05, feature_map_rel_error=0.10),
    "int8": GoldenTolerance(max_abs_dp=0.10, feature_map_rel_error=0.25),
}
#: A device may drift this many times what the export measured on the golden images (other CPUs
#: round integer kernels differently), never less than the floors below.
DRIFT_FACTOR = 3.0
DRIFT_FLOOR = GoldenTolerance(max_abs_dp=0.05, feature_map_rel_error=0.10)


def cam_correlations(
    reference: NDArray[np.floating],
    candidate: NDArray[np.floating],
    weight: NDArray[np.floating],
    classes: NDArray[np.integer],
) -> NDArray[np.float64]:
    """Pearson correlation of the CAMs ``sum_k W[c,k] F[k]`` of class ``classes[i]`` for each image ``i``.

    Images whose reference CAM is constant (nothing to correlate) are left out.
    """
    rows = np.asarray(weight, dtype=np.float64)[classes]  # (N, C)
    cam_ref = np.einsum("nc,nchw->nhw", rows, np.asarray(reference, dtype=np.float64))
    cam_new = np.einsum("nc,nchw->nhw", rows, np.asarray(candidate, dtype=np.float64))
    a = cam_ref.reshape(len(classes), -1)
    b = cam_new.reshape(len(classes), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    keep = np.linalg.norm(a, axis=1) > 1e-12
    # A constant candidate map against a varying reference correlates 0, not NaN.
    safe = np.where(denom > 0, denom, 1.0)
    corr = np.where(denom > 0, (a * b).sum(axis=1) / safe, 0.0)
    return corr[keep]


def call_agreement(
    probs: NDArray[np.floating], reference: NDArray[np.floating], operating_points: Sequence[float] | None
) -> float:
    """Share of (image, finding) pairs whose call ``p >= t`` matches the reference's.

    ``t`` is each finding's operating point (0.5 for every finding when there are none). A reference
    probability within :data:`TIE` of its operating point (the points are Youden cuts on validation
    scores, so validation images sit on them) flips with any rounding: it is not counted as a flip.
    A non-finite probability never agrees.
    """
    probs = np.asarray(probs, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if probs.shape != reference.shape:
        raise ParityInputError(
            f"probabilities {probs.shape} vs reference {reference.shape}; expected one shape"
        )
    points = (
        np.full(probs.shape[1], 0.5) if operating_points is None else np.asarray(operating_points, np.float64)
    )
    same = (probs >= points) == (reference >= points)
    tie = np.abs(reference - points) <= TIE
    return float(np.mean((same | tie) & np.isfinite(probs)))


def feature_map_rel_error(feature_map: NDArray[np.floating], reference: NDArray[np.floating]) -> float:
    """``||F - F_ref|| / ||F_ref||`` (Frobenius, over the whole set); ``||F||`` when the reference is 0."""
    f = np.asarray(feature_map, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if f.shape != ref.shape:
        raise ParityInputError(f"feature map {f.shape} vs reference {ref.shape}; expected one shape")
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(f - ref) / norm) if norm > 0 else float(np.linalg.norm(f))


def compare(
    reference: Mapping[str, NDArray[np.float32]],
    candidate: Mapping[str, NDArray[np.float32]],
    operating_points: Sequence[float],
    truth: NDArray[np.floating] | None = None,
    mask: NDArray[np.floating] | None = None,
    cam_weight: NDArray[np.floating] | None = None,
) -> dict[str, Any]:
    """Parity figures of ``candidate`` outputs against ``reference`` (both by output name).

    ``truth``/``mask`` (N, L) add the AUC figures; ``cam_weight`` (L, C) adds the CAM correlation.
    """
    p_ref = np.asarray(reference["probabilities"], dtype=np.float64)
    p_new = np.asarray(candidate["probabilities"], dtype=np.float64)
    if p_ref.shape != p_new.shape:
        raise ParityInputError(
            f"probabilities have shape {p_new.shape}; expected {p_ref.shape} like the reference"
        )
    points = np.asarray(operating_points, dtype=np.float64)
    if points.shape != (p_ref.shape[1],):
        raise ParityInputError(
            f"{points.size} operating points for {p_ref.shape[1]} findings; expected one each"
        )
    delta = np.abs(p_new - p_ref)
    f_ref = np.asarray(reference["feature_map"], dtype=np.float64)
    f_new = np.asarray(candidate["feature_map"], dtype=np.float64)
    if f_ref.shape != f_new.shape:
        raise ParityInputError(
            f"feature_map has shape {f_new.shape}; expected {f_ref.shape} like the reference"
        )
    rel = feature_map_rel_error(f_new, f_ref)
    figures: dict[str, Any] = {
        "images": int(p_ref.shape[0]),
        "max_abs_dp": float(delta.max()),
        "mean_abs_dp": float(delta.mean()),
        # A reference probability exactly at its operating point (the points are Youden cuts on
        # validation scores, so validation images sit on them) flips with any rounding: not a flip.
        "call_agreement": call_agreement(p_new, p_ref, points),
        "top1_agreement": float(np.mean(p_new.argmax(axis=1) == p_ref.argmax(axis=1))),
        "feature_map_rel_error": rel,
    }
    if cam_weight is not None:
        corr = cam_correlations(f_ref, f_new, cam_weight, p_ref.argmax(axis=1))
        if corr.size:
            figures.update(cam_correlation=float(corr.mean()), cam_correlation_min=float(corr.min()))
    if truth is not None:
        figures.update(auc_figures(truth, mask, p_ref, p_new))
    return figures


def auc_figures(
    truth: NDArray[np.floating],
    mask: NDArray[np.floating] | None,
    p_ref: NDArray[np.floating],
    p_new: NDArray[np.floating],
) -> dict[str, Any]:
    """Mean and per-class AUC of the candidate, the reference's, and the drops (reference - candidate).

    ``max_class_auc_drop`` only counts findings with at least :data:`MIN_CLASS_CASES` positive and
    negative images: an AUC from three positives moves by a tenth when one image swaps rank, which
    would measure noise, not quantization. Those findings are listed in ``classes_gated``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    keep = np.ones_like(truth, dtype=bool) if mask is None else np.asarray(mask) > 0
    positives = ((truth > 0.5) & keep).sum(axis=0)
    negatives = ((truth <= 0.5) & keep).sum(axis=0)
    ref_auc = per_class_auc(truth, p_ref, mask)
    new_auc = per_class_auc(truth, p_new, mask)
    drops = ref_auc - new_auc
    gated = ~np.isnan(drops) & (positives >= MIN_CLASS_CASES) & (negatives >= MIN_CLASS_CASES)
    return {
        "labelled_images": int(truth.shape[0]),
        "mean_auc": mean_auc(new_auc),
        "reference_mean_auc": mean_auc(ref_auc),
        "auc_drop": mean_auc(ref_auc) - mean_auc(new_auc),
        "max_class_auc_drop": float(drops[gated].max()) if gated.any() else math.nan,
        "classes_gated": [int(i) for i in np.flatnonzero(gated)],
        "per_class_auc": [None if math.isnan(a) else float(a) for a in new_auc],
        "reference_per_class_auc": [None if math.isnan(a) else float(a) for a in ref_auc],
    }


#: (figure, threshold field, comparison, label) checked by :func:`failures`.
_CHECKS: tuple[tuple[str, str, str, str], ...] = (
    ("max_abs_dp", "max_abs_dp", ">", "max |dp|"),
    ("mean_abs_dp", "mean_abs_dp", ">", "mean |dp|"),
    ("call_agreement", "min_call_agreement", "<", "agreement at operating points"),
    ("feature_map_rel_error", "max_feature_rel_error", ">", "feature-map relative error"),
    ("auc_drop", "max_auc_drop", ">", "mean AUC drop"),
    ("max_class_auc_drop", "max_class_auc_drop", ">", "largest per-class AUC drop"),
    ("cam_correlation", "min_cam_correlation", "<", "CAM correlation"),
)


def failures(figures: Mapping[str, Any], thresholds: ParityThresholds) -> list[str]:
    """Human-readable reasons why ``figures`` break ``thresholds`` (empty when they pass).

    A gated figure that was not measured (no labels, no classifier weights) is not a failure;
    the report says which figures exist.
    """
    reasons = []
    for key, field_name, op, label in _CHECKS:
        limit = getattr(thresholds, field_name)
        value = figures.get(key)
        if limit is None or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if (op == ">" and value > limit) or (op == "<" and value < limit):
            reasons.append(f"{label} {value:.4g} {op} {limit:g}")
    return reasons


def check_gate(report: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ParityGateError` when any format's row in ``report`` failed its thresholds."""
    failed = {name: row["failures"] for name, row in report.items() if row.get("failures")}
    if failed:
        detail = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in failed.items())
        raise ParityGateError(
            f"parity gate refused the bundle ({detail}). Improve calibration, relax the thresholds "
            "(--max-auc-drop, --max-class-auc-drop, --min-agreement, --max-mean-delta-p, --max-delta-p, "
            "--max-feature-error) or leave the "
            "format out",
            dict(report),
        )


# ----------------------------------------------------------------------------- golden parity


def golden_tolerance_for(entry: ModelEntry) -> GoldenTolerance:
    """The entry's recorded golden tolerance, else the default of its precision."""
    return entry.golden_tolerance or DEFAULT_GOLDEN_TOLERANCE[entry.precision]


def golden_tolerance_from_drift(
    precision: Precision, thresholds: ParityThresholds, measured: Mapping[str, float]
) -> GoldenTolerance:
    """The tolerance the export records for a file, from the drift it measured on the golden images.

    FP32 files: the FP32 gate (numerical noise). Reduced-precision files: :data:`DRIFT_FACTOR` times
    the measured max |dp| and feature-map error, at least :data:`DRIFT_FLOOR`.
    """
    if precision == "fp32":
        default = DEFAULT_GOLDEN_TOLERANCE["fp32"]
        return GoldenTolerance(
            max_abs_dp=float(thresholds.max_abs_dp or default.max_abs_dp),
            feature_map_rel_error=float(thresholds.max_feature_rel_error or default.feature_map_rel_error),
        )
    return GoldenTolerance(
        max_abs_dp=round(max(DRIFT_FLOOR.max_abs_dp, DRIFT_FACTOR * float(measured["max_abs_dp"])), 4),
        feature_map_rel_error=round(
            max(DRIFT_FLOOR.feature_map_rel_error, DRIFT_FACTOR * float(measured["feature_map_rel_error"])), 4
        ),
    )


def golden_check(
    outputs: Mapping[str, NDArray[np.floating]],
    golden: Mapping[str, NDArray[np.floating]],
    tolerance: GoldenTolerance,
    operating_points: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Compare a model's outputs on the golden inputs with the recorded FP32 outputs.

    Returns ``images``, ``max_abs_dp``, ``mean_abs_dp``, ``feature_map_rel_error``,
    ``call_agreement`` (ties at an operating point are not flips), ``finite`` (every output and
    every reference value finite),
    the ``tolerance`` used and ``passed``: every output finite and both figures within tolerance.
    """
    probs = np.asarray(outputs["probabilities"], dtype=np.float64)
    ref = np.asarray(golden["probabilities"], dtype=np.float64)
    if probs.shape != ref.shape:
        raise ParityInputError(f"golden probabilities {ref.shape} but the model returned {probs.shape}")
    fmap = np.asarray(outputs["feature_map"], dtype=np.float64)
    reference_map = np.asarray(golden["feature_map"], dtype=np.float64)
    finite = all(bool(np.isfinite(a).all()) for a in (probs, fmap, ref, reference_map))
    dp = np.abs(probs - ref)
    fm_error = feature_map_rel_error(fmap, reference_map)
    max_dp = float(np.nanmax(dp)) if finite else math.inf
    fm_error = fm_error if finite else math.inf
    passed = finite and max_dp <= tolerance.max_abs_dp and fm_error <= tolerance.feature_map_rel_error
    return {
        "images": int(ref.shape[0]),
        "max_abs_dp": max_dp,
        "mean_abs_dp": float(dp.mean()) if finite else math.inf,
        "feature_map_rel_error": fm_error,
        "call_agreement": call_agreement(probs, ref, operating_points),
        "finite": finite,
        "tolerance": tolerance.to_dict(),
        "passed": bool(passed),
    }


def describe_golden(check: Mapping[str, Any]) -> str:
    """One line saying whether a golden check passed and by how much, for screens and logs."""
    tolerance = check["tolerance"]
    if check["passed"]:
        return (
            f"{check['images']} golden images within tolerance (max |dp| {check['max_abs_dp']:.3g} <= "
            f"{tolerance['max_abs_dp']:g})"
        )
    if not check.get("finite", True):
        return "non-finite values (NaN or infinity) in the model's outputs or the golden reference"
    return (
        f"outputs differ from the reference: max |dp| {check['max_abs_dp']:.3g} "
        f"(tolerance {tolerance['max_abs_dp']:g}), feature-map error {check['feature_map_rel_error']:.3g} "
        f"(tolerance {tolerance['feature_map_rel_error']:g})"
    )
