"""Checkpoint -> verified model bundle: build each format, measure parity, gate, write atomically.

:func:`export_bundle` is the library function behind ``cxr-export``. Steps:

1. load the checkpoint's model (eval mode) and its PreprocessSpec, labels and operating points;
2. choose the calibration images (the checkpoint's validation split, or a directory) and
   preprocess them once with the one ``preprocess``;
3. run PyTorch FP32 on them: the reference for parity and the golden set;
4. build every requested format from the registry into a staging folder beside the target; a
   format that fails becomes a failed row; each built file is run through its runtime and compared;
5. refuse to publish when a format breaks its parity thresholds (unless the gate is off);
6. write golden.npz, classifier.npz and manifest.json, then rename the staging folder into place.
"""

from __future__ import annotations

import datetime as _dt
import logging
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cxr_core.bundle import CLASSIFIER_NAME, GOLDEN_NAME, sha256_file
from cxr_core.errors import CxrEdgeError
from quantize import calibration as calib
from quantize.bundle_writer import staging, write_manifest, write_npz
from quantize.formats import DEFAULT_FORMATS, BuildContext, ExportFormat, parse_formats
from quantize.onnx_export import probability_output_doc
from quantize.onnx_int8 import QuantConfig
from quantize.run_exported import run_exported
from quantize.parity import FP32_THRESHOLDS, INT8_THRESHOLDS, ParityThresholds, check_gate, compare, failures
from training.checkpoint import Checkpoint, cxr_edge_version, load_model

logger = logging.getLogger(__name__)


class ExportError(CxrEdgeError, RuntimeError):
    """No format could be built, or the export request is invalid."""


@dataclass(frozen=True)
class ExportRequest:
    """Everything :func:`export_bundle` needs; the CLI maps its flags onto this."""

    checkpoint: Path
    out: Path
    formats: tuple[str, ...] = DEFAULT_FORMATS
    calibration_images: int = calib.DEFAULT_CALIBRATION_IMAGES
    calibration_dir: Path | None = None
    golden_images: int = 4
    quant: QuantConfig = field(default_factory=QuantConfig)
    int8_thresholds: ParityThresholds = INT8_THRESHOLDS
    fp32_thresholds: ParityThresholds = FP32_THRESHOLDS
    enforce_gate: bool = True
    progress: bool = False


@dataclass
class ExportResult:
    """The published bundle's path, its manifest and one row per requested format."""

    path: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]


def torch_reference(
    model: torch.nn.Module, inputs: NDArray[np.float32], head: str, batch: int = 8
) -> dict[str, Any]:
    """PyTorch FP32 ``probabilities`` and ``feature_map`` for ``inputs`` (the parity reference)."""
    from training.models import probabilities

    probs, maps = [], []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            logits, feature_map = model(torch.from_numpy(inputs[start : start + batch]), return_features=True)
            probs.append(probabilities(logits, head).numpy())
            maps.append(feature_map.numpy())
    return {"probabilities": np.concatenate(probs), "feature_map": np.concatenate(maps)}


def _calibration_set(request: ExportRequest, checkpoint: Checkpoint) -> calib.CalibrationSet:
    if request.calibration_dir is not None:
        return calib.from_directory(request.calibration_dir, request.calibration_images)
    return calib.from_run_config(checkpoint.run_config, request.calibration_images, checkpoint.path)


def _build_row(
    fmt: ExportFormat,
    context: BuildContext,
    folder: Path,
    reference: dict[str, Any],
    points: list[float],
    thresholds: ParityThresholds,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Build one format; return its report row and (when built) its manifest model entry."""
    row: dict[str, Any] = {"name": fmt.name, "file": fmt.file_name, "int8": fmt.int8, "status": "failed"}
    try:
        info = fmt.builder(context, folder / fmt.file_name)
        description = {**info, "format": fmt.name, "runtime": fmt.runtime}
        outputs = run_exported(folder / fmt.file_name, description, context.calibration)
    except Exception as exc:  # a failed format is a reported row, not a crash (convention 3)
        logger.warning("format %s failed: %s: %s", fmt.name, type(exc).__name__, exc)
        (folder / fmt.file_name).unlink(missing_ok=True)
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row, None
    figures = compare(reference, outputs, points)
    reasons = failures(figures, thresholds)
    row.update(status="ok", parity=figures, thresholds=thresholds.to_dict(), failures=reasons)
    entry = {
        "name": fmt.name,
        "file": fmt.file_name,
        "format": fmt.name,
        "int8": fmt.int8,
        "runtime": fmt.runtime,
        **info,
        "golden_tolerance": {
            "max_abs_dp": thresholds.max_abs_dp,
            "feature_map_rel_error": thresholds.max_feature_rel_error,
        },
    }
    return row, entry


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("torch", "onnx", "onnxruntime", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _provenance(checkpoint: Checkpoint) -> dict[str, Any]:
    run = checkpoint.run_config
    return {
        "checkpoint": str(checkpoint.path.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint.path),
        "checkpoint_epoch": checkpoint.epoch,
        "training_dataset": checkpoint.state.get("dataset") or run.get("dataset"),
        "training_data_root": run.get("data_root"),
        "trained_with_cxr_edge": checkpoint.version,
        "exported_with_cxr_edge": cxr_edge_version(),
        "exported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "toolchain": _versions(),
    }


def _base_manifest(model: torch.nn.Module, checkpoint: Checkpoint, points: list[float]) -> dict[str, Any]:
    config = checkpoint.model_config
    return {
        "architecture": "densenet121" if config.tag == "chexnet-densenet121" else config.tag,
        "model_config": config.to_dict(),
        "labels": list(checkpoint.labels),
        "preprocess": checkpoint.spec.to_dict(),
        "outputs": {
            "probabilities": probability_output_doc(config.head),
            "feature_map": "CAM input (N, C, h, w): "
            + (
                "ReLU'd encoder features, average-pooled by the head"
                if config.architecture == "chexnet"
                else "transition map after BatchNorm, max-pooled by the head (z = mu in eval mode)"
            ),
        },
        "operating_points": points if checkpoint.operating_points is not None else None,
        "operating_points_source": "checkpoint (Youden J on validation)"
        if checkpoint.operating_points is not None
        else "none in checkpoint; parity used 0.5",
        "cam": {
            "file": CLASSIFIER_NAME,
            "pooling": "mean" if config.architecture == "chexnet" else "max",
            "note": "logit = pool(feature_map) @ weight.T + bias; probability = sigmoid(logit)",
        },
    }


def export_bundle(request: ExportRequest) -> ExportResult:
    """Export ``request.checkpoint`` into the bundle folder ``request.out`` (see the module docstring).

    Raises :class:`ExportError` when no format builds and :class:`~quantize.parity.ParityGateError`
    when the gate refuses a format; in both cases nothing is written at ``request.out``.
    """
    formats = parse_formats(request.formats)
    if request.golden_images < 1:
        raise ExportError(f"golden_images={request.golden_images}; expected at least 1")
    model, checkpoint = load_model(request.checkpoint)
    calibration = _calibration_set(request, checkpoint)
    tensors = calib.load_tensors(calibration, checkpoint.spec, request.progress)
    head = checkpoint.model_config.head
    reference = torch_reference(model, tensors, head)
    points = list(checkpoint.operating_points or [0.5] * len(checkpoint.labels))
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cxr-export-") as work, staging(request.out) as folder:
        context = BuildContext(model, checkpoint.spec, tensors, Path(work), request.quant)
        for fmt in _progress(formats, request.progress):
            thresholds = request.int8_thresholds if fmt.int8 else request.fp32_thresholds
            row, entry = _build_row(fmt, context, folder, reference, points, thresholds)
            rows.append(row)
            if entry is not None:
                entries.append(entry)
        if not entries:
            detail = "; ".join(f"{r['name']}: {r.get('error')}" for r in rows)
            raise ExportError(f"no export format could be built from {request.checkpoint} ({detail})")
        report = {row["name"]: row for row in rows}
        if request.enforce_gate:
            check_gate(report)
        golden = min(request.golden_images, len(tensors))
        write_npz(
            folder / GOLDEN_NAME,
            inputs=tensors[:golden],
            probabilities=reference["probabilities"][:golden].astype(np.float32),
            feature_map=reference["feature_map"][:golden].astype(np.float32),
        )
        weight, bias = (t.detach().cpu().numpy().astype(np.float32) for t in model.cam_weights())
        write_npz(folder / CLASSIFIER_NAME, weight=weight, bias=bias)
        manifest = _base_manifest(model, checkpoint, points)
        manifest.update(
            models=entries,
            export_report=rows,
            parity={
                "reference": "PyTorch FP32, eval mode",
                "images": "the calibration images",
                "formats": report,
                "gate_enforced": request.enforce_gate,
            },
            golden={
                "file": GOLDEN_NAME,
                "images": golden,
                "files": calibration.names[:golden],
                "reference": "PyTorch FP32 outputs",
            },
            calibration=calibration.to_dict(),
            provenance=_provenance(checkpoint),
        )
        written = write_manifest(folder, manifest)
    logger.info("bundle written to %s (%d of %d formats built)", request.out, len(entries), len(formats))
    return ExportResult(path=Path(request.out), manifest=written, rows=rows)


def _progress(items: list[ExportFormat], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="formats", unit="format")
