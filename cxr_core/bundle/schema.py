"""The typed bundle manifest: one schema that the exporter writes and every reader reads.

``manifest.json`` is the serialised :class:`Manifest`. The exporter builds a :class:`Manifest` and
writes ``manifest.to_dict()``; every reader gets one from :meth:`Manifest.from_dict`, which
validates each field and raises :class:`~cxr_core.bundle.errors.BundleError` naming the field, the
value received and what was expected. No code outside this package indexes the raw JSON.

Versions: ``format_version`` 3 is written (the feature gate records how its features are scaled and
each INT8 file's own fit: an older reader would score a version 3 gate wrongly, so it refuses the
bundle); version 2 manifests (a gate on pooled features, one fit for every file) and version 1
manifests (before model entries recorded their precision) are read and upgraded in memory. The
JSON Schema in ``docs/schemas/manifest.schema.json`` is generated from these classes
(:mod:`cxr_core.json_schema`); a test keeps the two identical.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

from cxr_core.bundle.clinical import ClinicalInfo
from cxr_core.bundle.errors import BundleError
from cxr_core.errors import PreprocessSpecError
from cxr_core.formats import FORMATS, PRECISIONS, RUNTIME_FAMILIES, SUFFIX_RUNTIME, Precision
from cxr_core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

#: The version this cxr-edge writes; :data:`READABLE_VERSIONS` are the ones it reads.
BUNDLE_FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
GOLDEN_NAME = "golden.npz"
CLASSIFIER_NAME = "classifier.npz"
GATE_NAME = "gate.npz"
QUALITY_NAME = "quality.npz"

#: Roles a tensor plays: the one input, and the outputs a backend returns.
INPUT_ROLE = "input"
OUTPUT_ROLES = ("probabilities", "feature_map")
#: Tensor element types a backend can adapt to.
DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
}
LAYOUTS = ("NCHW", "NHWC")
#: The most dimensions a tensor of a bundle may declare.
MAX_RANK = 8


# ----------------------------------------------------------------------------- field checks


def _get(data: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise BundleError(f"{where}: expected a JSON object; got {type(data).__name__} {data!r:.80}")
    if key not in data:
        raise BundleError(f"{where}: missing key {key!r}; got keys {sorted(data)}")
    return data[key]


def _text(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise BundleError(f"{where}: got {value!r}; expected a non-empty string")
    return value


def _file_name(value: Any, where: str) -> str:
    """A bundle file name: relative, '/'-separated, no '..', '.', empty part, backslash or NUL."""
    name = _text(value, where)
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise BundleError(
            f"{where}: file name {name!r} leaves the bundle or is not normalised; expected a relative "
            "name inside it such as 'model.onnx' or 'models/model.onnx'"
        )
    return name


def _opt_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where, allow_empty=True)


def _integer(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BundleError(f"{where}: got {value!r}; expected an integer")
    if minimum is not None and value < minimum:
        raise BundleError(f"{where}: got {value!r}; expected an integer >= {minimum}")
    return int(value)


def _number(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise BundleError(f"{where}: got {value!r}; expected a finite number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise BundleError(f"{where}: got {value!r}; expected a finite number in [{low:g}, {high:g}]")
    return number


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise BundleError(f"{where}: got {type(value).__name__} {value!r:.80}; expected a JSON object")
    return dict(value)


def _sequence(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise BundleError(f"{where}: got {type(value).__name__} {value!r:.80}; expected a JSON array")
    return list(value)


def _choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise BundleError(f"{where}: got {value!r}; expected one of {list(choices)}")
    return str(value)


def _known(cls: type, data: Mapping[str, Any], json_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keys of ``data`` that ``cls`` does not declare (kept, so a round trip loses nothing)."""
    names = {f.name for f in fields(cls)} | set((json_names or {}).values())
    return {k: v for k, v in data.items() if k not in names}


# ----------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of a model file.

    ``shape`` holds ints, with ``None`` for a dynamic axis (``"batch"`` in JSON). ``scale`` and
    ``zero_point`` are the affine quantization of an integer tensor. ``key`` is how a runtime
    addresses the tensor once the file is open (its name for ONNX Runtime, its index for LiteRT);
    it is never serialised.
    """

    name: str
    role: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    layout: Literal["NCHW", "NHWC"] | None = None
    scale: float | None = None
    zero_point: int | None = None
    key: Any = field(default=None, compare=False, metadata={"json": False})

    @property
    def quantized(self) -> bool:
        return np.issubdtype(DTYPES[self.dtype], np.integer)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str, role: str | None = None) -> TensorSpec:
        name = _text(_get(data, "name", where), f"{where}.name")
        raw_shape = _sequence(_get(data, "shape", where), f"{where}.shape")
        if not 1 <= len(raw_shape) <= MAX_RANK:
            raise BundleError(f"{where}.shape: got {len(raw_shape)} dimensions; expected 1 to {MAX_RANK}")
        shape: list[int | None] = []
        for dim in raw_shape:
            if isinstance(dim, str) or dim is None:
                shape.append(None)
            elif isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 0:
                raise BundleError(f"{where}.shape: {raw_shape} holds {dim!r}; expected ints >= 0 or 'batch'")
            else:
                shape.append(int(dim))
        dtype = _choice(data.get("dtype", "float32"), list(DTYPES), f"{where}.dtype")
        layout = data.get("layout")
        if layout is None and len(shape) == 4:
            layout = "NCHW"
        if layout is not None:
            layout = _choice(layout, LAYOUTS, f"{where}.layout")
        quant = data.get("quantization") or {}
        quant = _mapping(quant, f"{where}.quantization")
        scale = quant.get("scale")
        zero_point = quant.get("zero_point")
        return cls(
            name=name,
            role=str(data.get("role") or role or name),
            shape=tuple(shape),
            dtype=dtype,
            layout=layout,  # type: ignore[arg-type]
            scale=None if scale is None else _number(scale, f"{where}.quantization.scale", low=0.0),
            zero_point=None
            if zero_point is None
            else _integer(zero_point, f"{where}.quantization.zero_point"),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "role": self.role,
            "shape": ["batch" if d is None else d for d in self.shape],
            "dtype": self.dtype,
        }
        if self.layout is not None:
            data["layout"] = self.layout
        if self.scale is not None:
            data["quantization"] = {"scale": self.scale, "zero_point": int(self.zero_point or 0)}
        return data


# JSON shape of a TensorSpec (its to_dict differs from its fields: quantization is nested).
TensorSpec.JSON_SCHEMA = {  # type: ignore[attr-defined]
    "type": "object",
    "required": ["name", "role", "shape", "dtype"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "role": {"type": "string", "description": "input, probabilities, feature_map, or another output"},
        "shape": {
            "type": "array",
            "items": {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "batch"}]},
        },
        "dtype": {"enum": list(DTYPES)},
        "layout": {"enum": list(LAYOUTS)},
        "quantization": {
            "type": "object",
            "required": ["scale", "zero_point"],
            "properties": {"scale": {"type": "number", "minimum": 0}, "zero_point": {"type": "integer"}},
        },
    },
}


@dataclass(frozen=True)
class GoldenTolerance:
    """How far a device's outputs on the golden inputs may be from the recorded FP32 outputs."""

    max_abs_dp: float
    feature_map_rel_error: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GoldenTolerance:
        data = _mapping(data, where)
        return cls(
            max_abs_dp=_number(_get(data, "max_abs_dp", where), f"{where}.max_abs_dp", 0.0, 1.0),
            feature_map_rel_error=_number(
                _get(data, "feature_map_rel_error", where), f"{where}.feature_map_rel_error", 0.0
            ),
        )

    def to_dict(self) -> dict[str, float]:
        return {"max_abs_dp": self.max_abs_dp, "feature_map_rel_error": self.feature_map_rel_error}


# ----------------------------------------------------------------------------- model entries


def _runtime_of(data: Mapping[str, Any], fmt: str, file: str, where: str) -> str:
    recorded = data.get("runtime")
    if recorded is not None:
        return _choice(recorded, RUNTIME_FAMILIES, f"{where}.runtime")
    if fmt in FORMATS:
        return FORMATS[fmt].runtime
    suffix = "." + file.rsplit(".", 1)[-1].lower() if "." in file else ""
    if suffix in SUFFIX_RUNTIME:
        return SUFFIX_RUNTIME[suffix]
    raise BundleError(
        f"{where}: format {fmt!r} ({file}) has no runtime; expected one of {list(FORMATS)} "
        "or a .onnx / .tflite file"
    )


def _precision_of(data: Mapping[str, Any], fmt: str, where: str) -> Precision:
    recorded = data.get("precision")
    if recorded is not None:
        return _choice(recorded, PRECISIONS, f"{where}.precision")  # type: ignore[return-value]
    if fmt in FORMATS:  # version 1 entries: the format table knows
        return FORMATS[fmt].precision
    return "int8" if data.get("int8") else "fp32"


@dataclass(frozen=True)
class ModelEntry:
    """One model file of a bundle: what it is, how to run it, and how close it must stay to FP32."""

    name: str
    file: str
    format: str
    precision: Precision
    runtime: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    size_bytes: int | None = None
    opset: int | None = None
    quantization: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    golden_tolerance: GoldenTolerance | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, metadata={"json": "inline"})

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def input(self) -> TensorSpec:
        """The one tensor with role ``input`` (or the only input of an entry that records no role)."""
        roled = [t for t in self.inputs if t.role == INPUT_ROLE]
        if len(roled) == 1:
            return roled[0]
        raise BundleError(
            f"model {self.name!r}: expected exactly one input with role 'input'; "
            f"got {[(t.name, t.role) for t in self.inputs]}"
        )

    def output(self, role: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.role == role), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ModelEntry:
        data = _mapping(data, where)
        name = _text(_get(data, "name", where), f"{where}.name")
        where = f"{where} (model {name!r})"
        file = _file_name(_get(data, "file", where), f"{where}.file")
        fmt = _text(_get(data, "format", where), f"{where}.format")
        raw_inputs = _sequence(_get(data, "inputs", where), f"{where}.inputs")
        raw_outputs = _sequence(_get(data, "outputs", where), f"{where}.outputs")
        # An entry with one input and no roles (older manifests) means that input is the input.
        only_input = len(raw_inputs) == 1 and "role" not in (raw_inputs[0] or {})
        inputs = tuple(
            TensorSpec.from_dict(t, f"{where}.inputs[{i}]", INPUT_ROLE if only_input else None)
            for i, t in enumerate(raw_inputs)
        )
        outputs = tuple(TensorSpec.from_dict(t, f"{where}.outputs[{i}]") for i, t in enumerate(raw_outputs))
        size = data.get("size_bytes")
        opset = data.get("opset")
        tolerance = data.get("golden_tolerance")
        quantization = data.get("quantization")
        conversion = data.get("conversion")
        return cls(
            name=name,
            file=file,
            format=fmt,
            precision=_precision_of(data, fmt, where),
            runtime=_runtime_of(data, fmt, file, where),
            sha256=_text(_get(data, "sha256", where), f"{where}.sha256"),
            inputs=inputs,
            outputs=outputs,
            size_bytes=None if size is None else _integer(size, f"{where}.size_bytes", 0),
            opset=None if opset is None else _integer(opset, f"{where}.opset", 1),
            quantization=None if quantization is None else _mapping(quantization, f"{where}.quantization"),
            conversion=None if conversion is None else _mapping(conversion, f"{where}.conversion"),
            golden_tolerance=None
            if not tolerance
            else GoldenTolerance.from_dict(tolerance, f"{where}.golden_tolerance"),
            extra={k: v for k, v in _known(cls, data).items() if k != "int8"},
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "format": self.format,
            "precision": self.precision,
            "runtime": self.runtime,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "opset": self.opset,
            "quantization": self.quantization,
            "conversion": self.conversion,
            "golden_tolerance": None if self.golden_tolerance is None else self.golden_tolerance.to_dict(),
        }
        return {**self.extra, **data}


# ----------------------------------------------------------------------------- descriptive blocks


@dataclass(frozen=True)
class FileRecord:
    """A file of the bundle and the hash it must have."""

    sha256: str
    size_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class GoldenInfo:
    """Where the golden set is and what it holds (preprocessed inputs and FP32 reference outputs)."""

    file: str = GOLDEN_NAME
    images: int | None = None
    files: tuple[str, ...] = ()
    reference: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GoldenInfo:
        data = _mapping(data, where)
        images = data.get("images")
        return cls(
            file=_file_name(data.get("file", GOLDEN_NAME), f"{where}.file"),
            images=None if images is None else _integer(images, f"{where}.images", 1),
            files=tuple(str(f) for f in _sequence(data.get("files") or [], f"{where}.files")),
            reference=_opt_text(data.get("reference"), f"{where}.reference"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "images": self.images,
            "files": list(self.files),
            "reference": self.reference,
        }


@dataclass(frozen=True)
class CamInfo:
    """Where the classifier weights of the class activation map are, and how the head pools."""

    file: str = CLASSIFIER_NAME
    pooling: Literal["mean", "max"] = "mean"
    note: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> CamInfo:
        data = _mapping(data, where)
        return cls(
            file=_file_name(data.get("file", CLASSIFIER_NAME), f"{where}.file"),
            pooling=_choice(data.get("pooling", "mean"), ("mean", "max"), f"{where}.pooling"),  # type: ignore[arg-type]
            note=_opt_text(data.get("note"), f"{where}.note"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "pooling": self.pooling, "note": self.note}


@dataclass(frozen=True)
class Provenance:
    """Where the model came from: checkpoint, training data set, versions, export time."""

    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_epoch: int | None = None
    training_dataset: str | None = None
    training_data_root: str | None = None
    trained_with_cxr_edge: str | None = None
    exported_with_cxr_edge: str | None = None
    exported_at: str | None = None
    git_commit: str | None = None
    toolchain: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, metadata={"json": "inline"})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Provenance:
        data = _mapping(data, where)
        epoch = data.get("checkpoint_epoch")
        texts = {
            name: _opt_text(data.get(name), f"{where}.{name}")
            for name in (
                "checkpoint",
                "checkpoint_sha256",
                "training_dataset",
                "training_data_root",
                "trained_with_cxr_edge",
                "exported_with_cxr_edge",
                "exported_at",
                "git_commit",
            )
        }
        toolchain = _mapping(data.get("toolchain") or {}, f"{where}.toolchain")
        return cls(
            **texts,
            checkpoint_epoch=None if epoch is None else _integer(epoch, f"{where}.checkpoint_epoch", 0),
            toolchain={str(k): str(v) for k, v in toolchain.items()},
            extra=_known(cls, data),
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["toolchain"] = dict(self.toolchain)
        return {**self.extra, **data}


@dataclass(frozen=True)
class GateFit:
    """A model file's own fit of the feature gate (INT8 files: fitted on their own features)."""

    file: str
    shrinkage: float
    fitted_on: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GateFit:
        data = _mapping(data, where)
        return cls(
            file=_text(_get(data, "file", where), f"{where}.file"),
            shrinkage=_number(_get(data, "shrinkage", where), f"{where}.shrinkage", 0.0, 1.0),
            fitted_on=_text(_get(data, "fitted_on", where), f"{where}.fitted_on"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "shrinkage": self.shrinkage, "fitted_on": self.fitted_on}


@dataclass(frozen=True)
class GateInfo:
    """The learned out-of-distribution gate (:mod:`cxr_core.feature_gate`): its file and thresholds.

    ``thresholds`` maps each model of the bundle to the distance above which an image is refused,
    set on the held-out validation images run through that model at ``acceptance``.
    ``normalization`` says how the pooled features are scaled before the distance: ``l2`` to unit
    length, ``none`` as pooled (absent in bundles exported before it was recorded: ``none``).
    ``file`` holds the gate fitted on the PyTorch FP32 features, which FP32 and FP16 model files use;
    ``model_fits`` maps a model (each INT8 file) to its own fit on its own features (empty in bundles
    exported before it).
    """

    signal: str
    pooling: Literal["mean", "max"]
    shrinkage: float
    acceptance: float
    fitted_on: str
    train_images: int
    validation_images: int
    thresholds: dict[str, float]
    file: str = GATE_NAME
    normalization: Literal["none", "l2"] = "none"
    model_fits: dict[str, GateFit] = field(default_factory=dict)

    def fit_for(self, model_name: str) -> tuple[str, float]:
        """The gate file and shrinkage ``model_name`` runs with: its own fit, or the shared one."""
        own = self.model_fits.get(model_name)
        return (self.file, self.shrinkage) if own is None else (own.file, own.shrinkage)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GateInfo:
        data = _mapping(data, where)
        thresholds = _mapping(_get(data, "thresholds", where), f"{where}.thresholds")
        if not thresholds:
            raise BundleError(f"{where}.thresholds: got an empty object; expected model name -> distance")
        return cls(
            signal=_choice(_get(data, "signal", where), ("feature_mahalanobis",), f"{where}.signal"),
            pooling=_choice(data.get("pooling", "mean"), ("mean", "max"), f"{where}.pooling"),  # type: ignore[arg-type]
            shrinkage=_number(data.get("shrinkage", 0.0), f"{where}.shrinkage", 0.0, 1.0),
            acceptance=_number(_get(data, "acceptance", where), f"{where}.acceptance", 0.5, 1.0),
            fitted_on=_text(_get(data, "fitted_on", where), f"{where}.fitted_on"),
            train_images=_integer(_get(data, "train_images", where), f"{where}.train_images", 2),
            validation_images=_integer(
                _get(data, "validation_images", where), f"{where}.validation_images", 1
            ),
            thresholds={
                str(name): _number(value, f"{where}.thresholds.{name}", 0.0)
                for name, value in thresholds.items()
            },
            file=_text(data.get("file", GATE_NAME), f"{where}.file"),
            normalization=_choice(  # type: ignore[arg-type]
                data.get("normalization", "none"), ("none", "l2"), f"{where}.normalization"
            ),
            model_fits={
                str(name): GateFit.from_dict(fit, f"{where}.model_fits.{name}")
                for name, fit in _mapping(data.get("model_fits", {}), f"{where}.model_fits").items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "pooling": self.pooling,
            "normalization": self.normalization,
            "shrinkage": self.shrinkage,
            "acceptance": self.acceptance,
            "fitted_on": self.fitted_on,
            "train_images": self.train_images,
            "validation_images": self.validation_images,
            "thresholds": dict(self.thresholds),
            "file": self.file,
            "model_fits": {name: fit.to_dict() for name, fit in self.model_fits.items()},
        }


#: The autoencoder signal's name (cxr_core.autoencoder_gate.SIGNAL).
AUTOENCODER_SIGNAL = "autoencoder_ssim"
#: The role of the autoencoder's output tensor.
RECONSTRUCTION_ROLE = "reconstruction"


@dataclass(frozen=True)
class AutoencoderFile:
    """One exported file of the gate's autoencoder (:mod:`cxr_core.autoencoder_gate`).

    ``golden_ssim`` is the reconstruction SSIM this very file gave at export on the bundle's golden
    inputs (downscaled as on the device); ``cxr-export verify`` re-runs it within ``golden_tolerance``.
    Its sha256 is in the manifest's ``files`` table, like every bundle file.
    """

    file: str
    format: str
    precision: Precision
    runtime: str
    input: TensorSpec
    output: TensorSpec
    golden_ssim: tuple[float, ...]
    golden_tolerance: float
    quantization: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> AutoencoderFile:
        data = _mapping(data, where)
        golden = _sequence(_get(data, "golden_ssim", where), f"{where}.golden_ssim")
        quantization = data.get("quantization")
        return cls(
            file=_file_name(_get(data, "file", where), f"{where}.file"),
            format=_choice(_get(data, "format", where), list(FORMATS), f"{where}.format"),
            precision=_choice(_get(data, "precision", where), PRECISIONS, f"{where}.precision"),  # type: ignore[arg-type]
            runtime=_choice(_get(data, "runtime", where), RUNTIME_FAMILIES, f"{where}.runtime"),
            input=TensorSpec.from_dict(_get(data, "input", where), f"{where}.input", INPUT_ROLE),
            output=TensorSpec.from_dict(_get(data, "output", where), f"{where}.output", RECONSTRUCTION_ROLE),
            golden_ssim=tuple(
                _number(v, f"{where}.golden_ssim[{i}]", -1.0, 1.0) for i, v in enumerate(golden)
            ),
            golden_tolerance=_number(
                _get(data, "golden_tolerance", where), f"{where}.golden_tolerance", 0.0, 1.0
            ),
            quantization=None if quantization is None else _mapping(quantization, f"{where}.quantization"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "precision": self.precision,
            "runtime": self.runtime,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "golden_ssim": [round(v, 6) for v in self.golden_ssim],
            "golden_tolerance": self.golden_tolerance,
            "quantization": self.quantization,
        }


@dataclass(frozen=True)
class AutoencoderInfo:
    """The gate's convolutional autoencoder, scored by reconstruction SSIM (Chester-style).

    ``files`` maps an autoencoder format (``onnx``, ``onnx-int8``, ``tflite``, ``tflite-int8``) to
    its file; ``models`` maps each classifier model of the bundle to the autoencoder format it runs
    with (same runtime, same precision when there is one); ``thresholds`` maps each classifier model
    to the SSIM below which an image is refused, set on the held-out validation images run through
    that autoencoder file at ``acceptance``.
    """

    input_size: int
    input_from: str
    files: dict[str, AutoencoderFile]
    models: dict[str, str]
    thresholds: dict[str, float]
    acceptance: float
    epochs: int
    #: The seed of the fit kept: the one asked for, or a later one when a fit stalled at drawing the
    #: training images' mean image (quantize/autoencoder_export.py).
    seed: int
    train_images: int
    validation_images: int
    fitted_on: str
    #: Gaussian sigma (px at ``input_size``) applied to image and reconstruction before the SSIM.
    smoothing: float = 1.0
    signal: str = AUTOENCODER_SIGNAL

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> AutoencoderInfo:
        data = _mapping(data, where)
        raw_files = _mapping(_get(data, "files", where), f"{where}.files")
        if not raw_files:
            raise BundleError(f"{where}.files: got an empty object; expected format -> autoencoder file")
        files = {
            _choice(name, list(FORMATS), f"{where}.files key"): AutoencoderFile.from_dict(
                value, f"{where}.files.{name}"
            )
            for name, value in raw_files.items()
        }
        models = {
            str(name): _choice(value, list(files), f"{where}.models.{name}")
            for name, value in _mapping(_get(data, "models", where), f"{where}.models").items()
        }
        thresholds = {
            str(name): _number(value, f"{where}.thresholds.{name}", -1.0, 1.0)
            for name, value in _mapping(_get(data, "thresholds", where), f"{where}.thresholds").items()
        }
        unset = sorted(set(models) - set(thresholds))
        if unset:
            raise BundleError(
                f"{where}.thresholds: no threshold for model(s) {unset}; expected one per model"
            )
        return cls(
            input_size=_integer(_get(data, "input_size", where), f"{where}.input_size", 8),
            input_from=_text(_get(data, "input_from", where), f"{where}.input_from"),
            files=files,
            models=models,
            thresholds=thresholds,
            acceptance=_number(_get(data, "acceptance", where), f"{where}.acceptance", 0.5, 1.0),
            epochs=_integer(_get(data, "epochs", where), f"{where}.epochs", 1),
            seed=_integer(_get(data, "seed", where), f"{where}.seed", 0),
            train_images=_integer(_get(data, "train_images", where), f"{where}.train_images", 1),
            validation_images=_integer(
                _get(data, "validation_images", where), f"{where}.validation_images", 1
            ),
            fitted_on=_text(_get(data, "fitted_on", where), f"{where}.fitted_on"),
            smoothing=_number(_get(data, "smoothing", where), f"{where}.smoothing", 0.0, 8.0),
            signal=_choice(data.get("signal", AUTOENCODER_SIGNAL), (AUTOENCODER_SIGNAL,), f"{where}.signal"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "input_from": self.input_from,
            "files": {name: f.to_dict() for name, f in self.files.items()},
            "models": dict(self.models),
            "thresholds": dict(self.thresholds),
            "acceptance": self.acceptance,
            "epochs": self.epochs,
            "seed": self.seed,
            "train_images": self.train_images,
            "validation_images": self.validation_images,
            "fitted_on": self.fitted_on,
            "smoothing": self.smoothing,
            "signal": self.signal,
        }


@dataclass(frozen=True)
class QualityInfo:
    """The image-quality checks (:mod:`cxr_core.image_quality`): their thresholds and template file.

    ``thresholds`` maps each check (``exposure``, ``contrast``, ``polarity``, ``orientation``,
    ``sharpness``, ``framing``; and ``template_fit``, below which polarity and orientation are not
    judged) to its threshold, set on the validation split at
    ``check_acceptance`` (the bundle's ``acceptance`` shared among the checks) and never tighter
    than the check's clear-case bound; ``file`` holds the 64 px template (mean training image).
    """

    acceptance: float
    check_acceptance: float
    fitted_on: str
    train_images: int
    validation_images: int
    thresholds: dict[str, float]
    file: str = QUALITY_NAME

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> QualityInfo:
        data = _mapping(data, where)
        thresholds = _mapping(_get(data, "thresholds", where), f"{where}.thresholds")
        if not thresholds:
            raise BundleError(f"{where}.thresholds: got an empty object; expected check name -> threshold")
        return cls(
            acceptance=_number(_get(data, "acceptance", where), f"{where}.acceptance", 0.5, 1.0),
            check_acceptance=_number(
                _get(data, "check_acceptance", where), f"{where}.check_acceptance", 0.5, 1.0
            ),
            fitted_on=_text(_get(data, "fitted_on", where), f"{where}.fitted_on"),
            train_images=_integer(_get(data, "train_images", where), f"{where}.train_images", 1),
            validation_images=_integer(
                _get(data, "validation_images", where), f"{where}.validation_images", 1
            ),
            thresholds={
                str(name): _number(value, f"{where}.thresholds.{name}") for name, value in thresholds.items()
            },
            file=_text(data.get("file", QUALITY_NAME), f"{where}.file"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "acceptance": self.acceptance,
            "check_acceptance": self.check_acceptance,
            "fitted_on": self.fitted_on,
            "train_images": self.train_images,
            "validation_images": self.validation_images,
            "thresholds": dict(self.thresholds),
            "file": self.file,
        }


@dataclass(frozen=True)
class GateValidationModel:
    """One model file's learned gate over the validation images: how many it refused, and by which signal."""

    images: int
    refused: int
    false_refusal_rate: float
    #: Images each signal refused (an image refused by two signals counts for both).
    refused_by_signal: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GateValidationModel:
        data = _mapping(data, where)
        by_signal = _mapping(data.get("refused_by_signal") or {}, f"{where}.refused_by_signal")
        return cls(
            images=_integer(_get(data, "images", where), f"{where}.images", 0),
            refused=_integer(_get(data, "refused", where), f"{where}.refused", 0),
            false_refusal_rate=_number(
                _get(data, "false_refusal_rate", where), f"{where}.false_refusal_rate", 0.0, 1.0
            ),
            refused_by_signal={
                str(k): _integer(v, f"{where}.refused_by_signal.{k}", 0) for k, v in by_signal.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "refused": self.refused,
            "false_refusal_rate": self.false_refusal_rate,
            "refused_by_signal": dict(self.refused_by_signal),
        }


@dataclass(frozen=True)
class GateValidation:
    """The bundle's whole learned gate (every signal) run over its validation images at export.

    Per model file the false refusal rate measured by ``cxr-export`` (``quantize/gate_check.py``);
    ``enforced``: the export refused to publish a bundle with a rate above ``max_false_refusal_rate``.
    """

    images: str
    max_false_refusal_rate: float
    enforced: bool
    models: dict[str, GateValidationModel]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> GateValidation:
        data = _mapping(data, where)
        models = _mapping(_get(data, "models", where), f"{where}.models")
        return cls(
            images=_text(_get(data, "images", where), f"{where}.images"),
            max_false_refusal_rate=_number(
                _get(data, "max_false_refusal_rate", where), f"{where}.max_false_refusal_rate", 0.0, 1.0
            ),
            enforced=bool(data.get("enforced", True)),
            models={
                str(name): GateValidationModel.from_dict(row, f"{where}.models.{name}")
                for name, row in models.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "max_false_refusal_rate": self.max_false_refusal_rate,
            "enforced": self.enforced,
            "models": {name: row.to_dict() for name, row in self.models.items()},
        }


@dataclass(frozen=True)
class RevisionInfo:
    """A revision of a bundle made on site by ``cxr-calibrate``: who, when, on what, and what it replaced.

    The exported bundle is revision 1 (no ``revision`` block). Model files are the parent's, byte
    for byte; what changes is the operating points, the calibration they define and the validation
    figures, now measured on the site's images.
    """

    number: int
    site: str
    created_at: str
    images: int
    refused: int
    parent: str
    parent_manifest_sha256: str
    previous_operating_points: tuple[float, ...] | None
    kept: tuple[str, ...]
    tool: str
    #: The model of the bundle that scored the site images (e.g. ``onnx-int8``), its file and runtime:
    #: the operating points are set on that model's outputs (None: not recorded, as in older revisions,
    #: whose manifests lack the keys and still validate).
    model: str | None = field(default=None, metadata={"json": "optional"})
    model_file: str | None = field(default=None, metadata={"json": "optional"})
    runtime: str | None = field(default=None, metadata={"json": "optional"})

    def describe(self) -> str:
        """``rev 2 (Clinic A, 2026-05-01)``: how the app, ``cxr-predict`` and the notes name a revision."""
        return f"rev {self.number} ({self.site}, {self.created_at[:10]})"

    def scored_with(self) -> str | None:
        """``onnx-int8 (model-int8.onnx) on onnxruntime``: the model that set the points, when recorded."""
        if self.model is None:
            return None
        file = f" ({self.model_file})" if self.model_file else ""
        runtime = f" on {self.runtime}" if self.runtime else ""
        return f"{self.model}{file}{runtime}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> RevisionInfo:
        data = _mapping(data, where)
        previous = data.get("previous_operating_points")
        return cls(
            number=_integer(_get(data, "number", where), f"{where}.number", 2),
            site=_text(_get(data, "site", where), f"{where}.site"),
            created_at=_text(_get(data, "created_at", where), f"{where}.created_at"),
            images=_integer(_get(data, "images", where), f"{where}.images", 0),
            refused=_integer(data.get("refused", 0), f"{where}.refused", 0),
            parent=_text(_get(data, "parent", where), f"{where}.parent"),
            parent_manifest_sha256=_text(
                _get(data, "parent_manifest_sha256", where), f"{where}.parent_manifest_sha256"
            ),
            previous_operating_points=None
            if previous is None
            else tuple(
                _number(p, f"{where}.previous_operating_points[{i}]", 0.0, 1.0)
                for i, p in enumerate(_sequence(previous, f"{where}.previous_operating_points"))
            ),
            kept=tuple(str(k) for k in _sequence(data.get("kept") or [], f"{where}.kept")),
            tool=str(data.get("tool") or "cxr-calibrate"),
            model=_opt_text(data.get("model"), f"{where}.model"),
            model_file=_opt_text(data.get("model_file"), f"{where}.model_file"),
            runtime=_opt_text(data.get("runtime"), f"{where}.runtime"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "site": self.site,
            "created_at": self.created_at,
            "images": self.images,
            "refused": self.refused,
            "parent": self.parent,
            "parent_manifest_sha256": self.parent_manifest_sha256,
            "previous_operating_points": None
            if self.previous_operating_points is None
            else list(self.previous_operating_points),
            "kept": list(self.kept),
            "tool": self.tool,
            "model": self.model,
            "model_file": self.model_file,
            "runtime": self.runtime,
        }


# ----------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class Manifest:
    """A bundle's ``manifest.json``, typed.

    The device reads ``architecture``, ``labels``, ``preprocess``, ``models``, ``files``,
    ``operating_points``, ``recommended``, ``golden`` and ``cam``. ``parity``, ``export_report``,
    ``calibration``, ``model_config`` and ``outputs`` describe the export for people and reports;
    they are kept as JSON objects.
    """

    architecture: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    models: tuple[ModelEntry, ...]
    files: dict[str, FileRecord]
    format_version: int = BUNDLE_FORMAT_VERSION
    name: str | None = None
    version: str | None = None
    operating_points: tuple[float, ...] | None = None
    operating_points_source: str | None = None
    recommended: dict[str, str] = field(default_factory=dict)
    golden: GoldenInfo = field(default_factory=GoldenInfo)
    cam: CamInfo = field(default_factory=CamInfo)
    provenance: Provenance = field(default_factory=Provenance)
    clinical: ClinicalInfo | None = None
    revision: RevisionInfo | None = None
    gate: GateInfo | None = None
    quality: QualityInfo | None = None
    autoencoder: AutoencoderInfo | None = None
    #: The learned gate's false refusal rate on the validation images, per model (cxr-export).
    gate_validation: GateValidation | None = None
    model_config: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    export_report: list[dict[str, Any]] | None = None
    calibration: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, metadata={"json": "inline"})

    def model(self, name: str, where: str = "the manifest") -> ModelEntry:
        """The model entry called ``name``; ``where`` names the bundle in the error."""
        for entry in self.models:
            if entry.name == name:
                return entry
        raise BundleError(f"{where} has no model {name!r}; it has {[m.name for m in self.models]}")

    def with_files(self, files: Mapping[str, FileRecord]) -> Manifest:
        """This manifest with its file table and each model's sha256 and size taken from ``files``."""
        models = []
        for entry in self.models:
            record = files.get(entry.file)
            if record is None:
                raise BundleError(
                    f"model {entry.name!r}: file {entry.file!r} is not among the bundle's files"
                )
            models.append(replace(entry, sha256=record.sha256, size_bytes=record.size_bytes))
        return replace(self, files=dict(files), models=tuple(models))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = MANIFEST_NAME) -> Manifest:
        data = _mapping(data, where)
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise BundleError(
                f"{where}.format_version: got {version!r} ({type(version).__name__}); expected an integer, "
                f"one of {list(READABLE_VERSIONS)}"
            )
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"{where} has format_version {version!r}; this cxr-edge reads format_version "
                f"{list(READABLE_VERSIONS)}. Re-export the bundle with a matching cxr-edge, "
                "or update the app."
            )
        labels = tuple(
            _text(x, f"{where}.labels[{i}]")
            for i, x in enumerate(_sequence(_get(data, "labels", where), f"{where}.labels"))
        )
        if not labels:
            raise BundleError(f"{where}.labels: got an empty list; expected the findings in output order")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise BundleError(
                f"{where}.labels: {repeated} appear more than once in {list(labels)}; "
                "expected each finding once"
            )
        try:
            spec = PreprocessSpec.from_dict(_mapping(_get(data, "preprocess", where), f"{where}.preprocess"))
        except (PreprocessSpecError, TypeError, ValueError, OverflowError) as exc:
            raise BundleError(f"{where}.preprocess: {exc}") from exc
        raw_models = _sequence(_get(data, "models", where), f"{where}.models")
        if not raw_models:
            raise BundleError(f"{where}.models: got an empty list; expected at least one model file")
        models = tuple(ModelEntry.from_dict(m, f"{where}.models[{i}]") for i, m in enumerate(raw_models))
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise BundleError(f"{where}.models: model names {names} repeat; expected each name once")
        files = _files(_get(data, "files", where), f"{where}.files")
        points = data.get("operating_points")
        if points is not None:
            points = tuple(
                _number(p, f"{where}.operating_points[{i}]", 0.0, 1.0)
                for i, p in enumerate(_sequence(points, f"{where}.operating_points"))
            )
            if len(points) != len(labels):
                raise BundleError(
                    f"{where}.operating_points: {len(points)} values for {len(labels)} labels; "
                    "expected one each"
                )
        recommended = _mapping(data.get("recommended") or {}, f"{where}.recommended")
        for family, model_name in list(recommended.items()):
            _choice(family, RUNTIME_FAMILIES, f"{where}.recommended key")
            if model_name not in names:  # a stale recommendation: fall back to the table order
                logger.warning(
                    "%s.recommended.%s names %r, which the bundle lacks (it has %s); ignoring it",
                    where,
                    family,
                    model_name,
                    names,
                )
                del recommended[family]
        export_report = data.get("export_report")
        return cls(
            format_version=BUNDLE_FORMAT_VERSION,
            architecture=_text(_get(data, "architecture", where), f"{where}.architecture"),
            labels=labels,
            preprocess=spec,
            models=models,
            files=files,
            name=_opt_text(data.get("name"), f"{where}.name"),
            version=_opt_text(data.get("version"), f"{where}.version"),
            operating_points=points,
            operating_points_source=_opt_text(
                data.get("operating_points_source"), f"{where}.operating_points_source"
            ),
            recommended={str(k): str(v) for k, v in recommended.items()},
            golden=GoldenInfo.from_dict(data.get("golden") or {}, f"{where}.golden"),
            cam=CamInfo.from_dict(data.get("cam") or {}, f"{where}.cam"),
            provenance=Provenance.from_dict(data.get("provenance") or {}, f"{where}.provenance"),
            clinical=None
            if data.get("clinical") is None
            else ClinicalInfo.from_dict(data["clinical"], f"{where}.clinical"),
            revision=None
            if data.get("revision") is None
            else RevisionInfo.from_dict(data["revision"], f"{where}.revision"),
            gate=None if data.get("gate") is None else GateInfo.from_dict(data["gate"], f"{where}.gate"),
            quality=None
            if data.get("quality") is None
            else QualityInfo.from_dict(data["quality"], f"{where}.quality"),
            autoencoder=None
            if data.get("autoencoder") is None
            else AutoencoderInfo.from_dict(data["autoencoder"], f"{where}.autoencoder"),
            gate_validation=None
            if data.get("gate_validation") is None
            else GateValidation.from_dict(data["gate_validation"], f"{where}.gate_validation"),
            model_config=_optional_mapping(data, "model_config", where),
            outputs=_optional_mapping(data, "outputs", where),
            parity=_optional_mapping(data, "parity", where),
            export_report=None
            if export_report is None
            else [
                _mapping(r, f"{where}.export_report[{i}]")
                for i, r in enumerate(_sequence(export_report, f"{where}.export_report"))
            ],
            calibration=_optional_mapping(data, "calibration", where),
            extra=_known(cls, data),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "operating_points": None if self.operating_points is None else list(self.operating_points),
            "operating_points_source": self.operating_points_source,
            "recommended": dict(self.recommended),
            "golden": self.golden.to_dict(),
            "cam": self.cam.to_dict(),
            "provenance": self.provenance.to_dict(),
            "clinical": None if self.clinical is None else self.clinical.to_dict(),
            "revision": None if self.revision is None else self.revision.to_dict(),
            "gate": None if self.gate is None else self.gate.to_dict(),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "autoencoder": None if self.autoencoder is None else self.autoencoder.to_dict(),
            "gate_validation": None if self.gate_validation is None else self.gate_validation.to_dict(),
            "model_config": self.model_config,
            "outputs": self.outputs,
            "parity": self.parity,
            "export_report": self.export_report,
            "calibration": self.calibration,
            "files": {name: record.to_dict() for name, record in sorted(self.files.items())},
        }
        return {**self.extra, **data}


def _optional_mapping(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = data.get(key)
    return None if value is None else _mapping(value, f"{where}.{key}")


def _files(value: Any, where: str) -> dict[str, FileRecord]:
    raw = _mapping(value, where)
    if not raw:
        raise BundleError(f"{where}: got an empty object; expected name -> sha256 of every bundle file")
    records = {}
    for name, record in raw.items():
        _file_name(name, f"{where} key")
        if isinstance(record, str):  # the shortest form: name -> sha256
            records[name] = FileRecord(sha256=_text(record, f"{where}[{name!r}]"))
            continue
        record = _mapping(record, f"{where}[{name!r}]")
        size = record.get("size_bytes")
        records[name] = FileRecord(
            sha256=_text(_get(record, "sha256", f"{where}[{name!r}]"), f"{where}[{name!r}].sha256"),
            size_bytes=None if size is None else _integer(size, f"{where}[{name!r}].size_bytes", 0),
        )
    return records
