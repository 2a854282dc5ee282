"""The training run: data, model, loss, optimiser, epochs, checkpoints, reports, resume.

``run_training(config)`` trains for ``config.epochs`` epochs; after each it validates (per-finding
ROC AUC, mean AUC, AP, Youden operating points), writes ``last.pt`` and, when the mean validation
AUC improved, ``best.pt``; it updates ``metrics.json``/``metrics.csv`` and finally writes the ROC/PR
plots and ``summary.md`` of the best epoch. ``run_training(config, resume=path)`` continues a run
from its ``last.pt`` to the same result an uninterrupted run gives (see docs/training.md).
Under torchrun the model is wrapped in DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.augment import build_augmentation
from training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from training.config import ConfigError, TrainConfig, save_config_yaml
from training.data.policies import encode_targets
from training.data.torch_dataset import CxrImageDataset
from training.distributed import (
    EpochShuffleSampler,
    active,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    dist_info_from_env,
    init_distributed,
)
from training.engine import (
    build_optimizer,
    build_run_loss,
    build_run_model,
    build_scheduler,
    check_same,
    configure_threads,
    deterministic_mode,
    limit_records,
    load_splits,
    make_loader,
    model_config_for,
    preflight,
    resolve_device,
    resolve_runtime,
    seed_everything,
)
from training.evaluation import EvalOutput, evaluate_model
from training.loop import StepOptions, train_one_epoch
from training.reports import write_history, write_run_reports
from training.resume import resolve_resume_path
from training.runlog import run_log

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    out_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    stopped_early: bool
    model: nn.Module
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"


class Trainer:
    """One training run (see the module docstring). Use :func:`run_training`."""

    def __init__(
        self, config: TrainConfig, resume: str | Path | None = None, on_epoch_end: EpochCallback | None = None
    ) -> None:
        if not config.out_dir:
            raise ConfigError("out_dir is empty; pass --out-dir with the folder for this run's files")
        self.config = config
        self.out = Path(config.out_dir)
        self.resume_path = resolve_resume_path(resume) if resume else None
        self.on_epoch_end = on_epoch_end
        self.start_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        self.bad_epochs = 0
        self.loader_generator = torch.Generator()

    # ----- setup -------------------------------------------------------------------------------------
    def _prepare_out_dir(self) -> None:
        if self.resume_path is None and (self.out / "last.pt").exists():
            raise ConfigError(
                f"{self.out} already holds a run (last.pt); pass --resume {self.out} to continue it "
                "or choose another --out-dir"
            )
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config_yaml(self.config, self.out / "config.yaml")

    def _setup_data(self) -> None:
        c = self.config
        splits = load_splits(c)
        self.splits, self.label_set, self.spec = splits, splits.label_set, c.preprocess_spec()
        train = splits.train
        self.val_records = limit_records(splits.val, c.max_val_batches, c.batch_size)
        for name, records in (("train", train), ("val", self.val_records)):
            if not records:
                raise ConfigError(
                    f"the {name} split of {c.data_root} is empty; expected at least one image "
                    "(check val_fraction and the dataset)"
                )
        if not c.skip_preflight:
            preflight(train, self.spec, self.info, c.progress and self.info.is_main, "train")
            preflight(self.val_records, self.spec, self.info, c.progress and self.info.is_main, "val")
        targets = encode_targets(train, self.label_set, c.uncertainty_policy)
        if targets.multiclass != (c.head == "multiclass3"):
            raise ConfigError(
                f"uncertainty_policy={c.uncertainty_policy!r} and head={c.head!r} do not fit: 'u-multiclass' "
                "needs head 'multiclass3' (loss 'multiclass-ce') and the other policies the 'binary' head"
            )
        self.train_targets = targets
        augment = build_augmentation(c.augment, self.spec, c.rotate_degrees)
        self.train_dataset = CxrImageDataset(train, self.spec, targets, augment)
        self.val_dataset = CxrImageDataset(
            self.val_records,
            self.spec,
            encode_targets(self.val_records, self.label_set, c.uncertainty_policy),
        )
        self.sampler = EpochShuffleSampler(len(train), c.seed, self.info.rank, self.info.world_size)
        # A last batch of one image cannot train BatchNorm (and its statistics would be noise): drop
        # it; the shuffle changes every epoch, so every image is still seen.
        drop_last = len(self.sampler) > c.batch_size and len(self.sampler) % c.batch_size == 1
        self.train_loader = make_loader(
            self.train_dataset,
            c.batch_size,
            self.sampler,
            c.num_workers,
            self.runtime.device,
            self.loader_generator,
            drop_last=drop_last,
        )
        logger.info(
            "data: %s, %d train / %d val images, %d labels, input %d px",
            splits.name,
            len(train),
            len(self.val_records),
            len(self.label_set),
            c.input_size,
        )

    def _setup_model(self) -> None:
        c = self.config
        seed_everything(c.seed)  # the same initial weights on every rank
        self.model_config = model_config_for(c, len(self.label_set))
        self.module = build_run_model(c, self.model_config, self.runtime)
        self.checkpoint = load_checkpoint(self.resume_path) if self.resume_path else None
        if self.checkpoint is not None:
            where = f"--resume {self.resume_path}"
            check_same(
                "model config", self.checkpoint.model_config.to_dict(), self.model_config.to_dict(), where
            )
            check_same("labels", list(self.checkpoint.labels), list(self.label_set.labels), where)
            check_same("preprocessing", self.checkpoint.spec.to_dict(), self.spec.to_dict(), where)
            self.module.load_state_dict(self.checkpoint.model_state)
        self.model: nn.Module = self.module
        if self.info.enabled:
            device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=device_ids)
        self.loss_fn = build_run_loss(c, self.train_targets.targets, self.train_targets.mask).to(
            self.runtime.device
        )
        self.optimizer = build_optimizer(c, self.module)
        self.scheduler = build_scheduler(c, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.runtime.use_scaler)
        seed_everything(c.seed + 1_000_003 * self.info.rank)  # per-rank noise and augmentation streams

    def _restore(self) -> None:
        ckpt = self.checkpoint
        if ckpt is None:
            return
        if ckpt.optimizer_state is None:
            raise ConfigError(
                f"--resume {self.resume_path}: the checkpoint has no optimiser state to resume from"
            )
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        if self.scheduler is not None and ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
            # The saved state carries its settings; a resumed run's own (possibly changed) ones win.
            self.scheduler.patience = self.config.scheduler_patience
            self.scheduler.factor = self.config.scheduler_factor
        if self.scaler.is_enabled() and ckpt.scaler_state:
            self.scaler.load_state_dict(ckpt.scaler_state)
        self.start_epoch, self.global_step = ckpt.epoch, ckpt.global_step
        self.history = list(ckpt.metrics_history)
        self.best_epoch, self.best_metric = ckpt.best_epoch, ckpt.best_metric
        self.bad_epochs = int(ckpt.trainer_state.get("epochs_without_improvement", 0))
        states = ckpt.state.get("rng_states") or []
        if len(states) == self.info.world_size:
            restore_rng_state(states[self.info.rank], {"loader": self.loader_generator})
        else:
            logger.warning(
                "checkpoint was written by %d process(es), this run has %d: random streams restart",
                len(states),
                self.info.world_size,
            )
            if ckpt.rng_state is not None:
                restore_rng_state(ckpt.rng_state, {"loader": self.loader_generator})
            seed_everything(self.config.seed + 1_000_003 * self.info.rank + ckpt.epoch)
        logger.info(
            "resumed from %s after epoch %d (step %d)", self.resume_path, ckpt.epoch, ckpt.global_step
        )

    # ----- one epoch ---------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> tuple[float, int, float]:
        c = self.config
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(c.seed * 100_003 + epoch)  # worker seeds of this epoch
        options = StepOptions(
            self.runtime.device,
            self.runtime.amp_dtype,
            self.runtime.channels_last,
            c.max_train_batches,
            c.progress and self.info.is_main,
            c.log_every,
        )
        stats = train_one_epoch(
            self.model,
            self.train_loader,
            self.loss_fn,
            self.optimizer,
            options,
            self.scaler,
            desc=f"epoch {epoch + 1}/{c.epochs}",
        )
        self.global_step += stats.steps
        images = all_reduce_sum(float(stats.images))
        return all_reduce_mean(stats.loss), int(images), stats.seconds

    def _validate(self) -> EvalOutput:
        c = self.config
        broadcast_buffers(self.module)
        return evaluate_model(
            self.module,
            self.val_records,
            self.val_dataset,
            self.label_set,
            self.runtime,
            c.batch_size,
            c.num_workers,
            c.head,
            self.loss_fn,
            c.use_study_level(),
            c.progress,
            "val",
        )

    def _after_validation(self, epoch: int, val: EvalOutput) -> bool:
        """Scheduler, best-epoch bookkeeping; returns whether this epoch is the new best."""
        metric = val.report.mean_auc
        if self.scheduler is not None:
            self.scheduler.step(metric if self.config.plateau_metric == "mean_auc" else val.loss)
        score = metric if math.isfinite(metric) else -math.inf
        best_score = (
            -math.inf if self.best_metric is None or not math.isfinite(self.best_metric) else self.best_metric
        )
        improved = self.best_epoch is None or score > best_score
        if improved:
            self.best_epoch, self.best_metric, self.bad_epochs = epoch + 1, metric, 0
        else:
            self.bad_epochs += 1
        return improved

    def _payload(self, epoch: int, val: EvalOutput, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model_config": self.model_config.to_dict(),
            "preprocess": self.spec.to_dict(),
            "labels": list(self.label_set.labels),
            "label_set": self.label_set.name,
            "dataset": self.splits.name,
            "model_state": self.module.state_dict(),
            "epoch": epoch + 1,
            "global_step": self.global_step,
            "run_config": self.config.to_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler_state": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng_state": rng_states[0],
            "rng_states": rng_states,
            "metrics_history": self.history,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "operating_points": [float(p) for p in val.operating_points],
            "trainer_state": {
                "epochs_without_improvement": self.bad_epochs,
                "world_size": self.info.world_size,
            },
        }

    def _save(self, epoch: int, val: EvalOutput, improved: bool) -> None:
        state = capture_rng_state({"loader": self.loader_generator})
        rng_states: list[Any] = [state]
        if active():
            rng_states = [None] * self.info.world_size
            dist.all_gather_object(rng_states, state)
        barrier()
        if self.info.is_main:
            payload = self._payload(epoch, val, rng_states)
            save_checkpoint(self.out / "last.pt", payload)
            if improved:
                save_checkpoint(self.out / "best.pt", payload)
                val.save_npz(self.out / "val_predictions.npz")
            write_history(
                self.out,
                self.history,
                self.label_set.labels,
                {
                    "best_epoch": self.best_epoch,
                    "best_mean_auc": self.best_metric,
                    "model": self.model_config.tag,
                },
            )
        barrier()

    def _log_epoch(self, entry: dict[str, Any]) -> None:
        logger.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val mean AUC %.4f (best %.4f @ epoch %s), lr %.2e, "
            "%.1f s (%.1f images/s)",
            entry["epoch"],
            self.config.epochs,
            entry["train_loss"],
            entry["val_loss"],
            entry["val"]["mean_auc"],
            self.best_metric if self.best_metric is not None else math.nan,
            self.best_epoch,
            entry["lr"],
            entry["seconds"],
            entry["images_per_s"],
        )

    # ----- the run -----------------------------------------------------------------------------------
    def _fit(self, stop_after_epochs: int | None) -> bool:
        c, ran = self.config, 0
        for epoch in range(self.start_epoch, c.epochs):
            start = time.perf_counter()
            lr = float(self.optimizer.param_groups[0]["lr"])
            train_loss, images, train_seconds = self._train_epoch(epoch)
            val = self._validate()
            improved = self._after_validation(epoch, val)
            seconds = time.perf_counter() - start
            entry = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val.loss,
                "lr": lr,
                "seconds": seconds,
                "train_seconds": train_seconds,
                "images_per_s": images / train_seconds if train_seconds > 0 else math.nan,
                "global_step": self.global_step,
                "val": val.report.to_dict(),
                "operating_points": [float(p) for p in val.operating_points],
            }
            self.history.append(entry)
            self._save(epoch, val, improved)
            self._log_epoch(entry)
            if self.on_epoch_end is not None and self.info.is_main:
                self.on_epoch_end(entry)
            ran += 1
            if c.early_stopping_patience and self.bad_epochs >= c.early_stopping_patience:
                logger.info("early stopping: no better mean val AUC for %d epoch(s)", self.bad_epochs)
                return True
            if stop_after_epochs is not None and ran >= stop_after_epochs:
                break
        return False

    def _final_reports(self) -> dict[str, Path]:
        if not self.info.is_main or self.best_epoch is None:
            return {}
        facts = {
            "model": self.model_config.tag,
            "dataset": self.splits.name,
            "split": "val",
            "best epoch": f"{self.best_epoch} of {len(self.history)}",
            "input": f"{self.config.input_size} px",
            "loss": self.config.loss,
        }
        return write_run_reports(self.out, self.history, self.best_epoch, self.model_config.tag, facts)

    def run(self, stop_after_epochs: int | None = None) -> TrainResult:
        owns_group = not (dist.is_available() and dist.is_initialized())
        self.info = init_distributed(resolve_device(self.config.device, dist_info_from_env()).type)
        try:
            self.runtime = resolve_runtime(self.config, self.info)
            configure_threads(self.config, self.info, self.runtime.device)
            self._prepare_out_dir()
            with (
                deterministic_mode(self.config.deterministic, self.runtime.device),
                run_log(self.out / "train.log", self.info.is_main),
            ):
                logger.info(
                    "run %s: %s on %s (%d process(es), amp %s, channels_last %s)",
                    self.out,
                    self.config.architecture,
                    self.runtime.device,
                    self.info.world_size,
                    self.runtime.amp_dtype,
                    self.runtime.channels_last,
                )
                self._setup_data()
                self._setup_model()
                self._restore()
                stopped = self._fit(stop_after_epochs)
                files = self._final_reports()
                barrier()
            return TrainResult(
                self.out, self.history, self.best_epoch, self.best_metric, stopped, self.module, files
            )
        finally:
            if owns_group:
                cleanup_distributed()


def run_training(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) a run; see the module docstring.

    ``stop_after_epochs`` ends this invocation after that many epochs, leaving ``last.pt`` as a
    killed run would (used to test resuming). ``on_epoch_end`` gets each epoch's history entry.
    """
    return Trainer(config, resume, on_epoch_end).run(stop_after_epochs)
