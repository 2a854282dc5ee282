"""LiteRT on Android through its Java library and pyjnius: a :class:`cxr_core.runtime.Backend`.

Why this route: python-for-android has no onnxruntime recipe and only an old tflite-runtime
(2.8) recipe, and neither ai-edge-litert nor tflite-runtime ships Android wheels. LiteRT's
maintained Android build is the Maven artifact ``com.google.ai.edge.litert:litert`` (it keeps the
``org.tensorflow.lite`` package names); the APK gets it through buildozer's
``android.gradle_dependencies`` and Python drives it with pyjnius. The app injects the backend:
``Predictor(bundle, open_android_backend(bundle))`` -- everything after inference (calibration,
CAM, the gate) is the same cxr_core code as on a desktop.

Two layers, so the part that can be checked off-device is checked:

* :class:`JavaInterpreter` -- the only code that talks to Java: opens
  ``org.tensorflow.lite.Interpreter`` on the model file (XNNPACK on, ``threads`` threads),
  reports each tensor (index, name, shape, dtype, scale/zero-point) and runs one batch given as
  raw bytes, returning each output's raw bytes. Byte buffers cross the bridge as ``byte[]``.
* :class:`AndroidLiteRTBackend` -- the Backend: binds the manifest's tensors by role to the
  interpreter's (cross-checked with ``check_tensor``), turns the canonical NCHW float batch into
  the file's layout and dtype (``cxr_core.runtime.tensors.to_runtime``), and decodes the returned
  bytes (``from_runtime``: dequantize with each tensor's own scale/zero-point, NHWC -> NCHW).

It cannot run on the development machine: there is no Android runtime or JVM with LiteRT here.
Importing this module needs neither (pyjnius is imported when a :class:`JavaInterpreter` is
created). The tests run :class:`AndroidLiteRTBackend` over the real desktop LiteRT interpreter
through the same thin interface, which exercises everything except the Java calls themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle import Bundle, BundleError, ModelEntry, TensorSpec
from cxr_core.runtime.backend import Backend, Stopwatch
from cxr_core.runtime.errors import ModelSignatureError
from cxr_core.runtime.signature import ModelSignature, check_tensor, signature_of
from cxr_core.runtime.threads import resolve_threads
from edge_app.platform.jni import import_jnius

logger = logging.getLogger(__name__)

RUNTIME_NAME = "litert-android"
#: The Maven coordinates buildozer.spec adds (android.gradle_dependencies); checked by the tests.
LITERT_GRADLE_DEPENDENCY = "com.google.ai.edge.litert:litert:2.3.0"
#: org.tensorflow.lite.DataType names -> numpy dtype names.
JAVA_DTYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the interpreter reports it."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    scale: float | None = None
    zero_point: int | None = None


class InterpreterLike(Protocol):
    """The thin interface :class:`AndroidLiteRTBackend` needs from an interpreter."""

    def inputs(self) -> list[TensorInfo]: ...

    def outputs(self) -> list[TensorInfo]: ...

    def run(self, data: bytes) -> list[bytes]: ...

    def close(self) -> None: ...


def _signed_bytes_to_bytes(values: Any) -> bytes:
    """A Java ``byte[]`` as pyjnius returns it (buffer or a list of signed ints) as Python bytes."""
    try:
        return bytes(memoryview(values))
    except TypeError:
        return np.asarray(list(values), dtype=np.int16).astype(np.uint8).tobytes()


class JavaInterpreter:
    """``org.tensorflow.lite.Interpreter`` (LiteRT's Android library) driven through pyjnius."""

    def __init__(self, path: str | Path, threads: int) -> None:
        jnius = import_jnius("LiteRT inference on Android (org.tensorflow.lite.Interpreter)")
        autoclass = jnius.autoclass
        self._byte_buffer = autoclass("java.nio.ByteBuffer")
        self._byte_order = autoclass("java.nio.ByteOrder")
        self._integer = autoclass("java.lang.Integer")
        self._hash_map = autoclass("java.util.HashMap")
        options = autoclass("org.tensorflow.lite.Interpreter$Options")()
        options.setNumThreads(int(threads))
        options.setUseXNNPACK(True)
        java_file = autoclass("java.io.File")(str(path))
        self._interpreter = autoclass("org.tensorflow.lite.Interpreter")(java_file, options)

    @staticmethod
    def _info(index: int, tensor: Any) -> TensorInfo:
        dtype = JAVA_DTYPES.get(str(tensor.dataType().name()), str(tensor.dataType().name()).lower())
        params = tensor.quantizationParams()
        scale = float(params.getScale()) if params is not None else 0.0
        return TensorInfo(
            index=index,
            name=str(tensor.name()),
            shape=tuple(int(d) for d in tensor.shape()),
            dtype=dtype,
            scale=scale or None,
            zero_point=int(params.getZeroPoint()) if scale else None,
        )

    def inputs(self) -> list[TensorInfo]:
        count = self._interpreter.getInputTensorCount()
        return [self._info(i, self._interpreter.getInputTensor(i)) for i in range(count)]

    def outputs(self) -> list[TensorInfo]:
        count = self._interpreter.getOutputTensorCount()
        return [self._info(i, self._interpreter.getOutputTensor(i)) for i in range(count)]

    def run(self, data: bytes) -> list[bytes]:
        native = self._byte_order.nativeOrder()
        source = self._byte_buffer.wrap(data).order(native)
        targets = self._hash_map()
        buffers = []
        for index in range(self._interpreter.getOutputTensorCount()):
            size = int(self._interpreter.getOutputTensor(index).numBytes())
            buffer = self._byte_buffer.allocate(size).order(native)
            buffers.append(buffer)
            targets.put(self._integer.valueOf(index), buffer)
        self._interpreter.runForMultipleInputsOutputs([source], targets)
        return [_signed_bytes_to_bytes(buffer.array()) for buffer in buffers]

    def close(self) -> None:
        self._interpreter.close()


class AndroidLiteRTBackend(Backend):
    """A .tflite model file run by an :class:`InterpreterLike` (on a phone: :class:`JavaInterpreter`)."""

    runtime = RUNTIME_NAME

    def __init__(
        self,
        path: str | Path,
        signature: ModelSignature,
        threads: int,
        interpreter: InterpreterLike | None = None,
    ) -> None:
        clock = Stopwatch()
        super().__init__(path, signature, threads)
        self._interpreter = interpreter if interpreter is not None else JavaInterpreter(self.path, threads)
        self.signature = self._bind(signature)
        batch = self.signature.input.shape[0]
        self.fixed_batch = batch if batch is not None else 1
        self._outputs = {spec.key: spec for spec in self.signature.outputs.values()}
        self.load_ms = clock.ms()

    def _bind(self, signature: ModelSignature) -> ModelSignature:
        inputs = self._interpreter.inputs()
        if len(inputs) != 1:
            raise ModelSignatureError(
                f"{self.path}: the file has inputs {[t.name for t in inputs]}; expected exactly one"
            )
        bound_input = self._check(signature.input, inputs[0])
        outputs = {info.name: info for info in self._interpreter.outputs()}
        bound: dict[str, TensorSpec] = {}
        for role, spec in signature.outputs.items():
            if spec.name not in outputs:
                raise ModelSignatureError(
                    f"{self.path}: the manifest's {role} output {spec.name!r} is not "
                    f"in the file; it has {sorted(outputs)}"
                )
            bound[role] = self._check(spec, outputs[spec.name])
        return ModelSignature(signature.name, signature.format, signature.runtime, bound_input, bound)

    def _check(self, spec: TensorSpec, info: TensorInfo) -> TensorSpec:
        checked = check_tensor(spec, list(info.shape), info.dtype, self.path, info.scale, info.zero_point)
        return replace(checked, key=info.index)

    def _run(self, batch: NDArray[Any]) -> dict[str, NDArray[Any]]:
        raw = self._interpreter.run(np.ascontiguousarray(batch).tobytes())
        results: dict[str, NDArray[Any]] = {}
        for role, spec in self.signature.outputs.items():
            shape = tuple(len(batch) if dim is None else dim for dim in spec.shape)
            array = np.frombuffer(raw[spec.key], dtype=np.dtype(spec.dtype).newbyteorder("<"))
            if array.size != int(np.prod(shape)):
                raise ModelSignatureError(
                    f"{self.path}: output {spec.name!r} returned {array.size} values; expected shape {shape}"
                )
            results[role] = array.reshape(shape)
        return results

    def close(self) -> None:
        super().close()
        if self._interpreter is not None:
            self._interpreter.close()


def choose_tflite_entry(bundle: Bundle, model: str | None = None) -> ModelEntry:
    """The model to run: ``model``, else the recommended LiteRT format, else the first LiteRT one."""
    wanted = model or bundle.manifest.recommended.get("litert")
    for entry in bundle.models:
        if wanted is not None and entry.name == wanted:
            return entry
    if model is None:
        for entry in bundle.models:
            if entry.runtime == "litert":
                return entry
    raise BundleError(
        f"bundle {bundle.root} has no .tflite model{f' named {model!r}' if model else ''}; "
        f"it has {[e.name for e in bundle.models]}. Export one with "
        "cxr-export CHECKPOINT --out DIR --formats tflite-int8"
    )


def open_android_backend(
    bundle: Bundle,
    model: str | None = None,
    threads: int | None = None,
    interpreter_factory: Callable[[Path, int], InterpreterLike] | None = None,
) -> AndroidLiteRTBackend:
    """Open a bundle's .tflite model with LiteRT's Android library (see the module docstring).

    ``interpreter_factory(path, threads)`` replaces :class:`JavaInterpreter` (the tests use the
    desktop LiteRT interpreter behind the same interface).
    """
    entry = choose_tflite_entry(bundle, model)
    path = bundle.path(entry)
    signature = signature_of(entry, path)
    count = resolve_threads(threads)
    interpreter = interpreter_factory(path, count) if interpreter_factory is not None else None
    backend = AndroidLiteRTBackend(path, signature, count, interpreter=interpreter)
    logger.info("bundle %s: running %s with LiteRT's Android library", bundle.root, entry.name)
    return backend
