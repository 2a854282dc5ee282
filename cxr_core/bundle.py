"""Read and verify a model bundle: the contract between export (quantize/) and the device.

A bundle is a directory holding ``manifest.json`` and the files it lists (model files, the
golden set ``golden.npz``, the classifier weights ``classifier.npz``). The manifest records the
format version, architecture, labels in output order, the PreprocessSpec, every model file with
its format, sha256, input/output names, shapes and layouts, operating points, the parity report
and provenance (docs/bundle-format.md is the reference).

The device refuses a bundle whose format version it does not read or whose files do not match
their recorded sha256, with a message naming the file. numpy + json only: this runs on a Pi or
a phone; re-running the golden set through a runtime is the runtime backend's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError, PreprocessSpecError
from cxr_core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

#: Bump when the meaning of a manifest key changes; the device refuses other versions.
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
GOLDEN_NAME = "golden.npz"
CLASSIFIER_NAME = "classifier.npz"
REQUIRED_KEYS = ("format_version", "architecture", "labels", "preprocess", "models", "files")
GOLDEN_KEYS = ("inputs", "probabilities", "feature_map")


class BundleError(CxrEdgeError, ValueError):
    """A model bundle is missing, malformed, or of a format version this cxr-edge does not read."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing or its sha256 differs from the manifest's (damaged or modified)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    """One model file of a bundle, as the manifest describes it."""

    name: str
    file: str
    format: str
    int8: bool
    sha256: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    quantization: dict[str, Any] | None = None
    golden_tolerance: dict[str, float] = field(default_factory=dict)
    runtime: str | None = None
    size_bytes: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], manifest: Path) -> ModelEntry:
        missing = [k for k in ("name", "file", "format", "sha256", "inputs", "outputs") if k not in data]
        if missing:
            raise BundleError(f"{manifest}: a model entry lacks key(s) {missing}; got keys {sorted(data)}")
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            format=str(data["format"]),
            int8=bool(data.get("int8", False)),
            sha256=str(data["sha256"]),
            inputs=tuple(data["inputs"]),
            outputs=tuple(data["outputs"]),
            quantization=data.get("quantization"),
            golden_tolerance=dict(data.get("golden_tolerance") or {}),
            runtime=str(data["runtime"]) if data.get("runtime") else None,
            size_bytes=int(data["size_bytes"]) if data.get("size_bytes") is not None else None,
        )


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its root, the raw manifest and the typed fields a device needs."""

    root: Path
    manifest: dict[str, Any]
    architecture: str
    labels: tuple[str, ...]
    spec: PreprocessSpec
    models: tuple[ModelEntry, ...]
    operating_points: tuple[float, ...] | None

    def model(self, name: str) -> ModelEntry:
        """The model entry called ``name`` (e.g. ``onnx-int8``)."""
        for entry in self.models:
            if entry.name == name:
                return entry
        raise BundleError(f"bundle {self.root} has no model {name!r}; it has {[m.name for m in self.models]}")

    def path(self, entry: ModelEntry | str) -> Path:
        """Absolute path of a model entry's (or a listed file's) file."""
        return self.root / (entry.file if isinstance(entry, ModelEntry) else entry)


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Parse and check ``root/manifest.json``: JSON object, format version, required keys."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(
            f"model bundle {root} does not exist or is not a directory; expected a bundle folder"
        )
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"model bundle {root} has no {MANIFEST_NAME}; expected one written by cxr-export")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} holds a JSON {type(manifest).__name__}; expected an object")
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path} has format_version {version!r}; this cxr-edge reads format_version "
            f"{BUNDLE_FORMAT_VERSION}. Re-export the bundle with a matching cxr-edge, or update the app."
        )
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{path} lacks key(s) {missing}; expected {list(REQUIRED_KEYS)}")
    return manifest


def verify_files(root: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """Check every file listed in ``manifest['files']`` exists and has its recorded sha256.

    Model entries must name listed files with the same hash. Returns the checked names.
    """
    root = Path(root)
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{root / MANIFEST_NAME}: 'files' must be a non-empty object of name -> sha256")
    for name, record in sorted(files.items()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(
                f"{root / MANIFEST_NAME}: file name {name!r} leaves the bundle; expected a relative name"
            )
        path = root / name
        expected = record["sha256"] if isinstance(record, dict) else str(record)
        if not path.is_file():
            raise BundleIntegrityError(
                f"bundle file {path} is missing; the manifest lists it with sha256 {expected}"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise BundleIntegrityError(
                f"bundle file {path} has sha256 {actual}; the manifest expects {expected}. "
                "The file was modified or damaged: re-copy or re-export the bundle"
            )
    for model in manifest["models"]:
        listed = files.get(model.get("file"))
        listed_hash = listed["sha256"] if isinstance(listed, dict) else listed
        if listed_hash is None or listed_hash != model.get("sha256"):
            raise BundleIntegrityError(
                f"{root / MANIFEST_NAME}: model {model.get('name')!r} file {model.get('file')!r} "
                "is not listed under 'files' with the same sha256"
            )
    return sorted(files)


def load_bundle(root: str | Path, verify: bool = True) -> Bundle:
    """Read ``root``'s manifest and (by default) verify every file's hash; return a :class:`Bundle`."""
    root = Path(root)
    manifest = read_manifest(root)
    manifest_path = root / MANIFEST_NAME
    if verify:
        verify_files(root, manifest)
    try:
        spec = PreprocessSpec.from_dict(manifest["preprocess"])
    except (PreprocessSpecError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: preprocess: {exc}") from exc
    labels = tuple(str(label) for label in manifest["labels"])
    models = tuple(ModelEntry.from_dict(m, manifest_path) for m in manifest["models"])
    if not models:
        raise BundleError(f"{manifest_path} lists no model files; expected at least one")
    for entry in models:
        check_spec_matches_model(spec, entry, manifest_path)
    points = manifest.get("operating_points")
    if points is not None and len(points) != len(labels):
        raise BundleError(f"{manifest_path}: {len(points)} operating points for {len(labels)} labels")
    return Bundle(
        root=root,
        manifest=manifest,
        architecture=str(manifest["architecture"]),
        labels=labels,
        spec=spec,
        models=models,
        operating_points=tuple(float(p) for p in points) if points is not None else None,
    )


def check_spec_matches_model(spec: PreprocessSpec, entry: ModelEntry, manifest: Path) -> None:
    """Refuse a manifest whose PreprocessSpec would feed a model a tensor of another shape.

    The manifest itself is not hashed, so this cross-check is what catches a PreprocessSpec that
    was edited (or copied from another model) after export.
    """
    inputs = [i for i in entry.inputs if i.get("role", "input") == "input"]
    if not inputs:
        return
    shape = list(inputs[0].get("shape") or [])
    layout = str(inputs[0].get("layout") or "NCHW")
    if len(shape) != 4 or layout not in ("NCHW", "NHWC"):
        return
    dims = shape[1:] if layout == "NCHW" else [shape[3], shape[1], shape[2]]
    expected = [spec.channels, spec.input_size, spec.input_size]
    if [d for d in dims if isinstance(d, int)] != [
        e for d, e in zip(dims, expected, strict=True) if isinstance(d, int)
    ]:
        raise BundleError(
            f"{manifest}: the PreprocessSpec makes (channels, height, width) = {tuple(expected)} but model "
            f"{entry.name!r} ({entry.file}) takes {layout} input of shape {shape}; the manifest's "
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
    name = bundle.manifest.get("golden", {}).get("file", GOLDEN_NAME)
    arrays = _load_npz(bundle.root / name, GOLDEN_KEYS)
    count = arrays["inputs"].shape[0]
    if arrays["probabilities"].shape != (count, len(bundle.labels)):
        raise BundleError(
            f"{bundle.root / name}: probabilities have shape {arrays['probabilities'].shape}; "
            f"expected ({count}, {len(bundle.labels)})"
        )
    return arrays


def load_cam_weights(bundle: Bundle) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Classifier ``(W (L, C), b (L,))`` for class activation maps, from the bundle's npz."""
    cam = bundle.manifest.get("cam") or {}
    arrays = _load_npz(bundle.root / cam.get("file", CLASSIFIER_NAME), ("weight", "bias"))
    return arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32)
