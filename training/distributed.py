"""torchrun / DistributedDataParallel helpers.

``torchrun --nproc_per_node N -m training.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
joins the process group (NCCL on CUDA, gloo on CPU). Without them everything runs as a single
process and every helper here is a no-op.

Evaluation shards the split with :class:`ShardSampler` (no duplicated samples, unlike
``DistributedSampler``), then :func:`gather_predictions` collects every rank's rows with
``all_gather`` (padded to the longest shard, padding dropped) and puts them back in dataset
order, so metrics computed on rank 0 are exactly those of the full split in one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from cxr_core.errors import CxrEdgeError, DatasetError
from training.config import ConfigError

logger = logging.getLogger(__name__)


class DistributedError(CxrEdgeError, RuntimeError):
    """The processes of a distributed run disagree (e.g. gathered predictions miss or repeat images)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={value!r}; expected an integer (set by torchrun)"
        ) from None


def dist_info_from_env() -> DistInfo:
    """The torchrun environment variables, or a single process when they are absent."""
    world = _env_int("WORLD_SIZE", 1)
    return DistInfo(
        rank=_env_int("RANK", 0),
        world_size=world,
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op for a single process."""
    info = dist_info_from_env()
    if not info.enabled:
        return info
    if dist.is_initialized():
        return info
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    logger.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def collective_device() -> torch.device:
    """Where tensors for collectives must live: the current CUDA device under NCCL, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    Each rank updates its running statistics from its own shard of the batch; before evaluating or
    saving, they are made identical so that every rank holds the model rank 0 writes to disk.
    """
    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


def all_reduce_mean(value: float) -> float:
    """Mean of a Python float over ranks (the value itself for one process)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=collective_device())
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def all_reduce_sum(value: float) -> float:
    """Sum of a Python float over ranks (the value itself for one process)."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=collective_device())
    dist.all_reduce(tensor)
    return float(tensor.item())


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``range(length)``: every index exactly once over ranks."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class EpochShuffleSampler(Sampler[int]):
    """A seeded shuffle of ``range(length)`` that depends only on ``(seed, epoch)``, sharded by rank.

    The order of epoch ``e`` is ``randperm(length)`` from a ``torch.Generator`` seeded with
    ``seed + e``, so a resumed run draws exactly the order an uninterrupted run would, with no
    hidden state; with several ranks the permutation is padded to a multiple of ``world_size`` by
    repeating its head (as ``DistributedSampler`` does) and rank ``r`` takes every world-th index.
    Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if length < 1:
            raise DatasetError(
                f"cannot sample from an empty split (length={length}); expected at least one image"
            )
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        total = -(-self.length // self.world_size) * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation())

    def __len__(self) -> int:
        return -(-self.length // self.world_size)


def gather_predictions(
    scores: torch.Tensor, indices: torch.Tensor, total: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Collect ``(scores, indices)`` rows from every rank; returns them sorted by dataset index.

    ``scores`` is (n_local, ...) and ``indices`` (n_local,) int64 dataset positions. Shards may be
    uneven: each rank pads to the longest shard, the padding is dropped after ``all_gather``.
    Raises when the gathered indices are not exactly ``0 .. total-1`` once each (a sharding bug
    would otherwise silently bias the metrics). Single process: just sorts and checks.
    """
    if active():
        device = collective_device()
        scores = scores.to(device)
        count = torch.tensor([scores.shape[0]], dtype=torch.int64, device=device)
        counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        pad = longest - scores.shape[0]
        padded_scores = torch.cat([scores, scores.new_zeros((pad, *scores.shape[1:]))])
        padded_indices = torch.cat([indices.to(device), indices.new_full((pad,), -1).to(device)])
        all_scores = [torch.empty_like(padded_scores) for _ in counts]
        all_indices = [torch.empty_like(padded_indices) for _ in counts]
        dist.all_gather(all_scores, padded_scores.contiguous())
        dist.all_gather(all_indices, padded_indices.contiguous())
        scores = torch.cat([s[: int(c.item())] for s, c in zip(all_scores, counts, strict=True)])
        indices = torch.cat([i[: int(c.item())] for i, c in zip(all_indices, counts, strict=True)])
    order = torch.argsort(indices.cpu())
    scores, indices = scores.cpu()[order], indices.cpu()[order]
    if indices.numel() != total or not torch.equal(indices, torch.arange(total)):
        raise DistributedError(
            f"gathered predictions cover {indices.unique().numel()} distinct of {total} images with "
            f"{indices.numel()} rows; expected each image exactly once"
        )
    return scores, indices
