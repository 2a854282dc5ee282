"""Torch-free inference backends: ONNX Runtime and LiteRT (with tflite_runtime / TensorFlow fallbacks).

Only numpy and the standard library are imported here; each runtime is imported when a backend is
opened. See docs/runtime.md. The modules, one concern each:

* :mod:`~cxr_core.runtime.backend`: the :class:`Backend` interface every runtime implements;
* :mod:`~cxr_core.runtime.signature`: a model entry's input/outputs by role, cross-checked with the file;
* :mod:`~cxr_core.runtime.tensors`: layout and quantization adaptation (numpy);
* :mod:`~cxr_core.runtime.threads`: the thread policy;
* :mod:`~cxr_core.runtime.settings`: thread-pool spinning/affinity, graph optimisation, XNNPACK;
* :mod:`~cxr_core.runtime.tuning`: the per-device choice cached by ``edge-bench --tune``;
* :mod:`~cxr_core.runtime.select`: which runtime and which model file to open;
* :mod:`~cxr_core.runtime.errors`: the runtime layer's errors.

>>> from cxr_core.bundle import load_bundle
>>> from cxr_core.runtime import open_backend
>>> backend = open_backend(load_bundle("bundle"))          # doctest: +SKIP
>>> outputs = backend(batch)  # {"probabilities": (N, L), "feature_map": (N, C, h, w)}  # doctest: +SKIP
"""

from cxr_core.runtime.backend import Backend
from cxr_core.runtime.errors import (
    BackendClosedError,
    BatchShapeError,
    ModelFileError,
    ModelSignatureError,
    RuntimeUnavailableError,
    ThreadCountError,
    UnknownRuntimeError,
)
from cxr_core.runtime.select import available_runtimes, choose_model, open_backend, open_model
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings, RuntimeSettingsError
from cxr_core.runtime.threads import default_threads, resolve_threads

__all__ = [
    "DEFAULT_SETTINGS",
    "Backend",
    "RuntimeSettings",
    "RuntimeSettingsError",
    "BackendClosedError",
    "BatchShapeError",
    "ModelFileError",
    "ModelSignatureError",
    "RuntimeUnavailableError",
    "ThreadCountError",
    "UnknownRuntimeError",
    "available_runtimes",
    "choose_model",
    "default_threads",
    "open_backend",
    "open_model",
    "resolve_threads",
]
