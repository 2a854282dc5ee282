"""One training epoch and one prediction pass: the inner loops, nothing else.

Mixed precision: with ``amp_dtype`` set (CUDA only), the forward pass runs under
``torch.autocast``; float16 additionally uses the ``GradScaler`` passed in. The loss is always
computed in float32. ``channels_last`` converts each batch to that memory format (the model is
converted once by the caller).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from cxr_core.errors import CxrEdgeError, DatasetError
from cxr_core.optional import require
from training.models import probabilities

logger = logging.getLogger(__name__)


class TrainingDivergedError(CxrEdgeError, FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class StepOptions:
    """How batches run: device, mixed precision, memory format, limits, progress display."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    max_batches: int = 0  # 0 = all
    progress: bool = False
    log_every: int = 0


@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean training loss over the batches of this process
    steps: int
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


def _autocast(options: StepOptions) -> contextlib.AbstractContextManager[Any]:
    if options.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=options.device.type, dtype=options.amp_dtype)


def _to_device(
    batch: dict[str, Any], options: StepOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    non_blocking = options.device.type == "cuda"
    images = batch["image"].to(options.device, non_blocking=non_blocking)
    if options.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = batch["target"].to(options.device, non_blocking=non_blocking)
    mask = batch["mask"].to(options.device, non_blocking=non_blocking)
    return images, target, mask


def _limited(loader: DataLoader, max_batches: int) -> Iterator[dict[str, Any]]:
    for step, batch in enumerate(loader):
        if max_batches and step >= max_batches:
            break
        yield batch


def _bar(loader: DataLoader, options: StepOptions, desc: str) -> Any:
    tqdm = require("tqdm", extra="train", purpose="progress bars").tqdm
    total = len(loader) if not options.max_batches else min(len(loader), options.max_batches)
    return tqdm(
        _limited(loader, options.max_batches),
        total=total,
        desc=desc,
        disable=not options.progress,
        leave=False,
        dynamic_ncols=True,
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    options: StepOptions,
    scaler: torch.amp.GradScaler | None = None,
    desc: str = "train",
) -> EpochStats:
    """Run the model over ``loader`` once in train mode, stepping ``optimizer`` after each batch."""
    model.train()
    start = time.perf_counter()
    total_loss, steps, images_seen = 0.0, 0, 0
    bar = _bar(loader, options, desc)
    for batch in bar:
        images, target, mask = _to_device(batch, options)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(options):
            logits = model(images)
        loss = loss_fn(logits.float(), target, mask)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss became {loss.item()} at step {steps} of this epoch; lower the learning rate "
                "or check the inputs"
            )
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        steps += 1
        images_seen += images.shape[0]
        total_loss += float(loss.detach())
        rate = images_seen / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{total_loss / steps:.4f}", img_s=f"{rate:.1f}")
        if options.log_every and steps % options.log_every == 0:
            logger.info("%s step %d: loss %.4f, %.1f images/s", desc, steps, total_loss / steps, rate)
    bar.close()
    seconds = time.perf_counter() - start
    return EpochStats(total_loss / steps if steps else math.nan, steps, images_seen, seconds)


@dataclass(frozen=True)
class PredictOutput:
    """Probabilities ``(n, L)`` and dataset ``indices`` ``(n,)`` of this process's share."""

    probs: torch.Tensor
    indices: torch.Tensor
    loss_sum: float
    batches: int
    seconds: float


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    options: StepOptions,
    head: str = "binary",
    loss_fn: Callable[..., torch.Tensor] | None = None,
    desc: str = "eval",
    num_labels: int | None = None,
) -> PredictOutput:
    """Probabilities of every image of ``loader`` in eval mode (float32, on the CPU).

    A process whose shard is empty (more ranks than images) returns ``(0, num_labels)``.
    """
    model.eval()
    start = time.perf_counter()
    all_probs: list[torch.Tensor] = []
    all_indices: list[torch.Tensor] = []
    loss_sum, batches = 0.0, 0
    bar = _bar(loader, options, desc)
    for batch in bar:
        images, target, mask = _to_device(batch, options)
        with _autocast(options):
            logits = model(images)
        logits = logits.float()
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, target, mask))
        batches += 1
        all_probs.append(probabilities(logits, head).cpu())
        all_indices.append(torch.as_tensor(batch["index"], dtype=torch.int64))
    bar.close()
    if not all_probs:
        if num_labels is None:
            raise DatasetError(f"{desc}: the loader yielded no batch; expected at least one image")
        all_probs, all_indices = [torch.zeros((0, num_labels))], [torch.zeros(0, dtype=torch.int64)]
    return PredictOutput(
        torch.cat(all_probs), torch.cat(all_indices), loss_sum, batches, time.perf_counter() - start
    )
