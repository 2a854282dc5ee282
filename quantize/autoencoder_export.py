"""Export-time part of the autoencoder gate signal: fit, export FP32/INT8 files, set thresholds.

Called by :func:`quantize.pipeline.export_bundle` once the classifier's formats are built:

1. the training split's images (the ones the feature gate is fitted on) are preprocessed with the
   bundle's spec and downscaled by :func:`cxr_core.autoencoder_gate.autoencoder_input`, exactly as
   the device will;
2. :func:`training.autoencoder.fit_autoencoder` trains the autoencoder on them (seeded, CPU);
3. it is exported to FP32 ONNX and, for the runtimes and precisions among the built classifier
   files, INT8 ONNX (the project's static QDQ recipe, calibrated on training images), FP32 TFLite
   and full-integer INT8 TFLite (the project's onnx2tf route);
4. every autoencoder file is run through the device's own backend on the held-out validation
   images, and each classifier model gets the SSIM threshold of the autoencoder file it runs with,
   at the bundle's acceptance (:func:`ssim_threshold`); the golden inputs' SSIM is recorded per file.

Thresholds come from in-distribution data only; out-of-distribution images are never used.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cxr_core.autoencoder_gate import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_SMOOTHING,
    INPUT_FROM,
    autoencoder_input,
    open_autoencoder,
    reconstruction_ssim,
)
from cxr_core.bundle.schema import (
    RECONSTRUCTION_ROLE,
    AutoencoderFile,
    AutoencoderInfo,
    ModelEntry,
    TensorSpec,
)
from cxr_core.errors import CxrEdgeError
from cxr_core.feature_gate import threshold_at
from cxr_core.formats import FORMATS
from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec
from quantize import calibration as calib
from quantize.onnx_int8 import QuantConfig
from training.autoencoder import AutoencoderFitError, ConvAutoencoder, FitReport, fit_autoencoder

logger = logging.getLogger(__name__)

#: Autoencoder file names in the bundle, per format.
FILE_NAMES = {
    "onnx": "autoencoder.onnx",
    "onnx-int8": "autoencoder-int8.onnx",
    "tflite": "autoencoder.tflite",
    "tflite-int8": "autoencoder-int8.tflite",
}
#: How far a device's golden SSIM may be from the one recorded at export, per precision.
GOLDEN_TOLERANCE = {"fp32": 1e-3, "int8": 0.02}
#: Training images the INT8 files are calibrated on (evenly spaced).
CALIBRATION_IMAGES = 64
INPUT_NAME = "input"
#: Smallest 1 - SSIM used for the threshold fit (a perfect reconstruction has 0, which a log cannot take).
MIN_DISSIMILARITY = 1e-6


#: Confidence of the autoencoder's threshold: the upper 90% tolerance bound of its acceptance
#: quantile, set on every held-out validation image (the classifier's calibration images and the
#: parity images: 61 in the demo). Chosen on in-distribution data only: resampling 500 fresh demo
#: phantoms as 61-image validation sets (300 draws), the autoencoder alone refused 0.53-0.65% of the
#: rest at the fitted quantile (0.5), 0.26-0.40% at 0.75, 0.12-0.19% at 0.9 and 0.06-0.10% at 0.95
#: (FP32, INT8 ONNX, INT8 TFLite), against its 0.33% share of the bundle's 1% budget; 0.9 is the
#: lowest confidence inside it for every file. (The feature distance needs the 95% bound to stay
#: inside its own share: docs/input-gate.md.) A weak autoencoder's wide SSIM spread (the test
#: suite's small fixture) moves a bound further below the quantile: there the other signals carry more.
AUTOENCODER_CONFIDENCE = 0.9


#: The least share of the mean image's error (:attr:`training.autoencoder.FitReport.explained`) a fit
#: must remove to be kept. A fit can stall where it starts: its encoder's output stops depending on
#: the image, and it draws the training images' mean image whatever the input, so its SSIM measures
#: only likeness to that mean image (on the demo such a fit let the autoencoder alone pass 62 of the
#: 120 corpus images). On the demo's 442 training phantoms, 7 of 22 seeds of 60 epochs stalled
#: (each removed less than 0.1%); the other 15 removed 67-84% (docs/input-gate.md, "The
#: autoencoder's fit").
MIN_EXPLAINED = 0.1
#: Seeds tried in turn (the requested one, then the next ones) before the export gives up: at the
#: demo's stall rate (7 of 22) five stalls in a row would stop about 0.3% of exports.
FIT_ATTEMPTS = 5


def fit_learned_autoencoder(
    images: NDArray[np.float32],
    epochs: int,
    seed: int,
    attempts: int = FIT_ATTEMPTS,
    min_explained: float = MIN_EXPLAINED,
) -> tuple[ConvAutoencoder, FitReport, list[FitReport]]:
    """The first fit from seeds ``seed, seed + 1, ...`` that removes at least ``min_explained`` of the
    mean image's error; its model, its report and the reports of every fit tried.

    Deterministic: the same images and seed try the same seeds in the same order. Raises
    :class:`~training.autoencoder.AutoencoderFitError` when ``attempts`` fits all stall.
    """
    if attempts < 1 or seed < 0:
        raise AutoencoderFitError(
            f"attempts={attempts}, seed={seed}; expected at least 1 attempt and a seed of 0 or more"
        )
    tried: list[FitReport] = []
    for candidate in range(seed, seed + attempts):
        model, fit = fit_autoencoder(images, epochs=epochs, seed=candidate)
        tried.append(fit)
        if fit.explained >= min_explained:
            return model, fit, tried
        logger.warning(
            "the autoencoder fit from seed %d stalled: it removes %.1f%% of the error of drawing every "
            "training image as their mean image (at least %.0f%% expected)%s",
            candidate,
            100 * fit.explained,
            100 * min_explained,
            f"; fitting again from seed {candidate + 1}" if candidate + 1 < seed + attempts else "",
        )
    shares = ", ".join(f"seed {f.seed}: {f.explained:.1%}" for f in tried)
    raise AutoencoderFitError(
        f"the gate's autoencoder did not learn to redraw the {len(images)} training images in {attempts} "
        f"fits of {epochs} epochs ({shares} of the mean image's error removed; at least "
        f"{min_explained:.0%} expected): it would only measure likeness to their mean image. Export again "
        f"from other seeds (cxr-export --autoencoder-seed {seed + attempts}) or with more training images"
    )


def ssim_threshold(values: NDArray[np.floating], acceptance: float) -> float:
    """The SSIM above which ``acceptance`` of validation images lie (:func:`threshold_at` of 1 - SSIM,
    at :data:`AUTOENCODER_CONFIDENCE`)."""
    dissimilarity = np.maximum(1.0 - np.asarray(values, dtype=np.float64), MIN_DISSIMILARITY)
    return 1.0 - threshold_at(dissimilarity, acceptance, AUTOENCODER_CONFIDENCE)


def wanted_formats(entries: Sequence[ModelEntry]) -> dict[str, str | None]:
    """Classifier model -> the autoencoder format it runs with (same runtime; INT8 with INT8), or None."""
    by_runtime = {"onnxruntime": ("onnx", "onnx-int8"), "litert": ("tflite", "tflite-int8")}
    wanted: dict[str, str | None] = {}
    for entry in entries:
        pair = by_runtime.get(entry.runtime)
        wanted[entry.name] = None if pair is None else (pair[1] if entry.precision == "int8" else pair[0])
    return wanted


def export_onnx(model: torch.nn.Module, path: Path, size: int) -> None:
    """The autoencoder as FP32 ONNX: input ``input`` (batch, 1, s, s), output ``reconstruction``."""
    onnx = require("onnx", extra="export", purpose="the autoencoder's ONNX export")
    example = torch.zeros((1, 1, size, size), dtype=torch.float32)
    with torch.no_grad():
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[RECONSTRUCTION_ROLE],
            dynamic_axes={INPUT_NAME: {0: "batch"}, RECONSTRUCTION_ROLE: {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)))


def _tensor(name: str, role: str, size: int, layout: str, batch: int | None = None) -> TensorSpec:
    shape: tuple[int | None, ...] = (batch, 1, size, size) if layout == "NCHW" else (batch, size, size, 1)
    return TensorSpec(name=name, role=role, shape=shape, layout=layout)  # type: ignore[arg-type]


def _onnx_part(fmt: str, size: int, quantization: dict[str, Any] | None) -> AutoencoderFile:
    row = FORMATS[fmt]
    return AutoencoderFile(
        file=FILE_NAMES[fmt],
        format=fmt,
        precision=row.precision,
        runtime=row.runtime,
        input=_tensor(INPUT_NAME, "input", size, "NCHW"),
        output=_tensor(RECONSTRUCTION_ROLE, RECONSTRUCTION_ROLE, size, "NCHW"),
        golden_ssim=(),
        golden_tolerance=GOLDEN_TOLERANCE[row.precision],
        quantization=quantization,
    )


def build_files(
    model: torch.nn.Module,
    formats: set[str],
    folder: Path,
    work: Path,
    calibration: NDArray[np.float32],
    size: int,
    quant: QuantConfig,
) -> dict[str, AutoencoderFile]:
    """Write the autoencoder files of ``formats`` into ``folder``; a failed format is logged, left out."""
    parts: dict[str, AutoencoderFile] = {}
    fp32 = work / "autoencoder-fp32.onnx"
    export_onnx(model, fp32, size)
    if "onnx" in formats:
        shutil.copyfile(fp32, folder / FILE_NAMES["onnx"])
        parts["onnx"] = _onnx_part("onnx", size, None)
    if "onnx-int8" in formats:
        from quantize.onnx_int8 import quantize_int8

        config = replace(
            quant, keep_head_float=False, layer_report=False, keep_float_layers=0, rewrite_batchnorm=False
        )
        try:
            info = quantize_int8(fp32, folder / FILE_NAMES["onnx-int8"], calibration, config)
            parts["onnx-int8"] = _onnx_part("onnx-int8", size, info)
        except CxrEdgeError as exc:
            logger.warning("autoencoder onnx-int8 failed: %s", exc)
    tflite = {f for f in formats if f.startswith("tflite")}
    if tflite:
        from quantize.autoencoder_tflite import build_tflite

        parts.update(
            build_tflite(fp32, tflite, folder, work, calibration, size, FILE_NAMES, GOLDEN_TOLERANCE)
        )
    return parts


def export_autoencoder(
    splits: Any,
    spec: PreprocessSpec,
    train_count: int,
    validation: NDArray[np.float32],
    golden_inputs: NDArray[np.float32],
    entries: Sequence[ModelEntry],
    folder: Path,
    work: Path,
    *,
    epochs: int,
    seed: int,
    acceptance: float,
    quant: QuantConfig,
    progress: bool = False,
) -> tuple[AutoencoderInfo | None, dict[str, Any]]:
    """Fit, export and threshold the autoencoder (see the module docstring); ``(None, report)`` when it
    cannot be (no training split, too few validation images, no file for any model's runtime)."""
    report: dict[str, Any] = {}
    if epochs < 1:
        return None, {"skipped": "autoencoder_epochs=0"}
    if splits is None or not splits.train:
        logger.warning("no training split recorded: the bundle gets no autoencoder gate")
        return None, {"skipped": "no training split"}
    files = calib.evenly_spaced([Path(r.path) for r in splits.train], train_count)
    images = calib.CalibrationSet(source="training split", root=Path("."), files=tuple(files))
    tensors = calib.load_tensors(images, spec, progress, desc="autoencoder training images")
    size = DEFAULT_INPUT_SIZE
    train = autoencoder_input(tensors, spec, size)
    model, fit, tried = fit_learned_autoencoder(train, epochs, seed)
    report.update(train_images=len(train), epochs=epochs, seed=fit.seed, fit_seconds=round(fit.seconds, 2))
    report["fit_cpu_seconds"] = round(fit.cpu_seconds, 2)
    report["final_loss"] = round(fit.final_loss, 6)
    report["explained"] = round(fit.explained, 4)
    if len(tried) > 1:
        report["stalled_fits"] = [{"seed": f.seed, "explained": round(f.explained, 4)} for f in tried[:-1]]
    wanted = wanted_formats(entries)
    formats = {f for f in wanted.values() if f is not None}
    calibration = train[
        np.linspace(0, len(train) - 1, min(CALIBRATION_IMAGES, len(train))).round().astype(int)
    ]
    parts = build_files(model, formats, folder, work, calibration, size, quant)
    val_inputs = autoencoder_input(validation, spec, size)
    golden = autoencoder_input(golden_inputs, spec, size)
    thresholds_by_format: dict[str, float] = {}
    for fmt, part in list(parts.items()):
        try:
            backend = open_autoencoder(folder / part.file, part)
            try:
                values = reconstruction_ssim(backend, val_inputs, DEFAULT_SMOOTHING)
                golden_values = reconstruction_ssim(backend, golden, DEFAULT_SMOOTHING)
            finally:
                backend.close()
            thresholds_by_format[fmt] = ssim_threshold(values, acceptance)
        except CxrEdgeError as exc:  # too few validation images, or the file does not run here
            logger.warning("autoencoder %s: no threshold (%s); left out of the bundle", fmt, exc)
            (folder / part.file).unlink(missing_ok=True)
            del parts[fmt]
            continue
        parts[fmt] = replace(part, golden_ssim=tuple(float(v) for v in golden_values))
        report[fmt] = {
            "validation_ssim": {
                "min": round(float(values.min()), 4),
                "median": round(float(np.median(values)), 4),
                "max": round(float(values.max()), 4),
            },
            "threshold": round(thresholds_by_format[fmt], 4),
        }
    models: dict[str, str] = {}
    for name, fmt in wanted.items():
        if fmt in parts:
            models[name] = fmt
        elif fmt is not None and fmt.endswith("-int8") and fmt.removesuffix("-int8") in parts:
            models[name] = fmt.removesuffix("-int8")
            logger.warning("model %s: no INT8 autoencoder; it runs with the FP32 one", name)
        else:
            logger.warning(
                "model %s: no autoencoder file runs on its runtime; it gets no reconstruction check", name
            )
    for fmt in set(parts) - set(models.values()):  # built only as a reference: not shipped
        (folder / parts.pop(fmt).file).unlink(missing_ok=True)
    if not models:
        return None, {**report, "skipped": "no autoencoder file for any model"}
    info = AutoencoderInfo(
        input_size=size,
        input_from=INPUT_FROM,
        files=parts,
        models=models,
        thresholds={name: round(thresholds_by_format[fmt], 6) for name, fmt in models.items()},
        acceptance=acceptance,
        epochs=epochs,
        seed=fit.seed,
        train_images=len(train),
        validation_images=len(val_inputs),
        fitted_on=f"training split of {splits.name} ({len(train)} images, {size} px grey)",
        smoothing=DEFAULT_SMOOTHING,
    )
    return info, report
