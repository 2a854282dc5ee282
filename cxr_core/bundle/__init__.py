"""The model bundle: the contract between export (``quantize/``) and every device.

* :mod:`cxr_core.bundle.schema`: the typed manifest (:class:`Manifest`, :class:`ModelEntry`,
  :class:`TensorSpec`, ...), validated on read, the one place that knows the JSON;
* :mod:`cxr_core.bundle.reader`: read, verify hashes, load the golden set and CAM weights;
* :mod:`cxr_core.bundle.signing`: the Ed25519 signature of the manifest and the trusted keys;
* :mod:`cxr_core.bundle.errors`: :class:`BundleError` and :class:`BundleIntegrityError`.

>>> from cxr_core.bundle import load_bundle
>>> bundle = load_bundle("bundles/chexnet")                  # doctest: +SKIP
>>> [(m.name, m.precision, m.runtime) for m in bundle.models]  # doctest: +SKIP
"""

from cxr_core.bundle.clinical import (
    MIN_RELIABLE_POSITIVES,
    SYNTHETIC_MARK,
    ClinicalInfo,
    FindingPerformance,
    TrainingData,
    Validation,
)
from cxr_core.bundle.errors import BundleError, BundleIntegrityError
from cxr_core.bundle.reader import (
    GOLDEN_KEYS,
    Bundle,
    check_spec_matches_model,
    inside,
    load_bundle,
    load_cam_weights,
    load_feature_gate,
    load_golden,
    load_quality_template,
    read_manifest,
    sha256_file,
    verify_files,
)
from cxr_core.bundle.schema import (
    BUNDLE_FORMAT_VERSION,
    CLASSIFIER_NAME,
    GATE_NAME,
    GOLDEN_NAME,
    MANIFEST_NAME,
    QUALITY_NAME,
    READABLE_VERSIONS,
    AutoencoderFile,
    AutoencoderInfo,
    CamInfo,
    FileRecord,
    GateFit,
    GateInfo,
    GateValidation,
    GateValidationModel,
    GoldenInfo,
    GoldenTolerance,
    Manifest,
    ModelEntry,
    Provenance,
    QualityInfo,
    RevisionInfo,
    TensorSpec,
)
from cxr_core.bundle.signing import (
    BundleSignatureError,
    BundleTrustError,
    BundleUnsignedError,
    BundleUntrustedKeyError,
    TrustStatus,
)

__all__ = [
    "MIN_RELIABLE_POSITIVES",
    "SYNTHETIC_MARK",
    "ClinicalInfo",
    "FindingPerformance",
    "TrainingData",
    "Validation",
    "BUNDLE_FORMAT_VERSION",
    "CLASSIFIER_NAME",
    "GATE_NAME",
    "GOLDEN_KEYS",
    "GOLDEN_NAME",
    "MANIFEST_NAME",
    "QUALITY_NAME",
    "READABLE_VERSIONS",
    "AutoencoderFile",
    "AutoencoderInfo",
    "Bundle",
    "BundleError",
    "BundleIntegrityError",
    "BundleSignatureError",
    "BundleTrustError",
    "BundleUnsignedError",
    "BundleUntrustedKeyError",
    "CamInfo",
    "FileRecord",
    "GateFit",
    "GateInfo",
    "GateValidation",
    "GateValidationModel",
    "GoldenInfo",
    "GoldenTolerance",
    "Manifest",
    "ModelEntry",
    "Provenance",
    "QualityInfo",
    "RevisionInfo",
    "TensorSpec",
    "TrustStatus",
    "check_spec_matches_model",
    "inside",
    "load_bundle",
    "load_cam_weights",
    "load_feature_gate",
    "load_golden",
    "load_quality_template",
    "read_manifest",
    "sha256_file",
    "verify_files",
]
