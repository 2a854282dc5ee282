"""FP32, FP16 and full-integer INT8 TFLite from the FP32 ONNX export (onnx2tf route).

Route (measured; docs/export.md): the cached FP32 ONNX (``context.fp32_onnx()``) -> onnx2tf
1.29.24 -> a SavedModel plus FP32 and FP16 ``.tflite`` files with NHWC input and feature map;
the SavedModel -> the TFLite converter's full-integer post-training quantization calibrated on
the same preprocessed calibration tensors as the ONNX INT8 model. Both steps run in a child
process (:mod:`quantize.tflite_convert`) in a scratch folder under the build's work folder,
offline: onnx2tf's sample-image file is written there from the calibration tensors, and a
network guard fails the conversion on any connection attempt.

The steps are cached on disk per build (``<work_dir>/tflite``): the three formats share one
onnx2tf conversion. Each builder copies its file into the bundle and returns the manifest's
description: inputs/outputs by role with NHWC layouts (:mod:`quantize.tflite_describe`), the
quantization settings, and the conversion times.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError, MissingDependencyError
from cxr_core.optional import install_hint, require

logger = logging.getLogger(__name__)

#: Modules the conversion imports (package names in the hint below).
TOOLCHAIN = (
    "onnx2tf",
    "tensorflow",
    "tf_keras",
    "onnx",
    "onnxruntime",
    "onnx_graphsurgeon",
    "sng4onnx",
    "sne4onnx",
    "psutil",
    "h5py",
    "ai_edge_litert",
)
INSTALL_HINT = f"{install_hint('export')}, then pip install --no-deps onnx2tf==1.29.24"
#: The file onnx2tf downloads from GitHub unless it is in its working directory.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
SAMPLE_SHAPE = (20, 128, 128, 3)
#: Wall-clock limit of one conversion step (a DenseNet-121 at 224 px took 400-700 s here).
STEP_TIMEOUT_S = 3600
IO_TYPES = ("float32", "int8")
#: Job keys that hold paths (made absolute before the child, which runs elsewhere, reads them).
PATH_KEYS = ("onnx", "out_dir", "saved_model", "calibration", "out")


class TfliteExportError(CxrEdgeError, RuntimeError):
    """The TFLite conversion failed (the message ends with the tail of the converter's log)."""


class TfliteConfigError(CxrEdgeError, ValueError):
    """A :class:`TfliteInt8Config` field has a value the INT8 converter does not accept."""


class Context(Protocol):
    """What the builders need of :class:`quantize.formats.BuildContext`."""

    calibration: NDArray[np.float32]
    work_dir: Path
    quant: Any

    def fp32_onnx(self) -> Path: ...


@dataclass(frozen=True)
class TfliteInt8Config:
    """Settings of the full-integer TFLite quantization, recorded in the manifest.

    Fields:
        per_channel: per-output-channel int8 weight scales (per-tensor when false).
        io: ``float32`` (quantize/dequantize inside the model; default, see docs/export.md) or
            ``int8`` (the file's own input and outputs are int8, for integer-only accelerators).
        keep_head_float: leave the ops downstream of the feature map (pooling, classifier,
            sigmoid) in float, so probabilities do not move in 1/256 steps. Needs ``io=float32``.
    """

    per_channel: bool = True
    io: str = "float32"
    keep_head_float: bool = True

    def __post_init__(self) -> None:
        if self.io not in IO_TYPES:
            raise TfliteConfigError(f"TfliteInt8Config.io={self.io!r}; expected one of {list(IO_TYPES)}")
        if self.io == "int8" and self.keep_head_float:
            raise TfliteConfigError(
                "TfliteInt8Config: io='int8' needs keep_head_float=False (a float head has float I/O)"
            )

    @classmethod
    def from_quant(cls, quant: Any) -> TfliteInt8Config:
        """The TFLite settings matching the ONNX QuantConfig's shared fields (per-channel, head)."""
        return cls(
            per_channel=bool(getattr(quant, "per_channel", True)),
            keep_head_float=bool(getattr(quant, "keep_head_float", True)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_toolchain() -> None:
    """Raise :class:`MissingDependencyError` with the install commands when a converter module is missing."""
    missing = [name for name in TOOLCHAIN if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"TFLite export needs the Python package(s) {missing}, which are not installed. "
            f"Install them with: {INSTALL_HINT}"
        )


def _resize(image: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    from PIL import Image

    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(c), mode="F").resize((size, size), Image.BILINEAR))
        for c in image
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def sample_file_data(calibration: NDArray[np.float32]) -> NDArray[np.float32]:
    """onnx2tf's sample images (20, 128, 128, 3) NHWC: the calibration tensors, resized and cycled.

    onnx2tf feeds them (resized to the model input) to its per-op ONNX-vs-TF checks and
    transposition searches; real preprocessed images make those checks meaningful where zeros
    would let any transposition pass.
    """
    if calibration.ndim == 4 and calibration.shape[1] == 1:  # a grey model (the gate's autoencoder)
        calibration = np.repeat(calibration, SAMPLE_SHAPE[3], axis=1)
    if calibration.ndim != 4 or calibration.shape[1] != SAMPLE_SHAPE[3] or len(calibration) == 0:
        raise TfliteExportError(
            f"calibration tensors of shape {calibration.shape}; expected (N>0, {SAMPLE_SHAPE[3]}, H, W) NCHW"
        )
    picks = [calibration[i % len(calibration)] for i in range(SAMPLE_SHAPE[0])]
    return np.stack([_resize(image, SAMPLE_SHAPE[1]) for image in picks])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # so the child imports this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # convert and calibrate on the CPU: same numbers on every machine
    return env


def _log_tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join(text[-lines:])


def run_step(job: dict[str, Any], folder: Path, timeout: float = STEP_TIMEOUT_S) -> dict[str, Any]:
    """Run one conversion step in a child process with ``folder`` as its working directory."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    # The child runs in ``folder``: hand it absolute paths.
    job = {k: str(Path(v).resolve()) if k in PATH_KEYS else v for k, v in job.items()}
    job["result"] = str(folder / "result.json")
    (folder / "job.json").write_text(json.dumps(job, indent=2))
    log = folder / "conversion.log"
    command = [sys.executable, "-m", "quantize.tflite_convert", str(folder / "job.json")]
    with open(log, "w") as handle:
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                env=_child_env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise TfliteExportError(
                f"TFLite {job['step']} conversion ran over {timeout:.0f} s; log {log}:\n{_log_tail(log)}"
            ) from exc
    if done.returncode != 0:
        what = "tried to reach the network" if done.returncode == 3 else f"failed (exit {done.returncode})"
        raise TfliteExportError(f"TFLite {job['step']} conversion {what}; log {log}:\n{_log_tail(log)}")
    result = dict(json.loads((folder / "result.json").read_text()))
    logger.info("TFLite %s step done in %.0f s", job["step"], result.get("seconds", 0.0))
    return result


def convert_float(context: Context) -> dict[str, Any]:
    """onnx2tf on the build's FP32 ONNX, once per build: SavedModel, FP32 and FP16 .tflite."""
    folder = Path(context.work_dir) / "tflite" / "float"
    if (folder / "result.json").is_file():
        return dict(json.loads((folder / "result.json").read_text()))
    check_toolchain()
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / ONNX2TF_SAMPLE, sample_file_data(context.calibration))
    onnx_copy = folder / "model.onnx"  # onnx2tf may rewrite its input file: never hand it the shared export
    shutil.copyfile(context.fp32_onnx(), onnx_copy)
    logger.info("converting %s to TFLite with onnx2tf (minutes for a DenseNet-121)", context.fp32_onnx())
    return run_step({"step": "float", "onnx": str(onnx_copy), "out_dir": str(folder / "out")}, folder)


def convert_int8(context: Context, config: TfliteInt8Config) -> dict[str, Any]:
    """Full-integer INT8 .tflite from the onnx2tf SavedModel, once per build and config."""
    floats = convert_float(context)
    key = "int8-" + "-".join(f"{k}={v}" for k, v in sorted(config.to_dict().items()))
    folder = Path(context.work_dir) / "tflite" / key
    if (folder / "result.json").is_file():
        return dict(json.loads((folder / "result.json").read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    calibration = folder / "calibration_nhwc.npy"
    np.save(calibration, np.ascontiguousarray(context.calibration.transpose(0, 2, 3, 1), dtype=np.float32))
    from quantize.tflite_describe import head_tensors

    float_nodes = head_tensors(floats["files"]["float32"]) if config.keep_head_float else []
    job = {
        "step": "int8",
        "saved_model": floats["saved_model"],
        "calibration": str(calibration),
        "out": str(folder / "model-int8.tflite"),
        "per_channel": config.per_channel,
        "io": config.io,
        "float_nodes": float_nodes,
    }
    logger.info("quantizing the TFLite model to INT8 with %d calibration images", len(context.calibration))
    result = run_step(job, folder)
    return {**result, "float_nodes": float_nodes, "calibration_images": int(len(context.calibration))}


def _onnx_info(context: Context) -> dict[str, Any]:
    onnx = require("onnx", extra="export", purpose="reading the ONNX graph for TFLite export")

    from quantize.onnx_export import graph_info

    return graph_info(onnx.load(str(context.fp32_onnx()))).to_dict()


def _publish(source: str | Path, path: Path, context: Context) -> dict[str, Any]:
    """Copy a converted file into the bundle (atomically) and describe its interface."""
    from quantize.tflite_describe import describe_tflite

    tmp = path.with_name(path.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return describe_tflite(path, _onnx_info(context))


ROUTE = "PyTorch -> ONNX (opset 17) -> onnx2tf (NHWC, no transposes)"
FLOAT_STEP = "onnx2tf (one run writes the FP32 and the FP16 file)"


def _conversion(result: dict[str, Any], step: str) -> dict[str, Any]:
    """Route, step and wall time of the conversion step that wrote a file."""
    return {
        "route": ROUTE,
        "step": step,
        "seconds": result["seconds"],
        "versions": result.get("versions", {}),
    }


def build_fp32(context: Context, path: Path) -> dict[str, Any]:
    """``model.tflite``: onnx2tf's FP32 file."""
    floats = convert_float(context)
    info = _publish(floats["files"]["float32"], path, context)
    return {**info, "quantization": None, "conversion": _conversion(floats, FLOAT_STEP)}


def build_fp16(context: Context, path: Path) -> dict[str, Any]:
    """``model-fp16.tflite``: onnx2tf's FP16-weight file (float32 I/O and compute on CPU)."""
    floats = convert_float(context)
    info = _publish(floats["files"]["float16"], path, context)
    quantization = {
        "scheme": "float16 weights (onnx2tf / TFLite converter)",
        "weights": "float16",
        "activations": "float32 (CPU runtimes expand the weights to float32 at load)",
    }
    return {**info, "quantization": quantization, "conversion": _conversion(floats, FLOAT_STEP)}


def _check_int8(path: Path, float_nodes: list[str]) -> None:
    """Fail unless the file computes in int8 and every head tensor meant to stay float is float."""
    from quantize.tflite_describe import interpreter

    dtypes = {d["name"]: np.dtype(d["dtype"]) for d in interpreter(path).get_tensor_details()}
    if not any(dtype == np.int8 for dtype in dtypes.values()):
        raise TfliteExportError(f"{path}: no int8 tensor in the file; expected a quantized model")
    wrong = [n for n in float_nodes if dtypes.get(n) != np.float32]
    if wrong:
        found = {n: str(dtypes.get(n, "missing")) for n in wrong}
        raise TfliteExportError(f"{path}: head tensors {found} are not float32; expected the head kept float")


def build_int8(context: Context, path: Path, config: TfliteInt8Config | None = None) -> dict[str, Any]:
    """``model-int8.tflite``: full-integer INT8 with the build's calibration tensors."""
    config = config or TfliteInt8Config.from_quant(getattr(context, "quant", None))
    method = getattr(getattr(context, "quant", None), "calibration", "minmax")
    if method != "minmax":
        logger.warning(
            "TFLite INT8 calibrates with min/max only; calibration=%r applies to ONNX INT8", method
        )
    result = convert_int8(context, config)
    info = _publish(result["files"]["int8"], path, context)
    _check_int8(path, result["float_nodes"])
    quantization = {
        "scheme": "TFLite full-integer post-training quantization",
        "activations": "int8 per-tensor (asymmetric)",
        "weights": "int8 per-channel (symmetric)" if config.per_channel else "int8 per-tensor (symmetric)",
        "bias": "int32",
        "calibration": "minmax",
        "calibration_images": result["calibration_images"],
        "input_type": config.io,
        "output_type": config.io,
        "nodes_kept_float": result["float_nodes"],
        **config.to_dict(),
    }
    return {
        **info,
        "quantization": quantization,
        "conversion": {
            **_conversion(result, "TFLite converter, full-integer INT8 from the onnx2tf SavedModel"),
            "onnx2tf_seconds": convert_float(context)["seconds"],
        },
    }
