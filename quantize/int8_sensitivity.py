"""Layer-wise FP32-vs-INT8 comparison: which quantized activations lose the most signal.

ONNX Runtime's QDQ debugging tools (``onnxruntime.quantization.qdq_loss_debug``) run the float
and the QDQ model on a few calibration images with every intermediate activation exposed, and
measure each activation's signal-to-quantization-noise ratio (SQNR, dB):

* ``qdq_sqnr``: the activation just before vs just after its own quantize/dequantize pair
  (the damage this one tensor's 8-bit range does);
* ``model_sqnr``: the float model's activation vs the INT8 model's (all damage accumulated so far).

The lowest ``qdq_sqnr`` names the layers to keep in float first. The export records the ranking in
the manifest, and ``QuantConfig.keep_float_layers = N`` re-quantizes with the nodes around the N
worst tensors left in float (docs/export.md has the measured effect on the trained models).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.optional import require

logger = logging.getLogger(__name__)

#: Calibration images run through the two instrumented models (every activation is kept in memory).
DEBUG_IMAGES = 8


def rank_activations(
    float_path: str | Path, qdq_path: str | Path, tensors: NDArray[np.float32], reader: Any
) -> list[dict[str, Any]]:
    """Every quantized activation with its ``qdq_sqnr`` and ``model_sqnr``, worst ``qdq_sqnr`` first.

    ``reader(tensors)`` builds a CalibrationDataReader over the given images.
    """
    debug = require("onnxruntime.quantization.qdq_loss_debug", extra="export", purpose="INT8 layer debugging")
    sample = tensors[:DEBUG_IMAGES]
    with tempfile.TemporaryDirectory(prefix="cxr-int8-debug-") as work:
        float_aug, qdq_aug = Path(work) / "float.onnx", Path(work) / "qdq.onnx"
        debug.modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        debug.modify_model_output_intermediate_tensors(str(qdq_path), str(qdq_aug))
        float_acts = debug.collect_activations(str(float_aug), reader(sample))
        qdq_acts = debug.collect_activations(str(qdq_aug), reader(sample))
    errors = debug.compute_activation_error(debug.create_activation_matching(qdq_acts, float_acts))
    rows = []
    for name, error in errors.items():
        qdq = float(error.get("qdq_err", math.nan))
        model = float(error.get("xmodel_err", math.nan))
        rows.append({"tensor": name, "qdq_sqnr_db": round(qdq, 2), "model_sqnr_db": round(model, 2)})
    rows.sort(key=lambda row: (math.isnan(row["qdq_sqnr_db"]), row["qdq_sqnr_db"]))
    return rows


def nodes_around(model: Any, tensor_names: list[str]) -> list[str]:
    """Names of the nodes that produce or consume the given tensors (what to exclude from QDQ)."""
    wanted = set(tensor_names)
    names: list[str] = []
    for node in model.graph.node:
        if wanted.intersection(node.output) or wanted.intersection(node.input):
            names.append(node.name)
    return sorted(set(names))
