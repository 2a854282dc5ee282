"""Training checkpoints: atomic save, validated load, and the RNG state needed for exact resume.

A checkpoint is a ``torch.save`` dict of plain types and tensors only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs when reading a file someone sent you).
It holds everything needed to (a) rebuild and use the model elsewhere -- model config, the
PreprocessSpec, labels, operating points -- and (b) continue the run bit-for-bit: optimiser,
scheduler and AMP scaler state, the epoch and step counters, the metrics history, and every
random number generator the run draws from (Python, numpy, torch CPU, CUDA, and the run's own
generators). The DGC sampling layer draws its noise from torch's global generator, so restoring
that generator makes its eps reproducible too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxr_core.errors import CxrEdgeError, PreprocessSpecError
from cxr_core.preprocess import PreprocessSpec
from training.fileio import atomic_target
from training.models.config import ModelConfig, ModelConfigError

logger = logging.getLogger(__name__)

#: Bump when the meaning of a key changes.
CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "model_config", "preprocess", "labels", "model_state", "epoch", "global_step")


class CheckpointError(CxrEdgeError, ValueError):
    """A checkpoint file is missing, unreadable, or does not hold what a cxr-edge checkpoint must."""


def cxr_edge_version() -> str:
    try:
        return metadata.version("cxr-edge")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``state`` keeps the raw dict for keys not listed here."""

    path: Path
    model_config: ModelConfig
    spec: PreprocessSpec
    labels: tuple[str, ...]
    model_state: dict[str, torch.Tensor]
    epoch: int
    global_step: int
    run_config: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    metrics_history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    operating_points: tuple[float, ...] | None = None
    trainer_state: dict[str, Any] = field(default_factory=dict)
    version: str = "unknown"
    state: dict[str, Any] = field(default_factory=dict, repr=False)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder, then os.replace.

    A run killed mid-write leaves the previous checkpoint intact. ``payload`` must carry the
    :data:`REQUIRED_KEYS` except ``format``, which is added, with the cxr-edge version.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k != "format" and k not in payload]
    if missing:
        raise CheckpointError(f"refusing to write checkpoint {path}: missing key(s) {missing}")
    data = dict(payload)
    data["format"] = CHECKPOINT_FORMAT
    data.setdefault("cxr_edge_version", cxr_edge_version())
    with atomic_target(path) as tmp:
        torch.save(data, tmp)
    return path


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; expected a .pt file written by cxr-train")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, ... on a bad file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); the file is truncated, corrupt "
            "or not a cxr-edge checkpoint"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(data).__name__}; expected a cxr-edge checkpoint dict"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks key(s) {missing}; expected a checkpoint written by cxr-train"
        )
    if data["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {data['format']!r}; this cxr-edge reads format {CHECKPOINT_FORMAT}"
        )
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a checkpoint; errors name the file and what is wrong."""
    path = Path(path)
    data = _read(path, map_location)
    try:
        model_config = ModelConfig.from_dict(data["model_config"])
        spec = PreprocessSpec.from_dict(data["preprocess"])
    except (ModelConfigError, PreprocessSpecError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    labels = tuple(str(label) for label in data["labels"])
    if len(labels) != model_config.num_classes:
        raise CheckpointError(
            f"checkpoint {path} lists {len(labels)} labels for a model with "
            f"num_classes={model_config.num_classes}"
        )
    points = data.get("operating_points")
    if points is not None and len(points) != len(labels):
        raise CheckpointError(
            f"checkpoint {path} has {len(points)} operating points for {len(labels)} labels"
        )
    return Checkpoint(
        path=path,
        model_config=model_config,
        spec=spec,
        labels=labels,
        model_state=data["model_state"],
        epoch=int(data["epoch"]),
        global_step=int(data["global_step"]),
        run_config=dict(data.get("run_config") or {}),
        optimizer_state=data.get("optimizer_state"),
        scheduler_state=data.get("scheduler_state"),
        scaler_state=data.get("scaler_state"),
        rng_state=data.get("rng_state"),
        metrics_history=list(data.get("metrics_history") or []),
        best_metric=data.get("best_metric"),
        best_epoch=data.get("best_epoch"),
        operating_points=tuple(float(p) for p in points) if points is not None else None,
        trainer_state=dict(data.get("trainer_state") or {}),
        version=str(data.get("cxr_edge_version", "unknown")),
        state=data,
    )


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model of a checkpoint with its weights, in eval mode."""
    from training.models import build_model

    checkpoint = load_checkpoint(path, map_location)
    model = build_model(checkpoint.model_config)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit {checkpoint.model_config.tag}: {exc}"
        ) from exc
    model.eval()
    return model, checkpoint


# ----- random number generator state -------------------------------------------------------------
def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every RNG the run uses, as plain types and tensors (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }
    return state


def _python_state(value: Any) -> Any:
    # weights_only loading turns tuples into lists in some versions; random.setstate wants tuples.
    if isinstance(value, list):
        return tuple(_python_state(v) for v in value)
    return value


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Put every RNG back to ``state`` (from :func:`capture_rng_state`)."""
    random.setstate(_python_state(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            logger.warning(
                "checkpoint has CUDA RNG state for %d device(s), this machine has %d; CUDA RNG not restored",
                len(cuda_states),
                torch.cuda.device_count(),
            )
    saved = state.get("generators") or {}
    for name, generator in (generators or {}).items():
        if name in saved:
            generator.set_state(saved[name].cpu())
        else:
            logger.warning("checkpoint has no state for generator %r; it keeps its current state", name)
