"""Checkpoint -> verified model bundle: build each format, measure parity, gate, write atomically.

:func:`export_bundle` is the library function behind ``cxr-export``. Steps:

1. load the checkpoint's model (eval mode) and its PreprocessSpec, labels and operating points;
2. choose the calibration images (the checkpoint's validation split, or a directory) and the
   labelled held-out evaluation images (the rest of the validation split), and preprocess both
   once with the one ``preprocess``;
3. run PyTorch FP32 on them: the reference for parity and the golden set;
4. build every requested format from the registry into a staging folder beside the target; a
   format that fails becomes a failed row; each built file is run through its runtime on the
   evaluation images and compared (probabilities, AUC, decisions, feature map, CAM);
5. refuse to publish when a format breaks its parity thresholds (unless the gate is off);
6. time each passing format and name the fastest per runtime as the bundle's recommendation;
7. write golden.npz, classifier.npz and manifest.json; run the whole learned input gate over the
   validation images and refuse to publish when it refuses more than 2% (quantize/gate_check.py);
   then rename the staging folder into place.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cxr_core.bundle import (
    CLASSIFIER_NAME,
    GATE_NAME,
    GOLDEN_NAME,
    QUALITY_NAME,
    GateFit,
    GateInfo,
    GoldenInfo,
    Manifest,
    ModelEntry,
)
from cxr_core.bundle.signing import signed_by
from cxr_core.bundle.writer import staging, write_manifest, write_npz
from cxr_core.feature_gate import (
    DEFAULT_ACCEPTANCE,
    SIGNAL,
    FeatureGate,
    FeatureGateError,
    pooled_features,
    threshold_at,
)
from cxr_core.gate_signals import share_acceptance
from cxr_core.optional import require
from cxr_core.parity import (
    FP16_THRESHOLDS,
    FP32_THRESHOLDS,
    INT8_THRESHOLDS,
    ParityThresholds,
    check_gate,
    compare,
    failures,
    golden_tolerance_from_drift,
)
from quantize import calibration as calib
from quantize import evaluation_set as evalset
from quantize.autoencoder_export import export_autoencoder
from quantize.feature_gate_fit import GateTraining, fit_for_file, needs_own_fit, own_gate_file
from quantize.formats import DEFAULT_FORMATS, BuildContext, ExportFormat, parse_formats
from quantize.gate_check import validate_staged
from quantize.manifest_parts import base_manifest, clinical_info, provenance
from quantize.onnx_export import ExportError
from quantize.onnx_int8 import QuantConfig
from quantize.quality_fit import fit_quality_from_splits
from quantize.run_exported import run_exported
from quantize.speed import recommend, time_format
from training.autoencoder import DEFAULT_EPOCHS as AUTOENCODER_EPOCHS
from training.checkpoint import Checkpoint, load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportRequest:
    """Everything :func:`export_bundle` needs; the CLI maps its flags onto this."""

    checkpoint: Path
    out: Path
    formats: tuple[str, ...] = DEFAULT_FORMATS
    calibration_images: int = calib.DEFAULT_CALIBRATION_IMAGES
    calibration_dir: Path | None = None
    #: Dataset folder overriding the checkpoint's recorded ``data_root`` (``--data-root``).
    data_root: Path | None = None
    evaluation_images: int = evalset.DEFAULT_EVALUATION_IMAGES
    golden_images: int = 4
    quant: QuantConfig = field(default_factory=QuantConfig)
    int8_thresholds: ParityThresholds = INT8_THRESHOLDS
    fp32_thresholds: ParityThresholds = FP32_THRESHOLDS
    fp16_thresholds: ParityThresholds = FP16_THRESHOLDS
    enforce_gate: bool = True
    time_formats: bool = True
    #: Training images the learned feature gate is fitted on (evenly spaced over the training split).
    gate_train_images: int = 1000
    gate_acceptance: float = DEFAULT_ACCEPTANCE
    #: Epochs of the gate's autoencoder (quantize/autoencoder_export.py); 0: no autoencoder signal.
    autoencoder_epochs: int = AUTOENCODER_EPOCHS
    autoencoder_seed: int = 0
    #: Refuse to publish when the whole learned gate refuses > 2% of the validation images of any
    #: format (quantize/gate_check.py); False publishes anyway (``--allow-high-refusal-rate``).
    enforce_refusal_rate: bool = True
    progress: bool = False
    #: PEM Ed25519 key that signs the manifest; None: the user's key (created on first use).
    signing_key: Path | None = None


@dataclass
class ExportResult:
    """The published bundle's path, its manifest and one row per requested format."""

    path: Path
    manifest: Manifest
    rows: list[dict[str, Any]]
    #: Id of the key that signed the manifest (docs/bundle-format.md, "Signature and trust").
    key_id: str | None = None


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


@dataclass(frozen=True)
class ParitySet:
    """The images parity is measured on: preprocessed tensors, optional truth/mask, and what they are."""

    tensors: NDArray[np.float32]
    truth: NDArray[np.float32] | None
    mask: NDArray[np.float32] | None
    description: dict[str, Any]


def _image_sets(
    request: ExportRequest, checkpoint: Checkpoint
) -> tuple[calib.CalibrationSet, evalset.EvaluationSet | None, Any | None]:
    """Calibration images, the held-out evaluation set and the splits (when the checkpoint records them)."""
    if request.calibration_dir is not None:
        return calib.from_directory(request.calibration_dir, request.calibration_images), None, None
    splits, root = calib.validation_split(checkpoint.run_config, checkpoint.path, request.data_root)
    calibration = calib.from_splits(splits, root, request.calibration_images)
    return calibration, evalset.from_splits(splits, root, calibration, request.evaluation_images), splits


def _thresholds(fmt: ExportFormat, request: ExportRequest) -> ParityThresholds:
    """The request's parity thresholds for the format's precision (from the core format table)."""
    return {
        "int8": request.int8_thresholds,
        "fp16": request.fp16_thresholds,
        "fp32": request.fp32_thresholds,
    }[fmt.precision]


#: The sha256 of an entry before the bundle's files are hashed (write_manifest fills it in).
UNHASHED = "0" * 64


def model_entry(fmt: ExportFormat, info: dict[str, Any]) -> ModelEntry:
    """The typed manifest entry of a built file, from its builder's description (validated)."""
    return ModelEntry.from_dict(
        {
            **info,
            "name": fmt.name,
            "file": fmt.file_name,
            "format": fmt.name,
            "precision": fmt.precision,
            "runtime": fmt.runtime,
            "sha256": UNHASHED,
        },
        f"format {fmt.name}",
    )


def _build_row(
    fmt: ExportFormat,
    context: BuildContext,
    folder: Path,
    parity: ParitySet,
    references: tuple[dict[str, Any], dict[str, Any]],
    points: list[float],
    thresholds: ParityThresholds,
    cam_weight: NDArray[np.float32],
    gate: FeatureGatePlan | None = None,
) -> tuple[dict[str, Any], ModelEntry | None]:
    """Build one format; return its report row and (when built) its manifest model entry. An INT8
    format gets its own feature gate, recorded in ``gate.own_fits`` (quantize/feature_gate_fit.py)."""
    reference, golden = references
    row: dict[str, Any] = {
        "name": fmt.name,
        "file": fmt.file_name,
        "precision": fmt.precision,
        "status": "failed",
    }
    path = folder / fmt.file_name
    try:
        entry = model_entry(fmt, fmt.builder(context, path))
        outputs = run_exported(path, entry, parity.tensors)
        golden_outputs = run_exported(path, entry, golden["inputs"])
    except Exception as exc:  # a failed format is a reported row, not a crash (convention 3)
        logger.warning("format %s failed: %s: %s", fmt.name, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row, None
    figures = compare(reference, outputs, points, parity.truth, parity.mask, cam_weight)
    reasons = failures(figures, thresholds)
    row.update(status="ok", parity=figures, thresholds=thresholds.to_dict(), failures=reasons)
    if gate is not None:  # this file's own threshold: INT8 features differ from FP32 ones
        feature_gate, acceptance = gate.shared, gate.acceptance
        if needs_own_fit(fmt.precision):
            feature_gate = gate.own_fits[fmt.name] = fit_for_file(path, entry, gate.training)
        maps = outputs["feature_map"]
        if context.calibration is not parity.tensors:  # calibration images are held out from the gate too
            maps = np.concatenate([run_exported(path, entry, context.calibration)["feature_map"], maps])
        distances = feature_gate.distances(pooled_features(maps, feature_gate.pooling))
        row["gate_threshold_images"] = int(len(distances))
        try:
            row["gate_threshold"] = threshold_at(distances, acceptance)
        except FeatureGateError as exc:  # too few held-out images: no gate rather than a wrong one
            logger.warning("format %s: no learned-gate threshold (%s)", fmt.name, exc)
    drift = compare(golden, golden_outputs, [0.5] * golden["probabilities"].shape[1])
    tolerance = golden_tolerance_from_drift(fmt.precision, thresholds, drift)
    return row, replace(entry, golden_tolerance=tolerance)


def _parity_set(
    request: ExportRequest,
    checkpoint: Checkpoint,
    calibration: calib.CalibrationSet,
    calibration_tensors: NDArray[np.float32],
    evaluation: evalset.EvaluationSet | None,
) -> ParitySet:
    if evaluation is None:
        return ParitySet(
            calibration_tensors,
            None,
            None,
            {**calibration.to_dict(), "role": "calibration images (no labels)"},
        )
    tensors = calib.load_tensors(evaluation, checkpoint.spec, request.progress, desc="evaluation images")
    return ParitySet(tensors, evaluation.truth, evaluation.mask, evaluation.to_dict())


@dataclass
class FeatureGatePlan:
    """The shared feature gate (PyTorch FP32 features of the training images), each signal's
    acceptance, the training images (to fit an INT8 file's own gate) and the own fits made so far."""

    shared: FeatureGate
    acceptance: float
    training: GateTraining
    own_fits: dict[str, FeatureGate] = field(default_factory=dict)


def _fit_gate(
    request: ExportRequest,
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    splits: Any | None,
    pooling: str,
    acceptance: float,
) -> FeatureGatePlan | None:
    """The feature gate fitted on the training split (never on out-of-distribution images), or None."""
    if splits is None or not splits.train or request.gate_train_images < 2:
        logger.warning("no training split recorded: the bundle gets no learned feature gate")
        return None
    files = calib.evenly_spaced([Path(r.path) for r in splits.train], request.gate_train_images)
    images = calib.CalibrationSet(source="training split", root=Path("."), files=tuple(files))
    tensors = calib.load_tensors(images, checkpoint.spec, request.progress, desc="gate training images")
    maps = torch_reference(model, tensors, checkpoint.model_config.head)["feature_map"]
    gate = FeatureGate.fit(pooled_features(maps, pooling), pooling)
    logger.info("feature gate fitted on %d training images (shrinkage %.3f)", len(files), gate.shrinkage)
    return FeatureGatePlan(gate, acceptance, GateTraining(images, checkpoint.spec, pooling))


def export_bundle(request: ExportRequest) -> ExportResult:
    """Export ``request.checkpoint`` into the bundle folder ``request.out`` (see the module docstring).

    Raises :class:`ExportError` when no format builds, :class:`~quantize.parity.ParityGateError`
    when the gate refuses a format and :class:`~quantize.gate_check.GateRefusalRateError` when the
    learned input gate refuses over 2% of the validation images; then nothing is written at ``request.out``.
    """
    formats = parse_formats(request.formats)
    if request.golden_images < 1:
        raise ExportError(f"golden_images={request.golden_images}; expected at least 1")
    model, checkpoint = load_model(request.checkpoint)
    calibration, evaluation, splits = _image_sets(request, checkpoint)
    tensors = calib.load_tensors(calibration, checkpoint.spec, request.progress)
    parity = _parity_set(request, checkpoint, calibration, tensors, evaluation)
    head = checkpoint.model_config.head
    golden_count = min(request.golden_images, len(tensors))
    golden = {"inputs": tensors[:golden_count], **torch_reference(model, tensors[:golden_count], head)}
    reference = torch_reference(model, parity.tensors, head)
    points = list(checkpoint.operating_points or [0.5] * len(checkpoint.labels))
    weight, bias = (t.detach().cpu().numpy().astype(np.float32) for t in model.cam_weights())
    pooling = "mean" if checkpoint.model_config.architecture == "chexnet" else "max"
    # The bundle's refusal budget (1 - gate_acceptance) is shared by its independent signal groups:
    # feature distance, autoencoder (when fitted) and the quality checks (which share theirs again).
    parts = 2 + (request.autoencoder_epochs > 0)
    signal_acceptance = round(share_acceptance(request.gate_acceptance, parts), 6)
    gate = _fit_gate(request, checkpoint, model, splits, pooling, signal_acceptance)
    quality = fit_quality_from_splits(splits, request.gate_train_images, signal_acceptance, request.progress)
    rows: list[dict[str, Any]] = []
    entries: list[ModelEntry] = []
    with tempfile.TemporaryDirectory(prefix="cxr-export-") as work, staging(request.out) as folder:
        context = BuildContext(model, checkpoint.spec, tensors, Path(work), request.quant)
        for fmt in _progress(formats, request.progress):
            thresholds = _thresholds(fmt, request)
            row, entry = _build_row(
                fmt, context, folder, parity, (reference, golden), points, thresholds, weight, gate
            )
            rows.append(row)
            if entry is not None:
                entries.append(entry)
        if not entries:
            detail = "; ".join(f"{r['name']}: {r.get('error')}" for r in rows)
            raise ExportError(f"no export format could be built from {request.checkpoint} ({detail})")
        report = {row["name"]: row for row in rows}
        if request.enforce_gate:
            check_gate(report)
        if request.time_formats:
            for entry in entries:
                report[entry.name]["latency"] = time_format(folder / entry.file, entry, tensors[:1])
        write_npz(
            folder / GOLDEN_NAME,
            inputs=golden["inputs"],
            probabilities=golden["probabilities"].astype(np.float32),
            feature_map=golden["feature_map"].astype(np.float32),
        )
        write_npz(folder / CLASSIFIER_NAME, weight=weight, bias=bias)
        gate_info = None
        thresholds = {
            e.name: report[e.name]["gate_threshold"] for e in entries if "gate_threshold" in report[e.name]
        }
        if gate is not None and len(thresholds) == len(entries):
            fitted, train_images = gate.shared, len(gate.training.images.files)
            write_npz(folder / GATE_NAME, **fitted.arrays())
            model_fits = {}
            for name, own in gate.own_fits.items():
                write_npz(folder / own_gate_file(name), **own.arrays())
                model_fits[name] = GateFit(
                    file=own_gate_file(name),
                    shrinkage=round(own.shrinkage, 6),
                    fitted_on=f"its own features of the same {train_images} training images",
                )
            gate_info = GateInfo(
                signal=SIGNAL,
                pooling=pooling,  # type: ignore[arg-type]
                normalization=fitted.normalization,  # type: ignore[arg-type]
                shrinkage=round(fitted.shrinkage, 6),
                acceptance=signal_acceptance,
                fitted_on=f"training split of {splits.name} ({train_images} images, PyTorch FP32 features)",
                train_images=train_images,
                validation_images=int(
                    report[entries[0].name].get("gate_threshold_images", len(parity.tensors))
                ),
                thresholds=thresholds,
                model_fits=model_fits,
            )
        if quality is not None:
            write_npz(folder / QUALITY_NAME, **quality[1])
        # Every held-out validation image sets the autoencoder's thresholds, as the feature distance's:
        # the classifier's INT8 calibration images were never seen by the autoencoder either.
        held_out = (tensors, parity.tensors) if parity.tensors is not tensors else (tensors,)
        validation = np.concatenate(held_out)
        autoencoder, autoencoder_report = export_autoencoder(
            splits, checkpoint.spec, request.gate_train_images, validation, golden["inputs"], entries,
            folder, Path(work), epochs=request.autoencoder_epochs, seed=request.autoencoder_seed,
            acceptance=signal_acceptance, quant=request.quant, progress=request.progress,
        )  # fmt: skip
        manifest = base_manifest(model, checkpoint, points)
        manifest = replace(
            manifest,
            models=tuple(entries),
            recommended=recommend(entries, report),
            export_report=rows,
            parity={
                "reference": "PyTorch FP32, eval mode",
                "images": parity.description,
                "formats": report,
                "gate_enforced": request.enforce_gate,
                "autoencoder": autoencoder_report,
            },
            golden=GoldenInfo(
                file=GOLDEN_NAME,
                images=golden_count,
                files=tuple(calibration.names[:golden_count]),
                reference="PyTorch FP32 outputs",
            ),
            calibration=calibration.to_dict(),
            provenance=provenance(checkpoint),
            gate=gate_info,
            quality=None if quality is None else quality[0],
            autoencoder=autoencoder,
            clinical=clinical_info(
                checkpoint,
                splits,
                checkpoint.labels,
                points,
                None
                if parity.truth is None
                else (parity.truth, parity.mask, reference["probabilities"], parity.description["source"]),
            ),
        )
        # the images the thresholds were set on: every held-out validation image
        validation_files = calibration.files + (evaluation.files if evaluation is not None else ())
        manifest = validate_staged(folder, manifest, validation_files, request.enforce_refusal_rate)
        written = write_manifest(folder, manifest, signing_key=request.signing_key)
        key = signed_by(folder)
    logger.info("bundle written to %s (%d of %d formats built)", request.out, len(entries), len(formats))
    return ExportResult(path=Path(request.out), manifest=written, rows=rows, key_id=key)


def _progress(items: list[ExportFormat], enabled: bool) -> Any:
    if not enabled:
        return items
    tqdm = require("tqdm", extra="export", purpose="export progress bars").tqdm
    return tqdm(items, desc="formats", unit="format")
