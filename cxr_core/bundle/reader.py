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
import os
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

GOLDEN_KEYS = ("inputs", "probabilities", "feature_map")


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


def _manifest_path(root: Path) -> Path:
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
    return Manifest.from_dict(document, where)


def read_manifest(root: str | Path) -> Manifest:
    """Parse and validate ``root/manifest.json`` into a :class:`Manifest` (no hash or signature check)."""
    path = _manifest_path(Path(root))
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
    path = _manifest_path(root)
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


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, NDArray[Any]]:
    if not path.is_file():
        raise BundleError(f"bundle file {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} cannot be read as .npz ({exc})") from exc
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise BundleError(f"{path} lacks array(s) {missing}; expected {list(keys)}")
    return arrays


def load_golden(bundle: Bundle) -> dict[str, NDArray[Any]]:
    """The golden set: preprocessed ``inputs``, FP32 reference ``probabilities`` and ``feature_map``."""
    path = listed_path(bundle, bundle.manifest.golden.file, "golden.file")
    arrays = _load_npz(path, GOLDEN_KEYS)
    count = arrays["inputs"].shape[0]
    if arrays["probabilities"].shape != (count, len(bundle.labels)):
        raise BundleError(
            f"{path}: probabilities have shape {arrays['probabilities'].shape}; "
            f"expected ({count}, {len(bundle.labels)})"
        )
    return arrays


def load_cam_weights(bundle: Bundle) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Classifier ``(W (L, C), b (L,))`` for class activation maps, from the bundle's npz."""
    path = listed_path(bundle, bundle.manifest.cam.file, "cam.file")
    arrays = _load_npz(path, ("weight", "bias"))
    return arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32)


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
    arrays = _load_npz(path, ("mean", "precision"))
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
    return _load_npz(path, ("template",))["template"].astype(np.float32)
