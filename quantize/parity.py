"""Parity of an exported format against the PyTorch FP32 model, and the gate that refuses drift.

For each format the export runs the same preprocessed images (the recorded calibration list)
through the format and through PyTorch in FP32 and reports:

* ``max_abs_dp`` / ``mean_abs_dp``: max and mean |p_format - p_torch| over images and findings;
* ``call_agreement``: fraction of (image, finding) pairs with the same decision ``p >= t`` at the
  finding's operating point ``t`` (what the calibrated app shows as positive / negative);
* ``top1_agreement``: fraction of images whose most probable finding is the same;
* ``feature_map_rel_error``: ``||F_format - F_torch|| / ||F_torch||`` (what the CAM is built from).

Default INT8 thresholds (configurable on the CLI) and why:

* ``max_abs_dp <= 0.10``: well-behaved static INT8 CNNs move probabilities by a few hundredths;
  a tenth means some layer is clipping (e.g. a bad calibration range) and decisions near the
  operating point become unreliable. Random-weight DenseNets through badly-fitting routes reached
  0.3-0.8 (FINDINGS.md), which this refuses.
* ``mean_abs_dp <= 0.02``: the typical image must be essentially unchanged.
* ``call_agreement >= 0.95``: at most one decision in twenty may flip at the operating points.
* ``feature_map_rel_error <= 0.25``: the CAM is a qualitative overlay; a quarter of the norm still
  shows the same regions, more than that and the heat map misleads.

FP32 formats must match to numerical noise (``max_abs_dp <= 1e-4``, feature map ``<= 1e-3``):
anything larger is an export bug, not quantization. Parity measured on the calibration images
themselves is optimistic for INT8 (MinMax ranges come from them); edge-bench measures the test
split. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError


class ParityGateError(CxrEdgeError, RuntimeError):
    """A format drifted beyond the parity thresholds; the bundle is not published."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParityThresholds:
    """Limits a format must meet to be published (see the module docstring for the defaults)."""

    max_abs_dp: float = 0.10
    mean_abs_dp: float = 0.02
    min_call_agreement: float = 0.95
    max_feature_rel_error: float = 0.25

    def __post_init__(self) -> None:
        for name in ("max_abs_dp", "mean_abs_dp", "max_feature_rel_error"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0 or not np.isfinite(value):
                raise ValueError(f"ParityThresholds.{name}={value!r}; expected a finite number >= 0")
        if not 0.0 <= self.min_call_agreement <= 1.0:
            raise ValueError(
                f"ParityThresholds.min_call_agreement={self.min_call_agreement!r}; "
                "expected a fraction in [0, 1]"
            )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: What an FP32 format must meet: numerical noise only.
FP32_THRESHOLDS = ParityThresholds(
    max_abs_dp=1e-4, mean_abs_dp=1e-5, min_call_agreement=0.99, max_feature_rel_error=1e-3
)
INT8_THRESHOLDS = ParityThresholds()


def compare(
    reference: Mapping[str, NDArray[np.float32]],
    candidate: Mapping[str, NDArray[np.float32]],
    operating_points: Sequence[float],
) -> dict[str, float]:
    """Parity figures of ``candidate`` outputs against ``reference`` (both by output name)."""
    p_ref = np.asarray(reference["probabilities"], dtype=np.float64)
    p_new = np.asarray(candidate["probabilities"], dtype=np.float64)
    if p_ref.shape != p_new.shape:
        raise ValueError(f"probabilities have shape {p_new.shape}; expected {p_ref.shape} like the reference")
    points = np.asarray(operating_points, dtype=np.float64)
    if points.shape != (p_ref.shape[1],):
        raise ValueError(f"{points.size} operating points for {p_ref.shape[1]} findings; expected one each")
    delta = np.abs(p_new - p_ref)
    f_ref = np.asarray(reference["feature_map"], dtype=np.float64)
    f_new = np.asarray(candidate["feature_map"], dtype=np.float64)
    if f_ref.shape != f_new.shape:
        raise ValueError(f"feature_map has shape {f_new.shape}; expected {f_ref.shape} like the reference")
    norm = float(np.linalg.norm(f_ref))
    rel = float(np.linalg.norm(f_new - f_ref) / norm) if norm > 0 else float(np.linalg.norm(f_new))
    return {
        "images": int(p_ref.shape[0]),
        "max_abs_dp": float(delta.max()),
        "mean_abs_dp": float(delta.mean()),
        "call_agreement": float(np.mean((p_new >= points) == (p_ref >= points))),
        "top1_agreement": float(np.mean(p_new.argmax(axis=1) == p_ref.argmax(axis=1))),
        "feature_map_rel_error": rel,
    }


def failures(figures: Mapping[str, float], thresholds: ParityThresholds) -> list[str]:
    """Human-readable reasons why ``figures`` break ``thresholds`` (empty when they pass)."""
    reasons = []
    if figures["max_abs_dp"] > thresholds.max_abs_dp:
        reasons.append(f"max |dp| {figures['max_abs_dp']:.4g} > {thresholds.max_abs_dp:g}")
    if figures["mean_abs_dp"] > thresholds.mean_abs_dp:
        reasons.append(f"mean |dp| {figures['mean_abs_dp']:.4g} > {thresholds.mean_abs_dp:g}")
    if figures["call_agreement"] < thresholds.min_call_agreement:
        reasons.append(
            f"agreement at operating points {figures['call_agreement']:.4f} < "
            f"{thresholds.min_call_agreement:g}"
        )
    if figures["feature_map_rel_error"] > thresholds.max_feature_rel_error:
        reasons.append(
            f"feature-map relative error {figures['feature_map_rel_error']:.4g} > "
            f"{thresholds.max_feature_rel_error:g}"
        )
    return reasons


def check_gate(report: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ParityGateError` when any format's row in ``report`` failed its thresholds."""
    failed = {name: row["failures"] for name, row in report.items() if row.get("failures")}
    if failed:
        detail = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in failed.items())
        raise ParityGateError(
            f"parity gate refused the bundle ({detail}). Improve calibration, relax the thresholds "
            "(--max-delta-p, --max-mean-delta-p, --min-agreement, --max-feature-error) or leave the "
            "format out",
            dict(report),
        )
