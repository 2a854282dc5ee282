"""The descriptive parts of a bundle manifest: architecture, outputs, CAM, provenance.

Split from :mod:`quantize.pipeline` so the pipeline module holds only the export steps.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cxr_core.bundle import CLASSIFIER_NAME, CamInfo, Manifest, Provenance, sha256_file
from cxr_core.bundle.clinical import DEFAULT_INTENDED_USE, LABEL_SOURCES, ClinicalInfo, TrainingData
from cxr_core.clinical_stats import validation_figures
from quantize.onnx_export import probability_output_doc
from training.checkpoint import Checkpoint, cxr_edge_version


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


def toolchain_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("torch", "onnx", "onnxruntime", "numpy", "tensorflow", "onnx2tf", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(checkpoint: Checkpoint) -> Provenance:
    run = checkpoint.run_config
    dataset = checkpoint.state.get("dataset") or run.get("dataset")
    data_root = run.get("data_root")
    return Provenance(
        checkpoint=str(checkpoint.path.resolve()),
        checkpoint_sha256=sha256_file(checkpoint.path),
        checkpoint_epoch=None if checkpoint.epoch is None else int(checkpoint.epoch),
        training_dataset=None if dataset is None else str(dataset),
        training_data_root=None if data_root is None else str(data_root),
        trained_with_cxr_edge=None if checkpoint.version is None else str(checkpoint.version),
        exported_with_cxr_edge=cxr_edge_version(),
        exported_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        git_commit=git_commit(),
        toolchain=toolchain_versions(),
    )


def base_manifest(model: torch.nn.Module, checkpoint: Checkpoint, points: list[float]) -> Manifest:
    """The descriptive part of the manifest; the pipeline adds models, files and parity."""
    config = checkpoint.model_config
    return Manifest(
        architecture="densenet121" if config.tag == "chexnet-densenet121" else config.tag,
        labels=tuple(checkpoint.labels),
        preprocess=checkpoint.spec,
        models=(),
        files={},
        model_config=config.to_dict(),
        outputs={
            "probabilities": probability_output_doc(config.head),
            "feature_map": "CAM input (N, C, h, w): "
            + (
                "ReLU'd encoder features, average-pooled by the head"
                if config.architecture == "chexnet"
                else "transition map after BatchNorm, max-pooled by the head (z = mu in eval mode)"
            ),
        },
        operating_points=tuple(float(p) for p in points) if checkpoint.operating_points is not None else None,
        operating_points_source="checkpoint (Youden J on validation)"
        if checkpoint.operating_points is not None
        else "none in checkpoint; parity used 0.5",
        cam=CamInfo(
            file=CLASSIFIER_NAME,
            pooling="mean" if config.architecture == "chexnet" else "max",
            note="logit = pool(feature_map) @ weight.T + bias; probability = sigmoid(logit)",
        ),
    )


def clinical_info(
    checkpoint: Checkpoint,
    splits: Any | None,
    labels: Sequence[str],
    points: Sequence[float],
    evaluation: tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], str] | None,
) -> ClinicalInfo:
    """Intended use, training data and validation figures for the manifest's ``clinical`` block.

    ``evaluation`` is ``(truth, mask, reference probabilities, description)`` of the held-out
    labelled validation images (PyTorch FP32 outputs), or None when the export had no labelled set.
    Operating points come from training (Youden J on the whole validation split); a finding whose
    validation split had no positive or no negative image got the 0.5 fallback.
    """
    run = checkpoint.run_config
    dataset = str(checkpoint.state.get("dataset") or run.get("dataset") or "unknown")
    images: dict[str, int] = {}
    patients: dict[str, int] = {}
    threshold_positives: list[int | None] = [None] * len(labels)
    sources = ["youden" if checkpoint.operating_points is not None else "fallback"] * len(labels)
    if splits is not None:
        from training.evaluation import evaluation_truth

        for name in ("train", "val", "test"):
            records = splits.split(name)
            images[name] = len(records)
            patients[name] = len({r.patient_id for r in records})
        truth, mask, _ = evaluation_truth(splits.val, splits.label_set, study_level=False)
        used = np.asarray(mask) > 0
        positives = ((np.asarray(truth) > 0.5) & used).sum(axis=0)
        negatives = ((np.asarray(truth) <= 0.5) & used).sum(axis=0)
        threshold_positives = [int(p) for p in positives]
        sources = [
            "youden" if checkpoint.operating_points is not None and p > 0 and n > 0 else "fallback"
            for p, n in zip(positives, negatives, strict=True)
        ]
    training = TrainingData(
        dataset=dataset,
        label_source=LABEL_SOURCES.get(dataset, "unknown"),
        uncertainty_policy=run.get("uncertainty_policy"),
        frontal_only=run.get("frontal_only"),
        images=images,
        patients=patients,
    )
    validation = None
    if evaluation is not None:
        truth, mask, scores, description = evaluation
        validation = validation_figures(
            labels,
            truth,
            mask,
            scores,
            points,
            threshold_positives,
            sources,
            source=description,
            note=(
                "Held-out validation images (not used for INT8 calibration), scored by the FP32 model. "
                "The operating points were chosen on the whole validation split, which includes these "
                "images, so sensitivity and specificity here are optimistic; a site should measure its "
                "own with cxr-calibrate."
            ),
        )
    return ClinicalInfo(
        intended_use=DEFAULT_INTENDED_USE,
        synthetic=dataset == "synthetic",
        training_data=training,
        validation=validation,
    )
