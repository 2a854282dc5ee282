"""ONNX Runtime backend: CPU provider, fixed thread pool, settings from :mod:`cxr_core.runtime.settings`.

onnxruntime is imported when a backend is opened, never at module import, so ``cxr_core`` stays
importable on a device that only has LiteRT.
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
from cxr_core.optional import require
from cxr_core.privacy import disable_telemetry
from cxr_core.runtime.backend import Backend, Stopwatch
from cxr_core.runtime.errors import ModelFileError, ModelSignatureError, RuntimeUnavailableError
from cxr_core.runtime.settings import DEFAULT_SETTINGS, OPTIMIZATION_LEVELS, RuntimeSettings
from cxr_core.runtime.signature import ModelSignature, check_tensor

logger = logging.getLogger(__name__)

#: ONNX tensor element types -> manifest dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
}
#: onnxruntime's log severity: 0 verbose, 1 info, 2 warning, 3 error.
_LOG_WARNING = 2


def import_onnxruntime() -> Any:
    """The onnxruntime module, or :class:`RuntimeUnavailableError` with the pip hint.

    Its telemetry is turned off first (ORT_DISABLE_TELEMETRY=1 before the import, see
    :mod:`cxr_core.privacy`); ``import cxr_core`` has already done so, this keeps it true for a
    caller that reaches this module another way.
    """
    disable_telemetry()
    try:
        return require("onnxruntime", extra="runtime", purpose="running ONNX models (onnxruntime backend)")
    except MissingDependencyError as exc:
        raise RuntimeUnavailableError(str(exc)) from exc


def session_options(ort: Any, threads: int, settings: RuntimeSettings = DEFAULT_SETTINGS) -> Any:
    """``ort.SessionOptions`` for ``threads`` intra-op threads and ``settings`` (one sequential pool)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[settings.optimization]
    )
    options.log_severity_level = _LOG_WARNING
    # By default idle worker threads sleep instead of spinning: on a shared 2-core machine spinning
    # cost INT8 inference 22-43 ms against 12.6-17 ms without it, and on a phone or Pi it burns
    # battery. A dedicated device may turn it on (edge-bench --ab / --tune measure it).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    if settings.spinning:
        # Spin only while an inference runs: the workers stop as soon as it returns instead of
        # spinning on between images (measured: 23 ms of CPU per idle half second without this,
        # 0.1 ms with it), so spinning costs CPU only during the inference it speeds up.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if settings.affinity and threads > 1:
        affinities = pinned_cpus(threads)
        if affinities:
            options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    return options


def pinned_cpus(threads: int) -> str | None:
    """ONNX Runtime's affinity string pinning worker threads 2..N to one allowed CPU each (1-based ids).

    The main thread (the caller's) is not pinned by ONNX Runtime; it keeps the first allowed CPU
    free by convention. None when there are fewer allowed CPUs than threads.
    """
    import os

    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    if len(cpus) < threads:
        return None
    return ";".join(str(cpu + 1) for cpu in cpus[1:threads])


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX model file with ONNX Runtime's CPU execution provider."""

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        signature: ModelSignature,
        threads: int,
        settings: RuntimeSettings = DEFAULT_SETTINGS,
    ) -> None:
        clock = Stopwatch()
        super().__init__(path, signature, threads)
        self.settings = settings
        ort = import_onnxruntime()
        options = session_options(ort, threads, settings)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except (
            Exception
        ) as exc:  # onnxruntime raises its own Exception subclasses (InvalidProtobuf, Fail, ...)
            raise ModelFileError(
                f"{self.path} is not a valid ONNX model for onnxruntime {ort.__version__} "
                f"(expected format {signature.format!r}, an .onnx file written by cxr-export): {exc}"
            ) from exc
        self.signature = self._bind(signature)
        batch = self.signature.input.shape[0]
        self.fixed_batch = batch if batch is not None else None
        self._output_names = [spec.key for spec in self.signature.outputs.values()]
        self._roles = list(self.signature.outputs)
        self.load_ms = clock.ms()
        logger.info(
            "opened %s with onnxruntime %s (%d threads, %s, %.0f ms)",
            self.path.name,
            ort.__version__,
            threads,
            settings.label("onnxruntime"),
            self.load_ms,
        )

    def _bind(self, signature: ModelSignature) -> ModelSignature:
        """Match the manifest's tensors to the session's by name and check shapes and dtypes."""
        inputs = {node.name: node for node in self._session.get_inputs()}
        outputs = {node.name: node for node in self._session.get_outputs()}
        if len(inputs) != 1:
            raise ModelSignatureError(
                f"{self.path}: the file has inputs {list(inputs)}; expected exactly one"
            )
        spec = signature.input
        node = inputs.get(spec.name)
        if node is None:
            raise ModelSignatureError(
                f"{self.path}: the manifest's input {spec.name!r} is not in the file; it has {list(inputs)}"
            )
        bound_input = self._check(spec, node)
        bound: dict[str, TensorSpec] = {}
        for role, spec in signature.outputs.items():
            node = outputs.get(spec.name)
            if node is None:
                raise ModelSignatureError(
                    f"{self.path}: the manifest's {role} output {spec.name!r} is not in the file; "
                    f"it has {list(outputs)}"
                )
            bound[role] = self._check(spec, node)
        return ModelSignature(signature.name, signature.format, signature.runtime, bound_input, bound)

    def _check(self, spec: TensorSpec, node: Any) -> TensorSpec:
        dtype = _ORT_TYPES.get(node.type)
        if dtype is None:
            raise ModelSignatureError(
                f"{self.path}: tensor {node.name!r} has type {node.type}; expected one of {list(_ORT_TYPES)}"
            )
        shape = [d if isinstance(d, int) and d > 0 else None for d in node.shape]
        checked = check_tensor(spec, shape, dtype, self.path)
        return replace(checked, key=node.name)

    def _run(self, batch: NDArray[Any]) -> dict[str, NDArray[Any]]:
        values = self._session.run(self._output_names, {self.signature.input.key: batch})
        return {role: np.asarray(value) for role, value in zip(self._roles, values, strict=True)}

    def close(self) -> None:
        super().close()
        self._session = None
