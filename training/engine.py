"""Building blocks of a run: runtime (device, precision, threads, determinism), data, model, optimiser.

:mod:`training.trainer` assembles them into the epoch loop and :mod:`training.evaluation` into
checkpoint evaluation; each function here does one thing and can be tested on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from cxr_core.errors import DatasetError
from cxr_core.preprocess import PreprocessSpec
from training.config import ConfigError, TrainConfig
from training.data.loading import load_dataset
from training.data.records import DatasetSplits, ImageRecord
from training.data.torch_dataset import validate_images
from training.distributed import DistInfo, active, collective_device
from training.losses import build_loss, positive_class_weights
from training.models import ModelConfig, build_model, load_initial_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run in this process."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    dist: DistInfo

    @property
    def use_scaler(self) -> bool:
        return self.amp_dtype == torch.float16 and self.device.type == "cuda"


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; with several ranks each takes ``cuda:local_rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device='cuda' but torch sees no CUDA device; use --device cpu or auto")
        return torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def resolve_runtime(config: TrainConfig, info: DistInfo) -> Runtime:
    device = resolve_device(config.device, info)
    amp: torch.dtype | None
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        amp = None
    elif config.amp == "auto":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif config.amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp='fp16' needs a CUDA device; on CPU use amp='bf16' or 'off'")
    else:
        amp = torch.bfloat16 if config.amp == "bf16" else torch.float16
    channels_last = config.channels_last == "on" or (config.channels_last == "auto" and device.type == "cuda")
    return Runtime(device, amp, channels_last, info)


def configure_threads(config: TrainConfig, info: DistInfo, device: torch.device) -> None:
    """``threads > 0`` sets torch's intra-op threads; ``0`` splits the cores among the local ranks on CPU."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    elif device.type == "cpu" and info.local_world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.local_world_size))
    logger.debug("torch intra-op threads: %d", torch.get_num_threads())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels while the run lasts (restored afterwards); cuDNN autotuning otherwise."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.backends.cudnn.benchmark = previous_benchmark


# ----- data ----------------------------------------------------------------------------------------
def dataset_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword options for :func:`training.data.loading.load_dataset` from the config."""
    options: dict[str, Any] = {"val_fraction": config.val_fraction, "seed": config.seed}
    if config.dataset == "chexpert":
        options["frontal_only"] = config.frontal_only
    options.update(config.dataset_options)
    return options


def load_splits(config: TrainConfig) -> DatasetSplits:
    if not config.data_root:
        raise ConfigError("data_root is empty; pass --data-root with the dataset folder")
    return load_dataset(config.dataset, config.data_root, **dataset_options(config))


def preflight(
    records: Sequence[ImageRecord], spec: PreprocessSpec, info: DistInfo, progress: bool, what: str
) -> None:
    """Decode and preprocess every image once before training, sharded over ranks.

    Every rank learns whether any rank found a bad file, so all stop together instead of some
    waiting forever at the next collective; the rank that found it raises the message naming it.
    """
    shard = list(records[info.rank :: info.world_size]) if info.enabled else list(records)
    error: DatasetError | None = None
    try:
        if shard:
            validate_images(shard, spec=spec, workers=min(8, os.cpu_count() or 1), progress=progress)
    except DatasetError as exc:
        error = exc
    if active():
        flag = torch.tensor([1.0 if error else 0.0], device=collective_device())
        dist.all_reduce(flag)
        if flag.item() and error is None:
            raise DatasetError(f"pre-flight check of the {what} images failed on another rank (see its log)")
    if error is not None:
        raise DatasetError(f"pre-flight check of the {what} images: {error}") from error


def limit_records(
    records: Sequence[ImageRecord], max_batches: int, batch_size: int
) -> tuple[ImageRecord, ...]:
    """The first ``max_batches * batch_size`` records (all of them for ``max_batches=0``)."""
    return tuple(records[: max_batches * batch_size]) if max_batches else tuple(records)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    sampler: Sampler[int],
    num_workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``sampler``; ``generator`` seeds the workers (re-seed it per epoch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        persistent_workers=False,
        drop_last=drop_last,
    )


# ----- model, loss, optimiser ----------------------------------------------------------------------
def model_config_for(config: TrainConfig, num_classes: int) -> ModelConfig:
    return ModelConfig(
        architecture=config.architecture,
        encoder=config.encoder,
        num_classes=num_classes,
        latent_dim=config.latent_dim,
        head=config.head,
        dropout=config.dropout,
    )


def build_run_model(config: TrainConfig, model_config: ModelConfig, runtime: Runtime) -> nn.Module:
    """The model on its device (channels-last when asked), with ``init_weights`` loaded if given."""
    model = build_model(model_config)
    if config.init_weights:
        report = load_initial_weights(model, config.init_weights)
        logger.info("initial weights: %s", report.summary())
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def build_run_loss(config: TrainConfig, train_targets: np.ndarray, train_mask: np.ndarray) -> nn.Module:
    kwargs: dict[str, Any] = {}
    if config.loss == "weighted-bce":
        kwargs["pos_weight"] = positive_class_weights(train_targets, train_mask)
    return build_loss(config.loss, **kwargs)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """ReduceLROnPlateau on mean val AUC (mode max) or val loss (mode min); None for ``none``."""
    if config.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max" if config.plateau_metric == "mean_auc" else "min",
        factor=config.scheduler_factor,
        patience=config.scheduler_patience,
    )


def check_same(
    name: str,
    saved: Mapping[str, Any] | Sequence[Any],
    current: Mapping[str, Any] | Sequence[Any],
    where: str,
) -> None:
    if saved != current:
        raise ConfigError(f"{where}: the checkpoint's {name} {saved!r} differs from this run's {current!r}")
