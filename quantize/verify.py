"""Verify a model bundle without torch: hashes, then the golden set re-run through each runtime.

This is what ``cxr-export verify BUNDLE`` runs; it imports only cxr_core, numpy and the runtimes
that are installed, and runs every model file through the device's own backend and the device's
own self-test (:func:`cxr_core.selftest.check_model`), so it checks exactly what a device checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cxr_core.autoencoder_gate import check_golden
from cxr_core.bundle import BundleError, load_bundle, load_golden
from cxr_core.selftest import check_model

logger = logging.getLogger(__name__)


class GoldenMismatchError(BundleError):
    """A model's outputs on the golden inputs differ from the recorded reference beyond its tolerance."""


def verify_bundle(
    root: str | Path, run_golden: bool = True, threads: int | None = None, allow_untrusted: bool = False
) -> dict[str, Any]:
    """Check the signature, hashes and format version, then every model's outputs on the golden inputs.

    An unsigned or untrusted bundle is refused (a :class:`~cxr_core.bundle.signing.BundleTrustError`)
    unless ``allow_untrusted``; the report's ``trust`` and ``trust_line`` say which it was.

    Returns a report: ``files`` checked and one ``golden`` row per model (the self-test's row;
    ``unavailable`` with the reason and the pip hint when no runtime for its format is installed).
    Raises :class:`~cxr_core.bundle.BundleError` subclasses on any mismatch: a hash, a model that
    fails to run, or outputs (including non-finite ones) beyond the entry's tolerance.
    """
    bundle = load_bundle(root, verify=True, allow_untrusted=allow_untrusted)
    trust = bundle.trust
    report: dict[str, Any] = {
        "bundle": str(Path(root)),
        "trust": None if trust is None else trust.to_dict(),
        "trust_line": "" if trust is None else trust.describe(),
        "files": sorted(bundle.manifest.files),
        "models": [m.name for m in bundle.models],
        "golden": [],
    }
    if not run_golden:
        return report
    golden = load_golden(bundle)
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
