"""Adapt the canonical NCHW float32 batch to what a model file wants, and its outputs back (numpy only).

Layout (NCHW <-> NHWC) and affine quantization (``q = clip(round(x / scale) + zero_point)``) of a
:class:`~cxr_core.bundle.schema.TensorSpec`: every backend, the Android adapter included, goes
through these functions, so a format is read the same way everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.schema import DTYPES, TensorSpec
from cxr_core.runtime.errors import ModelSignatureError


def numpy_dtype(name: str) -> type[np.generic]:
    """The numpy type of a manifest dtype name (``float32``, ``int8``, ...)."""
    if name not in DTYPES:
        raise ModelSignatureError(f"tensor dtype {name!r} is not supported; expected one of {list(DTYPES)}")
    return DTYPES[name]


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
