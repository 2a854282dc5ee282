"""Verify a model bundle without torch: hashes, then the golden set re-run through each runtime.

This is what ``cxr-export verify BUNDLE`` runs; it imports only cxr_core, numpy and the runtimes
that are installed, and runs every model file through the device's own backend
(:func:`cxr_core.runtime.open_model`), so it checks exactly what a device runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core.bundle import Bundle, BundleError, load_bundle, load_golden
from cxr_core.runtime import ModelSignatureError, RuntimeUnavailableError, open_model
from cxr_core.runtime.select import entry_family

logger = logging.getLogger(__name__)


class GoldenMismatchError(BundleError):
    """A model's outputs on the golden inputs differ from the recorded reference beyond its tolerance."""


def _check_golden(
    bundle: Bundle, golden: dict[str, np.ndarray], name: str, threads: int | None = None
) -> dict[str, Any]:
    entry = bundle.model(name)
    raw = next((m for m in bundle.manifest["models"] if m.get("name") == name), None)
    try:
        entry_family(raw if raw is not None else entry, bundle.path(entry))
    except ModelSignatureError as exc:
        return {"model": name, "status": "skipped", "reason": f"no runtime for this format ({exc})"}
    try:
        backend = open_model(bundle.path(entry), raw if raw is not None else entry, threads=threads)
    except RuntimeUnavailableError as exc:
        return {"model": name, "status": "skipped", "reason": str(exc)}
    with backend:
        outputs = backend(golden["inputs"].astype(np.float32))
    delta = float(np.abs(outputs["probabilities"] - golden["probabilities"]).max())
    ref = golden["feature_map"].astype(np.float64)
    norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(outputs["feature_map"] - ref) / norm) if norm > 0 else 0.0
    tolerance = entry.golden_tolerance
    result = {
        "model": name,
        "status": "ok",
        "runtime": backend.runtime,
        "max_abs_dp": delta,
        "feature_map_rel_error": rel,
    }
    limit_dp = float(tolerance.get("max_abs_dp", 1e-4))
    limit_fm = float(tolerance.get("feature_map_rel_error", 1e-3))
    if delta > limit_dp or rel > limit_fm:
        raise GoldenMismatchError(
            f"{bundle.path(entry)}: golden outputs differ from the reference (max |dp| {delta:.3g}, "
            f"tolerance {limit_dp:g}; feature-map relative error {rel:.3g}, tolerance {limit_fm:g}); "
            "this runtime or device does not reproduce the exported model"
        )
    return result


def verify_bundle(root: str | Path, run_golden: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Check hashes and format version, then every model's outputs on the golden inputs.

    Returns a report: ``files`` checked and one ``golden`` row per model (``skipped`` with the
    reason and the pip hint when no runtime for its format is installed; ``runtime`` names the one
    that ran it). Raises :class:`~cxr_core.bundle.BundleError` subclasses on any mismatch.
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
    for entry in bundle.models:
        report["golden"].append(_check_golden(bundle, golden, entry.name, threads))
    return report
