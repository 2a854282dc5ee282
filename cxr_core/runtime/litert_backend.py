"""LiteRT backend for .tflite files: ai-edge-litert with XNNPACK, or a fallback interpreter.

``ai_edge_litert.interpreter.Interpreter`` is the maintained TFLite interpreter (cp311 wheels for
x86_64 and aarch64) and applies the XNNPACK delegate by default. Two fallbacks run the same files,
each with a logged warning saying why it is worse: ``tflite_runtime`` (last release 2.14, needs
numpy<2, runs INT8 without XNNPACK at 2-4x the latency) and TensorFlow's own ``tf.lite.Interpreter``
(deprecated in favour of LiteRT, and a ~1 GB dependency that is slow to import).

Tensors are allocated once; a file with a dynamic batch axis is resized only when the batch size
changes; a file with a fixed batch runs the batch in chunks of that size (the Backend base loops).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.schema import TensorSpec
from cxr_core.errors import MissingDependencyError
from cxr_core.optional import install_hint, require
from cxr_core.runtime.backend import Backend, Stopwatch
from cxr_core.runtime.errors import (
    ModelFileError,
    ModelSignatureError,
    RuntimeUnavailableError,
    UnknownRuntimeError,
)
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings
from cxr_core.runtime.signature import ModelSignature, check_tensor

logger = logging.getLogger(__name__)

#: runtime name -> (module, dotted attribute of the Interpreter class, why it is worse or None).
INTERPRETERS: dict[str, tuple[str, str, str | None]] = {
    "litert": ("ai_edge_litert.interpreter", "Interpreter", None),
    "tflite_runtime": (
        "tflite_runtime.interpreter",
        "Interpreter",
        "tflite_runtime is unmaintained (last release 2.14, which needs numpy<2) and runs INT8 models "
        "without XNNPACK, at 2-4x the latency of ai-edge-litert",
    ),
    "tensorflow": (
        "tensorflow",
        "lite.Interpreter",
        "tf.lite.Interpreter is deprecated in favour of ai-edge-litert, TensorFlow is a ~1 GB dependency "
        "that takes seconds to import, and its default XNNPACK delegate gave wrong outputs here "
        "(TensorFlow 2.21), so it runs without XNNPACK: slower",
    ),
}


def _resolve(module: Any, dotted: str) -> Any:
    found = module
    for part in dotted.split("."):
        found = getattr(found, part)
    return found


def open_interpreter(runtime: str, path: Path, threads: int, xnnpack: bool = True) -> Any:
    """An allocated Interpreter of ``runtime`` for ``path`` (warning when it is a fallback).

    ``xnnpack=False`` opens it without the default XNNPACK delegate (built-in kernels only).
    Raises RuntimeUnavailableError when the runtime does not import, and ModelFileError when the
    file is not a TFLite model.
    """
    module_name, attribute, drawback = INTERPRETERS[runtime]
    try:
        module = require(module_name, extra="runtime", purpose=f"running .tflite models with {runtime}")
        interpreter = _resolve(module, attribute)
    except MissingDependencyError as exc:
        raise RuntimeUnavailableError(str(exc)) from exc
    except (AttributeError, RuntimeError) as exc:  # e.g. tflite_runtime 2.14 under numpy 2: _ARRAY_API
        raise RuntimeUnavailableError(
            f"{module_name} is installed but does not load ({exc}); install ai-edge-litert instead: "
            f"{install_hint('runtime')}"
        ) from exc
    if drawback is not None:
        logger.warning(
            "running %s with %s: %s. Install ai-edge-litert: pip install ai-edge-litert",
            path.name,
            runtime,
            drawback,
        )
    options: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
    if runtime == "tensorflow":
        # TF 2.21's default XNNPACK delegate returned wrong feature maps and probabilities (all 0.5) for
        # a plain conv/pool/dense file that ai-edge-litert and TF's reference kernels ran correctly.
        resolver = module.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        options["experimental_op_resolver_type"] = resolver
    elif not xnnpack:
        # ai_edge_litert.interpreter and tflite_runtime.interpreter both export OpResolverType
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        instance = interpreter(**options)
        instance.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path} is not a valid TFLite model for {runtime} (expected a .tflite flatbuffer written by "
            f"cxr-export): {exc}"
        ) from exc
    return instance


def _dtype_name(detail: dict[str, Any]) -> str:
    return np.dtype(detail["dtype"]).name


def _signature_shape(detail: dict[str, Any]) -> list[int | None]:
    """The tensor's shape with None for a dynamic axis (shape_signature holds -1 there)."""
    shape = detail.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = detail["shape"]
    return [int(d) if d > 0 else None for d in shape]


def _quantization(detail: dict[str, Any], path: Path) -> tuple[float | None, int | None]:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    if scales.size > 1:
        raise ModelSignatureError(
            f"{path}: tensor {detail['name']!r} has {scales.size} per-channel scales; model inputs and "
            "outputs must be per-tensor quantized"
        )
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale:
        return None, None
    return float(scale), int(zero_point)


class LiteRTBackend(Backend):
    """Runs a .tflite file with ai-edge-litert (or a fallback interpreter)."""

    def __init__(
        self,
        path: str | Path,
        signature: ModelSignature,
        threads: int,
        runtime: str = "litert",
        settings: RuntimeSettings = DEFAULT_SETTINGS,
    ) -> None:
        clock = Stopwatch()
        super().__init__(path, signature, threads)
        self.settings = settings
        if runtime not in INTERPRETERS:
            raise UnknownRuntimeError(
                f"LiteRTBackend runtime must be one of {list(INTERPRETERS)}; got {runtime!r}"
            )
        self.runtime = runtime
        try:
            self._interpreter = open_interpreter(runtime, self.path, threads, xnnpack=settings.xnnpack)
        except ModelFileError as exc:
            raise ModelFileError(f"{exc} (format {signature.format!r})") from exc
        self.signature = self._bind(signature)
        batch = self.signature.input.shape[0]
        self.fixed_batch = batch if batch is not None else None
        self._allocated = int(self._interpreter.get_input_details()[0]["shape"][0])
        self.load_ms = clock.ms()
        logger.info(
            "opened %s with %s (%d threads, %s, %.0f ms)",
            self.path.name,
            runtime,
            threads,
            settings.label("litert"),
            self.load_ms,
        )

    def _bind(self, signature: ModelSignature) -> ModelSignature:
        """Match the manifest's tensors to the interpreter's; cross-check shapes, dtypes, scale/zero-point."""
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelSignatureError(
                f"{self.path}: the file has inputs {[d['name'] for d in inputs]}; expected exactly one"
            )
        if inputs[0]["name"] != signature.input.name:
            logger.debug(
                "%s: input is %r, manifest says %r", self.path, inputs[0]["name"], signature.input.name
            )
        bound_input = self._check(signature.input, inputs[0])
        details = self._interpreter.get_output_details()
        bound: dict[str, TensorSpec] = {}
        for role, spec in signature.outputs.items():
            bound[role] = self._check(spec, self._find_output(spec, details))
        return ModelSignature(signature.name, signature.format, signature.runtime, bound_input, bound)

    def _find_output(self, spec: TensorSpec, details: list[dict[str, Any]]) -> dict[str, Any]:
        """The output named in the manifest (names are per file: onnx2tf names differ between files)."""
        for detail in details:
            if detail["name"] == spec.name:
                return detail
        raise ModelSignatureError(
            f"{self.path}: the manifest's {spec.role} output {spec.name!r} is not in the file; it has "
            f"{[d['name'] for d in details]}"
        )

    def _check(self, spec: TensorSpec, detail: dict[str, Any]) -> TensorSpec:
        scale, zero_point = _quantization(detail, self.path)
        checked = check_tensor(
            spec, _signature_shape(detail), _dtype_name(detail), self.path, scale, zero_point
        )
        return replace(checked, key=int(detail["index"]))

    def _resize(self, count: int) -> None:
        """Re-allocate for a batch of ``count`` (dynamic-batch files only; kept until the size changes)."""
        spec = self.signature.input
        shape = [count, *self._interpreter.get_input_details()[0]["shape"][1:]]
        self._interpreter.resize_tensor_input(spec.key, shape)
        self._interpreter.allocate_tensors()
        self._allocated = count

    def _run(self, batch: NDArray[Any]) -> dict[str, NDArray[Any]]:
        if len(batch) != self._allocated:
            self._resize(len(batch))
        self._interpreter.set_tensor(self.signature.input.key, batch)
        self._interpreter.invoke()
        return {role: self._interpreter.get_tensor(spec.key) for role, spec in self.signature.outputs.items()}

    def close(self) -> None:
        super().close()
        self._interpreter = None
