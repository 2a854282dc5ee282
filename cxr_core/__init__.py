"""cxr-edge core: the torch-free device side (numpy + Pillow, pydicom optional).

Decoding, the one preprocessing, the model bundle, the runtimes, calibration, class activation
maps and the input gate. Runs on a Raspberry Pi or a phone. It never imports torch, onnx,
tensorflow or kivy.

The public API is what this package exports (``cxr_core.__all__``); everything else is internal
and may change between versions::

    from cxr_core import Predictor

    predictor = Predictor.load("bundles/chexnet")
    prediction = predictor.predict_file("scan.png")
    for finding in prediction.ranked()[:3]:
        print(finding.label, finding.score)

or step by step, with the same functions the Predictor uses::

    from cxr_core import InputGate, decode_image, load_bundle, preprocess

    bundle = load_bundle("bundles/chexnet")
    image = decode_image("scan.png")
    InputGate().enforce(image, "scan.png")     # raises ImageRefusedError with the reasons
    tensor = preprocess(image.pixels, bundle.spec)

Names are imported on first use (the preprocessing, which everything needs, at once), so
``import cxr_core`` stays cheap for the training side.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from cxr_core.privacy import disable_telemetry  # noqa: E402

# Before any onnxruntime import of this project: onnxruntime reads ORT_DISABLE_TELEMETRY when it
# is imported, and its telemetry otherwise contacts Microsoft (cxr_core.privacy, docs/runtime.md).
disable_telemetry()

# The function ``preprocess`` shares its name with its module: bind the function now, or the first
# ``import cxr_core.preprocess`` anywhere would leave the module under ``cxr_core.preprocess``.
from cxr_core.preprocess import PreprocessSpec, preprocess  # noqa: E402

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Predictor": "cxr_core.predictor",
    "Prediction": "cxr_core.predictor",
    "FindingResult": "cxr_core.predictor",
    "load_bundle": "cxr_core.bundle",
    "Bundle": "cxr_core.bundle",
    "Manifest": "cxr_core.bundle",
    "ModelEntry": "cxr_core.bundle",
    "decode_image": "cxr_core.imaging",
    "DecodedImage": "cxr_core.imaging",
    "InputGate": "cxr_core.input_gate",
    "ImageRefusedError": "cxr_core.input_gate",
    "open_backend": "cxr_core.runtime",
    "run_selftest": "cxr_core.selftest",
    "CxrEdgeError": "cxr_core.errors",
    "BundleError": "cxr_core.bundle",
    "ImageDecodeError": "cxr_core.errors",
    "MissingDependencyError": "cxr_core.errors",
    "FORMATS": "cxr_core.formats",
}

__all__ = ["__version__", "PreprocessSpec", "preprocess", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cxr_core' has no attribute {name!r}; the public API is {__all__}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
