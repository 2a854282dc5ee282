"""Torch-free inference backends: ONNX Runtime and LiteRT (with tflite_runtime / TensorFlow fallbacks).

Only numpy and the standard library are imported here; each runtime is imported when a backend is
opened. See docs/runtime.md.

>>> from cxr_core.bundle import load_bundle
>>> from cxr_core.runtime import open_backend
>>> backend = open_backend(load_bundle("bundle"))          # doctest: +SKIP
>>> outputs = backend(batch)  # {"probabilities": (N, L), "feature_map": (N, C, h, w)}  # doctest: +SKIP
"""

from cxr_core.runtime.base import (
    Backend,
    BatchShapeError,
    ModelFileError,
    ModelSignatureError,
    RuntimeUnavailableError,
    UnknownRuntimeError,
    default_threads,
)
from cxr_core.runtime.select import available_runtimes, choose_model, open_backend, open_model

__all__ = [
    "Backend",
    "BatchShapeError",
    "ModelFileError",
    "ModelSignatureError",
    "RuntimeUnavailableError",
    "UnknownRuntimeError",
    "available_runtimes",
    "choose_model",
    "default_threads",
    "open_backend",
    "open_model",
]
