"""The descriptive parts of a bundle manifest: architecture, outputs, CAM, provenance.

Split from :mod:`quantize.pipeline` so the pipeline module holds only the export steps.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

import torch

from cxr_core.bundle import CLASSIFIER_NAME, CamInfo, Manifest, Provenance, sha256_file
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
