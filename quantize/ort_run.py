"""Run an exported ONNX model with ONNX Runtime on a batch of preprocessed inputs (no torch).

Used by the parity report at export time and by ``cxr-export verify`` on a machine without
torch. Outputs are returned by name (``probabilities``, ``feature_map``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.optional import require


def session(path: str | Path, threads: int = 1, optimized_path: str | Path | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``; ``optimized_path`` saves the optimised graph."""
    ort = require("onnxruntime", extra="export", purpose="running ONNX models")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_model(
    path: str | Path, inputs: NDArray[np.float32], batch_size: int = 8, threads: int = 1
) -> dict[str, NDArray[np.float32]]:
    """Outputs of the model at ``path`` for ``inputs`` (N, ...), run ``batch_size`` images at a time."""
    sess = session(path, threads)
    input_name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    chunks: dict[str, list[NDArray[np.float32]]] = {name: [] for name in names}
    for start in range(0, len(inputs), batch_size):
        batch = np.ascontiguousarray(inputs[start : start + batch_size], dtype=np.float32)
        for name, value in zip(names, sess.run(names, {input_name: batch}), strict=True):
            chunks[name].append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(parts, axis=0) for name, parts in chunks.items()}
