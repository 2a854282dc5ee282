"""Read and verify a model bundle: the device's side of the bundle contract.

A bundle is a folder holding ``manifest.json`` (a :class:`~cxr_core.bundle.schema.Manifest`) and
the files it lists: model files, the golden set ``golden.npz`` and the classifier weights
``classifier.npz``. The device refuses a bundle whose format version it does not read, whose
manifest is malformed (naming the field), or whose files do not match their recorded sha256.
numpy + json only: this runs on a Pi or a phone; re-running the golden set through a runtime is
:mod:`cxr_core.parity`'s job. docs/bundle-format.md is the reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.clinical import ClinicalInfo, legacy_clinical
from cxr_core.bundle.errors import BundleError, BundleIntegrityError
from cxr_core.bundle.schema import MANIFEST_NAME, Manifest, ModelEntry
from cxr_core.bundle.signing import TrustStatus, check_signature, enforce_trust
from cxr_core.feature_gate import FeatureGate, FeatureGateError
from cxr_core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A read (and by default verified) bundle: its folder and its typed manifest."""

    root: Path
    manifest: Manifest
    #: The manifest's signature check; ``None`` when the bundle was read with ``verify=False``.
    trust: TrustStatus | None = None

    @property
    def architecture(self) -> str:
        return self.manifest.architecture

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def spec(self) -> PreprocessSpec:
        return self.manifest.preprocess

    @property
    def models(self) -> tuple[ModelEntry, ...]:
        return self.manifest.models

    @property
    def operating_points(self) -> tuple[float, ...] | None:
        return self.manifest.operating_points

    @property
    def clinical(self) -> ClinicalInfo:
        """Intended use, training data and validation figures (for older bundles: what is known)."""
        return self.manifest.clinical or legacy_clinical(self.manifest.provenance.training_dataset)

    @property
    def synthetic(self) -> bool:
        """Trained on synthetic data: every result carries the synthetic mark."""
        return self.clinical.synthetic

    def model(self, name: str) -> ModelEntry:
        """The model entry called ``name`` (e.g. ``onnx-int8``)."""
        return self.manifest.model(name, f"bundle {self.root}")

    def path(self, entry: ModelEntry | str) -> Path:
        """Absolute path of a model entry's (or a listed file's) file, which must stay inside the bundle."""
        return inside(self.root, entry.file if isinstance(entry, ModelEntry) else entry)


def inside(root: Path, name: str) -> Path:
    """``root / name``, refused when it could leave ``root``.

    Refused: an absolute name, a ``..`` part, an empty name, and any symlink on the way (the file or
    a folder between ``root`` and it), wherever the link points: a bundle holds regular files only,
    so what was hashed is what is read. ``root`` itself may be reached through a link.
    """
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts or "\\" in name:
        raise BundleError(
            f"bundle {root}: file name {name!r} leaves the bundle; expected a relative name inside it"
        )
    path = root
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise BundleError(
                f"bundle {root}: {path} is a symbolic link (to {os.readlink(path)!r}); a bundle may hold "
                "regular files and folders only. Copy the real file into the bundle and re-export"
            )
    return path


def manifest_path(root: Path) -> Path:
    """``root/manifest.json``; :class:`BundleError` when ``root`` is no folder or has no regular manifest."""
    if not root.is_dir():
        raise BundleError(
            f"model bundle {root} does not exist or is not a directory; expected a bundle folder"
        )
    path = root / MANIFEST_NAME
    if path.is_symlink():
        raise BundleError(f"{path} is a symbolic link; a bundle may hold regular files only")
    if not path.is_file():
        raise BundleError(f"model bundle {root} has no {MANIFEST_NAME}; expected one written by cxr-export")
    return path


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Validate manifest bytes into a :class:`Manifest` (:class:`BundleError` naming the field)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{where} is not valid JSON ({exc}); the bundle is damaged") from exc
    except ValueError as exc:  # an integer of more digits than Python converts (sys.int_info)
        reason = str(exc).split(";")[0]
        raise BundleError(
            f"{where} cannot be read: {reason}; expected a manifest written by cxr-export "
            "(the bundle is damaged or not a cxr-edge bundle)"
        ) from exc
    return Manifest.from_dict(document, where)


def read_manifest(root: str | Path) -> Manifest:
    """Parse and validate ``root/manifest.json`` into a :class:`Manifest` (no hash or signature check)."""
    path = manifest_path(Path(root))
    return parse_manifest(path.read_bytes(), str(path))


def check_listed(root: Path, manifest: Manifest) -> None:
    """Every file the manifest uses (models, golden set, CAM weights) must be a listed, hashed file."""
    where = root / MANIFEST_NAME
    for model in manifest.models:
        listed = manifest.files.get(model.file)
        if listed is None or listed.sha256 != model.sha256:
            raise BundleIntegrityError(
                f"{where}: model {model.name!r} file {model.file!r} "
                "is not listed under 'files' with the same sha256"
            )
    if manifest.autoencoder is not None:  # the gate's autoencoder files must be hashed, present or not
        for fmt, part in manifest.autoencoder.files.items():
            if part.file not in manifest.files:
                raise BundleIntegrityError(
                    f"{where}: autoencoder.files.{fmt}.file {part.file!r} is not listed under 'files'; "
                    "every file a bundle uses must be listed with its sha256 "
                    f"(listed: {sorted(manifest.files)})"
                )
    for field_name, name in (("golden.file", manifest.golden.file), ("cam.file", manifest.cam.file)):
        if name not in manifest.files and (root / name).exists():
            raise BundleIntegrityError(
                f"{where}: {field_name} {name!r} is in the bundle but not listed under 'files'; every "
                f"file a bundle uses must be listed with its sha256 (listed: {sorted(manifest.files)})"
            )


def listed_path(bundle: Bundle, name: str, field_name: str) -> Path:
    """The path of ``name``, a file the bundle uses, which must be listed (so hash-checked) and inside it."""
    if name not in bundle.manifest.files:
        raise BundleIntegrityError(
            f"{bundle.root / MANIFEST_NAME}: {field_name} {name!r} is not listed under 'files'; every file "
            f"a bundle uses must be listed with its sha256 (listed: {sorted(bundle.manifest.files)})"
        )
    return bundle.path(name)


def verify_files(root: str | Path, manifest: Manifest) -> list[str]:
    """Check every file the manifest lists exists and has its recorded sha256; return the names.

    Model entries, the golden set and the CAM weights must name listed files (with the same hash).
    Every path must stay inside the bundle without symlinks (:func:`inside`).
    """
    root = Path(root)
    check_listed(root, manifest)
    for name, record in sorted(manifest.files.items()):
        path = inside(root, name)
        if not path.is_file():
            raise BundleIntegrityError(
                f"bundle file {path} is missing; the manifest lists it with sha256 {record.sha256}"
            )
        actual = sha256_file(path)
        if actual != record.sha256:
            raise BundleIntegrityError(
                f"bundle file {path} has sha256 {actual}; the manifest expects {record.sha256}. "
                "The file was modified or damaged: re-copy or re-export the bundle"
            )
    return sorted(manifest.files)


def load_bundle(root: str | Path, verify: bool = True, allow_untrusted: bool = False) -> Bundle:
    """Read ``root``'s manifest, check its signature and every file's hash; return a :class:`Bundle`.

    Order: the manifest is parsed and validated (pure checks: fields, listed files, preprocess vs
    model input), then its exact bytes are checked against ``manifest.sig`` and the trusted keys
    (:mod:`cxr_core.bundle.signing`): an unsigned bundle, one signed by an untrusted key or one whose
    signature does not verify raises a :class:`~cxr_core.bundle.signing.BundleTrustError` subclass
    unless ``allow_untrusted`` (then :attr:`Bundle.trust` says what was accepted); last every
    listed file is hashed. ``verify=False`` (a child process of a verifying parent) skips the
    signature and the hashes.
    """
    root = Path(root)
    path = manifest_path(root)
    data = path.read_bytes()
    manifest = parse_manifest(data, str(path))
    check_listed(root, manifest)
    for entry in manifest.models:
        check_spec_matches_model(manifest.preprocess, entry, path)
    if not verify:
        return Bundle(root=root, manifest=manifest)
    trust = enforce_trust(root, check_signature(root, data), allow_untrusted)
    verify_files(root, manifest)
    return Bundle(root=root, manifest=manifest, trust=trust)


def check_spec_matches_model(spec: PreprocessSpec, entry: ModelEntry, manifest: Path) -> None:
    """Refuse a manifest whose PreprocessSpec would feed a model a tensor of another shape.

    The manifest is signed, not hashed; this cross-check names the problem when a PreprocessSpec
    was edited (or copied from another model) after export in an unsigned or re-signed bundle.
    """
    inputs = [t for t in entry.inputs if t.role == "input"]
    if not inputs:
        return
    shape = list(inputs[0].shape)
    layout = inputs[0].layout or "NCHW"
    if len(shape) != 4:
        raise BundleError(
            f"{manifest}: model {entry.name!r} ({entry.file}) declares an input of {len(shape)} dimensions "
            f"{shape}; expected 4 (batch and an image in {layout})"
        )
    dims = shape[1:] if layout == "NCHW" else [shape[3], shape[1], shape[2]]
    expected = [spec.channels, spec.input_size, spec.input_size]
    if [d for d in dims if d is not None] != [
        e for d, e in zip(dims, expected, strict=True) if d is not None
    ]:
        raise BundleError(
            f"{manifest}: the PreprocessSpec makes (channels, height, width) = {tuple(expected)} but model "
            f"{entry.name!r} ({entry.file}) takes {layout} input of shape "
            f"{['batch' if d is None else d for d in shape]}; the manifest's "
            "'preprocess' does not belong to this model. Re-export the bundle"
        )


#: What :func:`load_npz` turns into a :class:`BundleError`: a zip cut short or damaged (BadZipFile,
#: EOFError, zlib/lzma errors, an unsupported or encrypted member), a malformed .npy header or an
#: object array (ValueError), a member too large to hold (MemoryError).
NPZ_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    MemoryError,
    OverflowError,
)
#: The first bytes of a zip archive (an .npz): a local file header, or the end record of an empty one.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class ArrayRule:
    """What one array of a bundle .npz must be: ``ndim`` dimensions of floating-point numbers, finite
    unless ``finite`` is False; ``meaning`` says what it holds, for the error message."""

    ndim: int
    meaning: str
    finite: bool = True


def _read_reason(exc: BaseException) -> str:
    """Why an array could not be read, in words; never numpy's advice to switch the pickle guard off."""
    if "pickle" in str(exc).lower():
        return "it holds Python objects (pickled data), which a bundle never holds"
    return f"{type(exc).__name__}: {exc}"


def _check_zip_header(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise BundleError(f"bundle file {path} cannot be read ({exc})") from exc
    if head not in ZIP_MAGIC:
        raise BundleError(
            f"{path}: got a file starting with {head!r} ({path.stat().st_size} bytes); expected an .npz "
            "archive (a zip file of .npy arrays, starting with b'PK\\x03\\x04') as cxr-export writes. "
            "The file is damaged or not the bundle's: re-copy or re-export the bundle"
        )


def _read_arrays(path: Path, names: tuple[str, ...]) -> dict[str, NDArray[Any]]:
    """The arrays ``names`` of the .npz at ``path``, read with the pickle guard on."""
    _check_zip_header(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except NPZ_READ_ERRORS as exc:
        raise BundleError(
            f"{path} ({path.stat().st_size} bytes) is not a readable .npz archive ({_read_reason(exc)}); "
            f"expected a zip of the arrays {list(names)} as cxr-export writes. The file is damaged or "
            "cut short: re-copy or re-export the bundle"
        ) from exc
    with archive:
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise BundleError(
                f"{path} lacks array(s) {missing}; it holds {sorted(archive.files)}, expected {list(names)}"
            )
        return {name: _read_member(archive, name, path) for name in names}


def _read_member(archive: Any, name: str, path: Path) -> NDArray[Any]:
    try:
        return np.asarray(archive[name])
    except NPZ_READ_ERRORS as exc:
        raise BundleError(
            f"{path}: array {name!r} cannot be read ({_read_reason(exc)}); expected a numeric .npy array. "
            "The file is damaged or cut short: re-copy or re-export the bundle"
        ) from exc


def check_array(path: Path, name: str, value: NDArray[Any], rule: ArrayRule) -> None:
    """Refuse ``value`` unless it is a non-empty, ``rule.ndim``-dimensional float array (finite if asked)."""
    if value.dtype.kind != "f":
        raise BundleError(
            f"{path}: array {name!r} has dtype {value.dtype}; expected floating-point numbers "
            f"(float32): {rule.meaning}"
        )
    if value.ndim != rule.ndim or value.size == 0:
        raise BundleError(
            f"{path}: array {name!r} has shape {value.shape}; expected a non-empty {rule.ndim}-D array "
            f"{rule.meaning}"
        )
    if rule.finite and not np.isfinite(value).all():
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        raise BundleError(
            f"{path}: array {name!r} holds {bad} non-finite values (NaN or infinity) of {value.size}; "
            f"expected finite numbers: {rule.meaning}"
        )


def load_npz(path: Path, rules: Mapping[str, ArrayRule]) -> dict[str, NDArray[Any]]:
    """The arrays of a bundle .npz, each checked against its :class:`ArrayRule`.

    Every failure (a missing, cut-short or non-zip file, a damaged member, a missing array, an object
    array, a wrong dtype, number of dimensions or a non-finite value) is a :class:`BundleError`
    naming the file, the array, what was found and what was expected.
    """
    if not path.is_file():
        raise BundleError(f"bundle file {path} is missing; expected the arrays {list(rules)}")
    arrays = _read_arrays(path, tuple(rules))
    for name, rule in rules.items():
        check_array(path, name, arrays[name], rule)
    return arrays


GOLDEN_RULES = {
    "inputs": ArrayRule(4, "(N, C, H, W) or (N, H, W, C): the preprocessed golden images"),
    # Non-finite references are the golden comparison's to report, naming each model.
    "probabilities": ArrayRule(2, "(N, L): the reference probabilities", finite=False),
    "feature_map": ArrayRule(4, "(N, C, h, w): the reference feature maps", finite=False),
}
GOLDEN_KEYS = tuple(GOLDEN_RULES)
CAM_RULES = {
    "weight": ArrayRule(2, "(L, C): one row of C feature-map weights per label"),
    "bias": ArrayRule(1, "(L,): one bias per label"),
}
GATE_RULES = {
    "mean": ArrayRule(1, "(C,): the mean pooled feature"),
    "precision": ArrayRule(2, "(C, C): the inverse feature covariance"),
}
QUALITY_RULES = {"template": ArrayRule(2, "(S, S): the image-quality checks' square template")}


def load_golden(bundle: Bundle) -> dict[str, NDArray[Any]]:
    """The golden set: preprocessed ``inputs``, FP32 reference ``probabilities`` and ``feature_map``."""
    path = listed_path(bundle, bundle.manifest.golden.file, "golden.file")
    arrays = load_npz(path, GOLDEN_RULES)
    count = arrays["inputs"].shape[0]
    if arrays["probabilities"].shape != (count, len(bundle.labels)):
        raise BundleError(
            f"{path}: probabilities have shape {arrays['probabilities'].shape}; "
            f"expected ({count}, {len(bundle.labels)})"
        )
    if arrays["feature_map"].shape[0] != count:
        raise BundleError(
            f"{path}: feature_map has shape {arrays['feature_map'].shape}; expected {count} maps, one per "
            "golden input"
        )
    return arrays


def feature_channels(entry: ModelEntry) -> int | None:
    """The channels of ``entry``'s declared feature map (None when it declares none or no fixed count)."""
    spec = entry.output("feature_map")
    if spec is None or len(spec.shape) != 4:
        return None
    return spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]


def load_cam_weights(bundle: Bundle) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Classifier ``(W (L, C), b (L,))`` for class activation maps, from the bundle's npz.

    Refused (:class:`BundleError`): anything :func:`load_npz` refuses, a row count other than the
    number of labels, a bias of another length, or C other than a model's declared feature channels.
    """
    path = listed_path(bundle, bundle.manifest.cam.file, "cam.file")
    arrays = load_npz(path, CAM_RULES)
    weight, bias = arrays["weight"], arrays["bias"]
    labels = len(bundle.labels)
    if weight.shape[0] != labels or bias.shape != (labels,):
        raise BundleError(
            f"{path}: weight of shape {weight.shape} and bias of shape {bias.shape} for {labels} labels; "
            f"expected ({labels}, C) and ({labels},), one row per label"
        )
    for entry in bundle.models:
        channels = feature_channels(entry)
        if channels is not None and channels != weight.shape[1]:
            raise BundleError(
                f"{path}: weight of shape {weight.shape} has {weight.shape[1]} columns; model "
                f"{entry.name!r} ({entry.file}) outputs a feature map of {channels} channels; "
                f"expected ({labels}, {channels})"
            )
    return weight.astype(np.float32), bias.astype(np.float32)


def load_feature_gate(bundle: Bundle, model_name: str | None = None) -> FeatureGate | None:
    """The bundle's learned feature gate, or None for a bundle exported without one.

    With ``model_name``, the gate that model file runs with: its own fit when it has one (INT8 files,
    ``manifest.gate.model_fits``), else the shared one."""
    info = bundle.manifest.gate
    if info is None:
        return None
    file, shrinkage = info.fit_for(model_name) if model_name is not None else (info.file, info.shrinkage)
    field_name = "gate.file" if file == info.file else f"gate.model_fits.{model_name}.file"
    path = listed_path(bundle, file, field_name)
    arrays = load_npz(path, GATE_RULES)
    try:
        return FeatureGate.from_arrays(arrays, info.pooling, shrinkage, info.normalization)
    except FeatureGateError as exc:
        raise BundleError(f"{path}: {exc}") from exc


def load_quality_template(bundle: Bundle) -> NDArray[np.float32] | None:
    """The template of the bundle's image-quality checks, or None for a bundle exported without them."""
    info = bundle.manifest.quality
    if info is None:
        return None
    path = listed_path(bundle, info.file, "quality.file")
    return load_npz(path, QUALITY_RULES)["template"].astype(np.float32)
