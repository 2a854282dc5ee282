"""Verify a model bundle without torch: hashes, then the golden set re-run through each runtime.

This is what ``cxr-export verify BUNDLE`` runs; it imports only cxr_core, numpy and (when
installed) onnxruntime, so it works on the device side as well as on the export machine.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core.bundle import Bundle, BundleError, load_bundle, load_golden

logger = logging.getLogger(__name__)


class GoldenMismatchError(BundleError):
    """A model's outputs on the golden inputs differ from the recorded reference beyond its tolerance."""


def _check_golden(bundle: Bundle, golden: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    from quantize.ort_run import run_model

    entry = bundle.model(name)
    outputs = run_model(bundle.path(entry), golden["inputs"].astype(np.float32))
    delta = float(np.abs(outputs["probabilities"] - golden["probabilities"]).max())
    ref = golden["feature_map"].astype(np.float64)
    norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(outputs["feature_map"] - ref) / norm) if norm > 0 else 0.0
    tolerance = entry.golden_tolerance
    result = {"model": name, "status": "ok", "max_abs_dp": delta, "feature_map_rel_error": rel}
    limit_dp = float(tolerance.get("max_abs_dp", 1e-4))
    limit_fm = float(tolerance.get("feature_map_rel_error", 1e-3))
    if delta > limit_dp or rel > limit_fm:
        raise GoldenMismatchError(
            f"{bundle.path(entry)}: golden outputs differ from the reference (max |dp| {delta:.3g}, "
            f"tolerance {limit_dp:g}; feature-map relative error {rel:.3g}, tolerance {limit_fm:g}); "
            "this runtime or device does not reproduce the exported model"
        )
    return result


def verify_bundle(root: str | Path, run_golden: bool = True) -> dict[str, Any]:
    """Check hashes and format version, then (with onnxruntime installed) the golden outputs.

    Returns a report: ``files`` checked and one ``golden`` row per model (``skipped`` with the
    reason when its runtime is not installed). Raises :class:`~cxr_core.bundle.BundleError`
    subclasses on any mismatch.
    """
    bundle = load_bundle(root, verify=True)
    report: dict[str, Any] = {
        "bundle": str(Path(root)),
        "files": sorted(bundle.manifest["files"]),
        "models": [m.name for m in bundle.models],
        "golden": [],
    }
    if not run_golden:
        return report
    golden = load_golden(bundle)
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    for entry in bundle.models:
        if entry.format not in ("onnx", "onnx-int8"):
            report["golden"].append({"model": entry.name, "status": "skipped", "reason": "no runner yet"})
        elif not have_ort:
            reason = "onnxruntime not installed (pip install 'cxr-edge[app]')"
            report["golden"].append({"model": entry.name, "status": "skipped", "reason": reason})
        else:
            report["golden"].append(_check_golden(bundle, golden, entry.name))
    return report
