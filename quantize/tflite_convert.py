"""The TFLite conversion child process: ONNX -> onnx2tf -> FP32/FP16 .tflite, SavedModel -> INT8 .tflite.

:mod:`quantize.tflite_export` runs ``python -m quantize.tflite_convert JOB.json`` in a scratch
working directory, one step per call, so TensorFlow's memory (2-4 GB for a DenseNet-121), its
log noise, onnx2tf's ``sys.exit`` on errors and its use of the current directory stay out of the
export process. The network guard (:mod:`quantize.tflite_offline`) is installed before anything
is imported: conversion runs offline or fails.

Steps (``job["step"]``):

* ``float``: ``onnx2tf.convert`` of ``job["onnx"]`` into ``job["out_dir"]``: a SavedModel plus
  ``<stem>_float32.tflite`` and ``<stem>_float16.tflite`` (FP16 weights), NHWC input and feature
  map, no transposes. onnxsim is not used (``not_use_onnxsim``; it would rewrite the input file).
* ``int8``: the SavedModel quantized by the TFLite converter with the calibration tensors
  ``job["calibration"]`` (NHWC ``.npy``) as representative data: int8 weights (per-channel unless
  ``per_channel`` is false) and activations; the ops named in ``float_nodes`` (output tensor
  names, the classifier head) stay float through the quantization debugger's deny list; with
  ``io == "int8"`` the model's own input/output tensors are int8 too.

Each step writes ``job["result"]`` (JSON: seconds, files, versions) atomically; exit status 0 on
success, 1 on a conversion error, 3 when a network access was attempted (even a swallowed one).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require
from quantize.tflite_offline import ATTEMPTS, block_network


class TfliteConvertError(CxrEdgeError, RuntimeError):
    """A TFLite conversion step did not produce what it should have."""


class TfliteJobError(TfliteConvertError, ValueError):
    """The conversion job file asks for something this converter does not do."""


EXIT_OK, EXIT_FAILED, EXIT_NETWORK = 0, 1, 3


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for package in ("onnx2tf", "tensorflow", "tf-keras", "onnx"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def convert_float(job: dict[str, Any]) -> dict[str, Any]:
    """ONNX -> SavedModel + FP32 and FP16 .tflite with onnx2tf (the ``float`` step)."""
    import onnx2tf

    onnx_path = Path(job["onnx"])
    out_dir = Path(job["out_dir"])
    onnx2tf.convert(
        input_onnx_file_path=str(onnx_path),
        output_folder_path=str(out_dir),
        not_use_onnxsim=True,
        non_verbose=True,
    )
    files = {
        "float32": out_dir / f"{onnx_path.stem}_float32.tflite",
        "float16": out_dir / f"{onnx_path.stem}_float16.tflite",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise TfliteConvertError(
            f"onnx2tf finished without writing {missing}; expected {sorted(map(str, files.values()))}"
        )
    return {"saved_model": str(out_dir), "files": {k: str(v) for k, v in files.items()}}


def _representative(path: str) -> Iterator[list[Any]]:
    import numpy as np

    data = np.load(path).astype(np.float32)
    for index in range(len(data)):
        yield [data[index : index + 1]]


def convert_int8(job: dict[str, Any]) -> dict[str, Any]:
    """SavedModel -> full-integer INT8 .tflite (the ``int8`` step); see the module docstring."""
    tf = require("tensorflow", extra="export", purpose="TFLite INT8 conversion")

    converter = tf.lite.TFLiteConverter.from_saved_model(job["saved_model"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _representative(job["calibration"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_disable_per_channel = not job["per_channel"]
    float_nodes: Sequence[str] = job.get("float_nodes") or []
    if job["io"] == "int8":
        if float_nodes:
            raise TfliteJobError(
                f"float_nodes={list(float_nodes)} with io='int8'; expected none "
                "(int8 input/output needs a fully quantized model)"
            )
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        model = converter.convert()
    elif float_nodes:
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_nodes))
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: _representative(job["calibration"]),
            debug_options=options,
        )
        model = debugger.get_nondebug_quantized_model()
    else:
        model = converter.convert()
    out = Path(job["out"])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(model)
    os.replace(tmp, out)
    return {"files": {"int8": str(out)}}


def _write_result(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the job file ``argv[0]``; see the module docstring for steps and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m quantize.tflite_convert JOB.json", file=sys.stderr)
        return EXIT_FAILED
    block_network()
    job = json.loads(Path(args[0]).read_text())
    steps = {"float": convert_float, "int8": convert_int8}
    start = time.perf_counter()
    try:
        if job.get("step") not in steps:
            raise TfliteJobError(f"job step {job.get('step')!r}; expected one of {sorted(steps)}")
        result = steps[job["step"]](job)
    except (Exception, SystemExit):  # onnx2tf exits the process on errors; report whatever happened
        traceback.print_exc()
        if ATTEMPTS:
            print(f"network access attempted: {ATTEMPTS}", file=sys.stderr)
            return EXIT_NETWORK
        return EXIT_FAILED
    if ATTEMPTS:  # a library swallowed the refusal; the conversion still broke the offline rule
        print(f"network access attempted: {ATTEMPTS}", file=sys.stderr)
        return EXIT_NETWORK
    result.update(step=job["step"], seconds=round(time.perf_counter() - start, 2), versions=_versions())
    _write_result(Path(job["result"]), result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
