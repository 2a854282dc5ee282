"""Evaluate a model on a split: predictions gathered over ranks, study aggregation, metrics, reports.

Used by the trainer after every epoch (validation) and by ``cxr-train evaluate`` for any split of
a checkpoint. Ground truth for metrics is the raw label of each finding: positive = 1; negative =
0 or not mentioned; uncertain labels are left out (U-Ignore), whatever policy trained the model.
For CheXpert (``study_level``) the scores and labels of a study's images are reduced to their
maximum before the metrics, as in the CheXpert evaluation protocol.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from cxr_core.calibrate import youden_operating_points
from cxr_core.labels import LabelSet
from training.checkpoint import load_model
from training.config import ConfigError, TrainConfig
from training.data.policies import encode_targets
from training.data.records import ImageRecord
from training.data.studies import aggregate_by_study
from training.data.torch_dataset import CxrImageDataset
from training.distributed import (
    ShardSampler,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    dist_info_from_env,
    gather_predictions,
    init_distributed,
)
from training.engine import (
    Runtime,
    configure_threads,
    limit_records,
    load_splits,
    make_loader,
    preflight,
    resolve_device,
    resolve_runtime,
)
from training.fileio import atomic_target
from training.loop import StepOptions, predict
from training.metrics import MetricsReport, compute_metrics, operating_point_stats
from training.reports import write_evaluation_reports, write_json

logger = logging.getLogger(__name__)


@dataclass
class EvalOutput:
    """Predictions and metrics of one split (rows are images, or studies when aggregated)."""

    report: MetricsReport
    probs: NDArray[np.float32]
    truth: NDArray[np.float32]
    mask: NDArray[np.float32]
    ids: tuple[str, ...]
    loss: float
    operating_points: NDArray[np.float64]
    seconds: float

    def save_npz(self, path: str | Path) -> Path:
        with atomic_target(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, probs=self.probs, truth=self.truth, mask=self.mask, ids=np.asarray(self.ids)
            )
        return Path(path)


def evaluation_truth(
    records: Sequence[ImageRecord], label_set: LabelSet, study_level: bool
) -> tuple[NDArray[np.float32], NDArray[np.float32], tuple[str, ...]]:
    """(truth, mask, row ids) for the metrics: one row per image, or per study when aggregated."""
    encoded = encode_targets(records, label_set, "u-ignore")
    truth, mask = encoded.targets.astype(np.float32), encoded.mask
    if not study_level:
        return truth, mask, tuple(str(r.path) for r in records)
    study_ids = [r.study_id for r in records]
    truth, ids = aggregate_by_study(truth, study_ids)
    mask, _ = aggregate_by_study(mask, study_ids)
    return truth, mask, ids


def evaluate_model(
    model: nn.Module,
    records: Sequence[ImageRecord],
    dataset: CxrImageDataset,
    label_set: LabelSet,
    runtime: Runtime,
    batch_size: int,
    num_workers: int,
    head: str,
    loss_fn: nn.Module | None = None,
    study_level: bool = False,
    progress: bool = False,
    desc: str = "val",
) -> EvalOutput:
    """Score every image of ``dataset`` (sharded over ranks), gather, aggregate, compute metrics.

    Every rank returns the same :class:`EvalOutput` (the predictions are all-gathered).
    """
    info = runtime.dist
    sampler = ShardSampler(len(dataset), info.rank, info.world_size)
    loader = make_loader(dataset, batch_size, sampler, num_workers, runtime.device)
    options = StepOptions(
        runtime.device, runtime.amp_dtype, runtime.channels_last, 0, progress and info.is_main
    )
    out = predict(model, loader, options, head, loss_fn, desc, num_labels=len(label_set))
    probs, _ = gather_predictions(out.probs, out.indices, len(dataset))
    loss_sum = all_reduce_sum(out.loss_sum)
    batches = all_reduce_sum(float(out.batches))
    scores = probs.numpy().astype(np.float32)
    truth, mask, ids = evaluation_truth(records, label_set, study_level)
    if study_level:
        scores, _ = aggregate_by_study(scores, [r.study_id for r in records])
    report = compute_metrics(truth, scores, label_set.labels, mask)
    points = youden_operating_points(truth, scores, mask)
    loss = loss_sum / batches if loss_fn is not None and batches else math.nan
    return EvalOutput(report, scores, truth, mask, ids, loss, points, out.seconds)


@dataclass
class EvaluationResult:
    output: EvalOutput
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    *,
    data_root: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    num_workers: int | None = None,
    threads: int | None = None,
    max_batches: int = 0,
    skip_preflight: bool = False,
    progress: bool = True,
) -> EvaluationResult:
    """Score ``checkpoint`` on ``split`` of the dataset it was trained on; write the reports.

    The split is rebuilt from the run config stored in the checkpoint (same dataset, validation
    fraction and seed); ``data_root`` points at the data when it moved. Works under torchrun:
    every rank scores its shard and rank 0 writes ``evaluation.json``, ``metrics.csv``,
    ``roc.png``, ``pr.png``, ``summary.md`` and ``predictions.npz`` into ``out_dir`` (default:
    ``eval-<split>`` beside the checkpoint). ``max_batches`` limits the evaluation to the first
    ``max_batches * batch_size`` images of the split, whatever the number of processes.
    """
    checkpoint = Path(checkpoint)
    model, ckpt = load_model(checkpoint)
    run = TrainConfig.from_dict(ckpt.run_config, f"checkpoint {checkpoint}")
    changes: dict[str, Any] = {"device": device}
    for key, value in (
        ("data_root", data_root),
        ("batch_size", batch_size),
        ("num_workers", num_workers),
        ("threads", threads),
    ):
        if value is not None:
            changes[key] = value
    run = run.replace(**changes)
    owns_group = not torch.distributed.is_initialized()
    info = init_distributed(resolve_device(run.device, dist_info_from_env()).type)
    try:
        runtime = resolve_runtime(run, info)
        configure_threads(run, info, runtime.device)
        model.to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        splits = load_splits(run)
        if tuple(splits.label_set.labels) != ckpt.labels:
            raise ConfigError(
                f"{checkpoint}: labels {ckpt.labels} differ from the dataset's {splits.label_set.labels}"
            )
        records = limit_records(splits.split(split), max_batches, run.batch_size)
        if not records:
            raise ConfigError(
                f"the {split} split of {run.dataset} at {run.data_root} is empty; expected at least one image"
            )
        if not skip_preflight:
            preflight(records, ckpt.spec, info, progress and info.is_main, split)
        targets = encode_targets(records, splits.label_set, run.uncertainty_policy)
        dataset = CxrImageDataset(records, ckpt.spec, targets)
        output = evaluate_model(
            model,
            records,
            dataset,
            splits.label_set,
            runtime,
            run.batch_size,
            run.num_workers,
            ckpt.model_config.head,
            None,
            run.use_study_level(),
            progress,
            split,
        )
        target_dir = Path(out_dir) if out_dir else checkpoint.parent / f"eval-{split}"
        files: dict[str, Path] = {}
        if info.is_main:
            files = write_evaluation(
                output,
                target_dir,
                checkpoint,
                split,
                ckpt.operating_points,
                ckpt.model_config.tag,
                splits.name,
            )
        barrier()
        return EvaluationResult(output, target_dir, files)
    finally:
        if owns_group:
            cleanup_distributed()


def write_evaluation(
    output: EvalOutput,
    out_dir: Path,
    checkpoint: Path,
    split: str,
    stored_points: Sequence[float] | None,
    tag: str,
    dataset_name: str,
) -> dict[str, Path]:
    """The evaluation artefacts of one checkpoint on one split."""
    from training.reports import write_csv

    points = list(stored_points) if stored_points is not None else output.operating_points.tolist()
    operating = operating_point_stats(output.truth, output.probs, points, output.mask)
    facts = {
        "checkpoint": str(checkpoint),
        "model": tag,
        "dataset": dataset_name,
        "split": split,
        "rows": f"{len(output.ids)} ({'studies' if len(output.ids) != output.probs.shape[0] else 'images'})",
        "operating points": "from the checkpoint (validation, Youden J)"
        if stored_points is not None
        else "Youden J on this split",
    }
    files = {
        "evaluation": write_json(
            out_dir / "evaluation.json",
            {
                "checkpoint": str(checkpoint),
                "split": split,
                "model": tag,
                "dataset": dataset_name,
                "metrics": output.report.to_dict(),
                "operating_points": operating,
                "youden_on_this_split": output.operating_points.tolist(),
            },
        ),
        "metrics_csv": write_csv(
            out_dir / "metrics.csv",
            [
                {
                    "finding": c.label,
                    "auc": c.auc,
                    "ap": c.ap,
                    "positives": c.positives,
                    "negatives": c.negatives,
                    "operating_point": operating["threshold"][j],
                    "sensitivity": operating["sensitivity"][j],
                    "specificity": operating["specificity"][j],
                }
                for j, c in enumerate(output.report.classes)
            ],
        ),
        "predictions": output.save_npz(out_dir / "predictions.npz"),
    }
    files.update(
        write_evaluation_reports(
            out_dir,
            output.truth,
            output.probs,
            output.mask,
            output.report,
            f"{tag} on {dataset_name} {split}",
            f"{tag} ({split})",
            facts,
            operating,
        )
    )
    return files
