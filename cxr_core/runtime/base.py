"""The Backend interface and the I/O adaptation every runtime shares (numpy only).

A backend runs one model file of a bundle. Callers always hand it the canonical tensor,
``(N, 3, H, W)`` float32 NCHW preprocessed with the bundle's spec, and always get back
``{"probabilities": (N, L) float32, "feature_map": (N, C, h, w) float32 NCHW}``, whatever the
file wants: NHWC layouts, int8/uint8/float16 tensors, a fixed batch of 1, outputs whose names and
order differ per file. The manifest entry's ``inputs``/``outputs`` (docs/bundle-format.md) say
which tensor plays which ``role``; the runtime's own report of each tensor (shape, dtype,
scale/zero-point) is cross-checked against it when the model is opened, so a bundle whose
manifest and file disagree is refused with a message naming both.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle import BundleError
from cxr_core.errors import CxrEdgeError, MissingDependencyError

logger = logging.getLogger(__name__)

#: Roles of the tensors a backend returns; ``input`` is the one tensor it feeds.
OUTPUT_ROLES = ("probabilities", "feature_map")
INPUT_ROLE = "input"
#: The most threads a default backend uses: past 4, CNN inference on small devices stops scaling.
MAX_DEFAULT_THREADS = 4
_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
}


class RuntimeUnavailableError(MissingDependencyError):
    """No installed runtime can run the requested model; the message carries the pip command."""


class UnknownRuntimeError(CxrEdgeError, ValueError):
    """A runtime name that cxr-edge does not know (the message suggests the closest one)."""


class ModelFileError(BundleError):
    """A model file is missing or is not a valid model for the runtime that should run it."""


class ModelSignatureError(BundleError):
    """A model file's inputs/outputs (shape, dtype, scale/zero-point) disagree with its manifest entry."""


class BatchShapeError(CxrEdgeError, ValueError):
    """The batch handed to a backend is not (N, 3, H, W) at the model's input size."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the manifest describes it (refined with what the runtime reports).

    ``shape`` holds ints, with ``None`` for a dynamic axis (the manifest's ``"batch"``).
    ``key`` is how the runtime addresses the tensor (its name for ONNX Runtime, its index for LiteRT).
    """

    name: str
    role: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    layout: str | None = None
    scale: float | None = None
    zero_point: int | None = None
    key: Any = None

    @property
    def quantized(self) -> bool:
        return np.issubdtype(numpy_dtype(self.dtype), np.integer)


@dataclass(frozen=True)
class ModelSignature:
    """What a backend needs from a manifest entry: its name, format, input and outputs by role."""

    name: str
    format: str
    runtime: str | None
    input: TensorSpec
    outputs: dict[str, TensorSpec]

    @property
    def input_size(self) -> int:
        """H (== W) of the model input, read through its layout."""
        shape = self.input.shape
        height, width = (shape[1], shape[2]) if self.input.layout == "NHWC" else (shape[-2], shape[-1])
        if height is None or height != width:
            raise ModelSignatureError(
                f"model {self.name!r}: input shape {list(shape)} ({self.input.layout}) is not square; "
                "expected H == W"
            )
        return int(height)


def numpy_dtype(name: str) -> type[np.generic]:
    """The numpy type of a manifest dtype name (``float32``, ``int8``, ...)."""
    if name not in _DTYPES:
        raise ModelSignatureError(f"tensor dtype {name!r} is not supported; expected one of {list(_DTYPES)}")
    return _DTYPES[name]


def default_threads() -> int:
    """Physical cores this process may use, capped at :data:`MAX_DEFAULT_THREADS`.

    SMT siblings share one core's vector units, so counting them only adds contention. The
    topology is read from /sys where it exists (Linux, Android); elsewhere the logical count is used.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores = {(str(c), "") for c in cpus}
            break
        cores.add((package, core))
    return max(1, min(MAX_DEFAULT_THREADS, len(cores) or 1))


def resolve_threads(threads: int | None) -> int:
    """``threads`` checked (a positive int), or :func:`default_threads` for None."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(
            f"threads must be a positive integer or None (physical cores, max 4); got {threads!r}"
        )
    return int(threads)


# ---------------------------------------------------------------- layout and quantization


def nchw_to_nhwc(array: NDArray[Any]) -> NDArray[Any]:
    """(N, C, H, W) -> (N, H, W, C), contiguous (runtimes read the buffer as is)."""
    return np.ascontiguousarray(np.transpose(array, (0, 2, 3, 1)))


def nhwc_to_nchw(array: NDArray[Any]) -> NDArray[Any]:
    """(N, H, W, C) -> (N, C, H, W), contiguous."""
    return np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2)))


def quantize(values: NDArray[np.floating], scale: float, zero_point: int, dtype: str) -> NDArray[np.integer]:
    """``clip(round(values / scale) + zero_point)`` to ``dtype``'s range (TFLite's affine scheme)."""
    kind = numpy_dtype(dtype)
    info = np.iinfo(kind)
    scaled = np.round(np.asarray(values, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(scaled, info.min, info.max).astype(kind)


def dequantize(values: NDArray[np.integer], scale: float, zero_point: int) -> NDArray[np.float32]:
    """``(values - zero_point) * scale`` as float32."""
    return ((np.asarray(values, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(
        np.float32
    )


def to_runtime(batch: NDArray[np.float32], spec: TensorSpec) -> NDArray[Any]:
    """The canonical NCHW float32 batch in the layout and dtype the file's input wants."""
    array = nchw_to_nhwc(batch) if spec.layout == "NHWC" else batch
    if spec.quantized:
        return quantize(array, _scale(spec), _zero_point(spec), spec.dtype)
    return np.ascontiguousarray(array, dtype=numpy_dtype(spec.dtype))


def from_runtime(array: NDArray[Any], spec: TensorSpec) -> NDArray[np.float32]:
    """A raw output as float32 (dequantized with its own scale/zero-point), 4-D tensors as NCHW."""
    if np.issubdtype(array.dtype, np.integer):
        array = dequantize(array, _scale(spec), _zero_point(spec))
    else:
        array = np.asarray(array, dtype=np.float32)
    if spec.layout == "NHWC" and array.ndim == 4:
        array = nhwc_to_nchw(array)
    return array


def _scale(spec: TensorSpec) -> float:
    if spec.scale is None or not spec.scale > 0:
        raise ModelSignatureError(
            f"tensor {spec.name!r} ({spec.role}) is {spec.dtype} but has no positive scale "
            f"(got {spec.scale!r}); an integer tensor needs its quantization scale and zero point"
        )
    return float(spec.scale)


def _zero_point(spec: TensorSpec) -> int:
    return int(spec.zero_point or 0)


# ---------------------------------------------------------------- manifest entries


def entry_field(entry: Mapping[str, Any] | Any, key: str, default: Any = None) -> Any:
    """``key`` of a manifest entry given as a dict or as a :class:`cxr_core.bundle.ModelEntry`."""
    if isinstance(entry, Mapping):
        return entry.get(key, default)
    return getattr(entry, key, default)


def _shape(raw: Sequence[Any], where: str) -> tuple[int | None, ...]:
    shape: list[int | None] = []
    for dim in raw:
        if isinstance(dim, bool):
            raise ModelSignatureError(f"{where}: shape {list(raw)} holds {dim!r}; expected ints or 'batch'")
        if isinstance(dim, int | np.integer):
            shape.append(int(dim))
        elif isinstance(dim, str) or dim is None:
            shape.append(None)
        else:
            raise ModelSignatureError(f"{where}: shape {list(raw)} holds {dim!r}; expected ints or 'batch'")
    return tuple(shape)


def tensor_spec(data: Mapping[str, Any], role: str, where: str) -> TensorSpec:
    """A :class:`TensorSpec` from one manifest ``inputs``/``outputs`` dict."""
    if "name" not in data or "shape" not in data:
        raise ModelSignatureError(f"{where}: tensor entry {dict(data)} lacks 'name' or 'shape'")
    dtype = str(data.get("dtype", "float32"))
    numpy_dtype(dtype)
    quant = data.get("quantization") or {}
    shape = _shape(data["shape"], where)
    layout = data.get("layout")
    if layout is None and len(shape) == 4:
        layout = "NCHW"
    if layout not in (None, "NCHW", "NHWC"):
        raise ModelSignatureError(
            f"{where}: tensor {data['name']!r} has layout {layout!r}; expected NCHW or NHWC"
        )
    return TensorSpec(
        name=str(data["name"]),
        role=role,
        shape=shape,
        dtype=dtype,
        layout=layout,
        scale=float(quant["scale"]) if "scale" in quant else None,
        zero_point=int(quant["zero_point"]) if "zero_point" in quant else None,
    )


def parse_signature(entry: Mapping[str, Any] | Any, where: str) -> ModelSignature:
    """Input and outputs by role from a manifest entry; entries without ``role`` fall back to the name."""
    fmt = str(entry_field(entry, "format", "") or "")
    name = str(entry_field(entry, "name", "") or fmt or "model")
    inputs = list(entry_field(entry, "inputs", None) or [])
    outputs = list(entry_field(entry, "outputs", None) or [])
    where = f"{where} (model {name!r})"
    roled_inputs = [d for d in inputs if d.get("role") == INPUT_ROLE]
    if len(roled_inputs) == 1:
        raw_input = roled_inputs[0]
    elif not roled_inputs and len(inputs) == 1 and "role" not in inputs[0]:
        raw_input = inputs[0]
    else:
        raise ModelSignatureError(
            f"{where}: expected exactly one input with role 'input' (or one input without a role); "
            f"got {[(d.get('name'), d.get('role')) for d in inputs]}"
        )
    by_role: dict[str, TensorSpec] = {}
    for raw in outputs:
        role = str(raw.get("role") or raw.get("name", ""))
        if role not in OUTPUT_ROLES:
            logger.debug(
                "%s: output %r has role %r; not one this backend returns", where, raw.get("name"), role
            )
            continue
        if role in by_role:
            raise ModelSignatureError(f"{where}: two outputs have role {role!r}; expected one")
        by_role[role] = tensor_spec(raw, role, where)
    if "probabilities" not in by_role:
        raise ModelSignatureError(
            f"{where}: no output has role 'probabilities' (or that name); got "
            f"{[(d.get('name'), d.get('role')) for d in outputs]}"
        )
    runtime = entry_field(entry, "runtime", None)
    return ModelSignature(
        name=name,
        format=fmt,
        runtime=str(runtime) if runtime else None,
        input=tensor_spec(raw_input, INPUT_ROLE, where),
        outputs=by_role,
    )


def check_tensor(
    spec: TensorSpec,
    shape: Sequence[int | None],
    dtype: str,
    path: str | Path,
    scale: float | None = None,
    zero_point: int | None = None,
) -> TensorSpec:
    """Cross-check what the runtime reports for a tensor against the manifest; return the refined spec.

    Fixed dimensions must agree (a dynamic one on either side matches anything); the dtype must
    agree; an integer tensor's scale/zero-point from the file win, and must equal the manifest's
    when it records them.
    """
    label = f"{path}: tensor {spec.name!r} ({spec.role})"
    shape = tuple(shape)
    if len(shape) != len(spec.shape) or any(
        a is not None and b is not None and a != b for a, b in zip(spec.shape, shape, strict=True)
    ):
        raise ModelSignatureError(
            f"{label} has shape {_show(shape)} in the file; the manifest says {_show(spec.shape)}. "
            "The manifest and the model file do not belong together: re-export the bundle"
        )
    if dtype != spec.dtype:
        raise ModelSignatureError(f"{label} is {dtype} in the file; the manifest says {spec.dtype}")
    refined = replace(
        spec, shape=tuple(b if b is not None else a for a, b in zip(spec.shape, shape, strict=True))
    )
    if scale is None or not np.issubdtype(numpy_dtype(dtype), np.integer):
        return refined
    if spec.scale is not None and not np.isclose(spec.scale, scale, rtol=1e-5, atol=0.0):
        raise ModelSignatureError(
            f"{label} has scale {scale!r} in the file; the manifest says {spec.scale!r}"
        )
    if spec.zero_point is not None and zero_point is not None and spec.zero_point != zero_point:
        raise ModelSignatureError(
            f"{label} has zero point {zero_point} in the file; the manifest says {spec.zero_point}"
        )
    return replace(refined, scale=float(scale), zero_point=int(zero_point or 0))


def _show(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"


# ---------------------------------------------------------------- the interface


class Backend(ABC):
    """One opened model file. Call it with a canonical batch; it adapts the tensors to the file.

    Subclasses open the runtime, set :attr:`signature` (specs refined with the runtime's own
    report, ``key`` = how the runtime addresses each tensor) and :attr:`fixed_batch` (an int when
    the file only takes that batch size), and implement :meth:`_run`.
    """

    runtime: str
    model_name: str
    threads: int
    input_size: int
    path: Path
    signature: ModelSignature
    fixed_batch: int | None = None
    load_ms: float = 0.0
    _closed: bool = False

    def __init__(self, path: str | Path, signature: ModelSignature, threads: int) -> None:
        self.path = Path(path)
        self.signature = signature
        self.model_name = signature.name
        self.threads = threads
        self.input_size = signature.input_size
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise ModelFileError(f"model file {self.path} does not exist; expected a {signature.format} file")

    @property
    def format(self) -> str:
        return self.signature.format

    @abstractmethod
    def _run(self, batch: NDArray[Any]) -> dict[str, NDArray[Any]]:
        """Raw outputs by role for a runtime-ready batch (layout and dtype already adapted)."""

    def close(self) -> None:
        """Release the runtime's resources; the backend cannot be called afterwards."""
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model_name!r}, runtime={self.runtime!r}, "
            f"threads={self.threads}, path={str(self.path)!r})"
        )

    def __call__(self, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """``batch`` (N, 3, H, W) float32 NCHW -> ``probabilities`` (N, L), ``feature_map`` (N, C, h, w)."""
        if self._closed:
            raise RuntimeError(f"model {self.model_name!r} ({self.path}) was closed; open it again to run it")
        batch = self._check_batch(batch)
        ready = to_runtime(batch, self.signature.input)
        chunk = self.fixed_batch or len(ready)
        parts: dict[str, list[NDArray[np.float32]]] = {role: [] for role in self.signature.outputs}
        with self._lock:
            for start in range(0, len(ready), chunk):
                piece = ready[start : start + chunk]
                count = len(piece)
                if count < chunk:
                    pad = np.zeros((chunk - count, *piece.shape[1:]), dtype=piece.dtype)
                    piece = np.concatenate([piece, pad])
                raw = self._run(piece)
                for role, spec in self.signature.outputs.items():
                    parts[role].append(from_runtime(raw[role][:count], spec))
        return {role: np.concatenate(arrays) for role, arrays in parts.items()}

    def _check_batch(self, batch: NDArray[Any]) -> NDArray[np.float32]:
        array = np.asarray(batch)
        size = self.input_size
        if array.ndim != 4 or array.shape[1] != 3 or array.shape[2:] != (size, size) or len(array) == 0:
            raise BatchShapeError(
                f"model {self.model_name!r} ({self.path.name}) got a batch of shape {array.shape}; expected "
                f"(N, 3, {size}, {size}) float32 NCHW with N >= 1, preprocessed with the bundle's spec"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise BatchShapeError(
                f"model {self.model_name!r} got a {array.dtype} batch; expected float32 preprocessed tensors"
            )
        return np.ascontiguousarray(array, dtype=np.float32)


class Stopwatch:
    """Milliseconds since construction (load time of a backend)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._start) * 1000.0
