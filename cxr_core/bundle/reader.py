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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.clinical import ClinicalInfo, legacy_clinical
from cxr_core.bundle.errors import BundleError, BundleIntegrityError
from cxr_core.bundle.schema import MANIFEST_NAME, Manifest, ModelEntry
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
        for entry in self.models:
            if entry.name == name:
                return entry
        raise BundleError(f"bundle {self.root} has no model {name!r}; it has {[m.name for m in self.models]}")

    def path(self, entry: ModelEntry | str) -> Path:
        """Absolute path of a model entry's (or a listed file's) file, which must stay inside the bundle."""
        return inside(self.root, entry.file if isinstance(entry, ModelEntry) else entry)


def inside(root: Path, name: str) -> Path:
    """``root / name``, refused when ``name`` is absolute or climbs out of ``root`` with ``..``."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise BundleError(
            f"bundle {root}: file name {name!r} leaves the bundle; expected a relative name inside it"
        )
    return root / relative


def read_manifest(root: str | Path) -> Manifest:
    """Parse and validate ``root/manifest.json`` into a :class:`Manifest` (no hash check)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(
            f"model bundle {root} does not exist or is not a directory; expected a bundle folder"
        )
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"model bundle {root} has no {MANIFEST_NAME}; expected one written by cxr-export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    return Manifest.from_dict(data, str(path))


def verify_files(root: str | Path, manifest: Manifest) -> list[str]:
    """Check every file the manifest lists exists and has its recorded sha256; return the names.

    Model entries must name listed files with the same hash.
    """
    root = Path(root)
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
    for model in manifest.models:
        listed = manifest.files.get(model.file)
        if listed is None or listed.sha256 != model.sha256:
            raise BundleIntegrityError(
                f"{root / MANIFEST_NAME}: model {model.name!r} file {model.file!r} "
                "is not listed under 'files' with the same sha256"
            )
    return sorted(manifest.files)


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read ``root``'s manifest and (by default) verify every file's hash; return a :class:`Bundle`."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        verify_files(root, manifest)
    for entry in manifest.models:
        check_spec_matches_model(manifest.preprocess, entry, root / MANIFEST_NAME)
    return Bundle(root=root, manifest=manifest)


def check_spec_matches_model(spec: PreprocessSpec, entry: ModelEntry, manifest: Path) -> None:
    """Refuse a manifest whose PreprocessSpec would feed a model a tensor of another shape.

    The manifest itself is not hashed, so this cross-check is what catches a PreprocessSpec that
    was edited (or copied from another model) after export.
    """
    inputs = [t for t in entry.inputs if t.role == "input"]
    if not inputs:
        return
    shape = list(inputs[0].shape)
    layout = inputs[0].layout or "NCHW"
    if len(shape) != 4:
        return
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
    path = bundle.path(bundle.manifest.golden.file)
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
    arrays = _load_npz(bundle.path(bundle.manifest.cam.file), ("weight", "bias"))
    return arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32)
