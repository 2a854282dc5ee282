"""Verify a model bundle without torch: hashes, every array file, then the golden set re-run.

This is what ``cxr-export verify BUNDLE`` runs; it imports only cxr_core, numpy and the runtimes
that are installed. It reads every array file (classifier, feature gates, quality template, golden
set) through the loaders the ``Predictor`` uses (:func:`load_arrays`), so a bundle that verifies,
loads; then it runs every model file through the device's own backend and the device's own
self-test (:func:`cxr_core.selftest.check_model`), so it checks exactly what a device checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cxr_core.autoencoder_gate import check_golden
from cxr_core.bundle import (
    Bundle,
    BundleError,
    load_bundle,
    load_cam_weights,
    load_feature_gate,
    load_golden,
)
from cxr_core.selftest import check_model

logger = logging.getLogger(__name__)


class GoldenMismatchError(BundleError):
    """A model's outputs on the golden inputs differ from the recorded reference beyond its tolerance."""


def load_arrays(bundle: Bundle) -> list[str]:
    """Read every array file the Predictor reads, with its loaders; return their names.

    The classifier weights, the shared feature gate and each model's own fit, and the image-quality
    template (through :meth:`~cxr_core.image_quality.QualityChecks.from_bundle`, which also checks
    its size). Any damage is the loaders' :class:`BundleError` naming the file. (The golden set is
    :func:`verify_bundle`'s to read.)
    """
    from cxr_core.image_quality import QualityChecks

    manifest = bundle.manifest
    load_cam_weights(bundle)
    names = [manifest.cam.file]
    if manifest.gate is not None:
        load_feature_gate(bundle)
        gate_files = {manifest.gate.file}
        for entry in bundle.models:  # each INT8 file's own fit; the others share the file read above
            file = manifest.gate.fit_for(entry.name)[0]
            if file not in gate_files:
                load_feature_gate(bundle, entry.name)
                gate_files.add(file)
        names += gate_files
    if manifest.quality is not None:
        QualityChecks.from_bundle(bundle)
        names.append(manifest.quality.file)
    return sorted(set(names))


def verify_bundle(
    root: str | Path, run_golden: bool = True, threads: int | None = None, allow_untrusted: bool = False
) -> dict[str, Any]:
    """Check the signature, hashes, format version and array files, then every model's golden outputs.

    An unsigned or untrusted bundle is refused (a :class:`~cxr_core.bundle.signing.BundleTrustError`)
    unless ``allow_untrusted``; the report's ``trust`` and ``trust_line`` say which it was.

    Every array file is read, the golden set included, whether or not ``run_golden``.

    Returns a report: ``files`` checked, ``arrays`` read, one ``golden`` row per model (the
    self-test's row; ``unavailable`` with the reason and the pip hint when no runtime for its format
    is installed).
    Raises :class:`~cxr_core.bundle.BundleError` subclasses on any mismatch: a hash, a model that
    fails to run, outputs (including non-finite ones) beyond the entry's tolerance, or an array file
    that is damaged or of the wrong shape, type or values.
    """
    bundle = load_bundle(root, verify=True, allow_untrusted=allow_untrusted)
    arrays = load_arrays(bundle)
    golden = load_golden(bundle)
    trust = bundle.trust
    report: dict[str, Any] = {
        "bundle": str(Path(root)),
        "trust": None if trust is None else trust.to_dict(),
        "trust_line": "" if trust is None else trust.describe(),
        "files": sorted(bundle.manifest.files),
        "arrays": sorted({*arrays, bundle.manifest.golden.file}),
        "models": [m.name for m in bundle.models],
        "golden": [],
    }
    if not run_golden:
        return report
    for entry in bundle.models:
        row = check_model(bundle, entry, golden, threads)
        report["golden"].append(row)
        if row["status"] in ("fail", "error"):
            raise GoldenMismatchError(f"{bundle.path(entry)}: {row['message']}")
    report["autoencoder"] = check_golden(bundle, golden["inputs"])
    for row in report["autoencoder"]:
        if row["status"] in ("fail", "error"):
            raise GoldenMismatchError(f"autoencoder {row['autoencoder']}: {row['message']}")
    return report
