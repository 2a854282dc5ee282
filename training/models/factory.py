"""build_model(config) and probabilities(logits, head): the two entry points callers need."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.chexnet import CheXNet
from training.models.config import (
    HEADS,
    MULTICLASS_CLASSES,
    MULTICLASS_NEGATIVE,
    MULTICLASS_POSITIVE,
    ModelConfig,
    ModelConfigError,
    did_you_mean,
)
from training.models.dgc import DGC


def build_model(config: ModelConfig) -> nn.Module:
    """A randomly initialised model for ``config`` (never downloads weights; see weights.py for files).

    Every model has ``forward(x, return_features=False)``, ``cam_weights()`` and a ``config`` attribute.
    """
    if not isinstance(config, ModelConfig):
        raise ModelConfigError(f"build_model needs a ModelConfig; got {type(config).__name__}")
    if config.architecture == "chexnet":
        return CheXNet(config)
    return DGC(config)


def probabilities(logits: Tensor, head: str = "binary") -> Tensor:
    """Probability of each finding, ``(N, L)``, from a model's logits.

    ``binary``: sigmoid of ``(N, L)`` logits. ``multiclass3``: softmax over the (negative, positive)
    logits of ``(N, L, 3)``, i.e. sigmoid(logit_pos - logit_neg); the uncertain logit is ignored.
    """
    if head == "binary":
        return torch.sigmoid(logits)
    if head == "multiclass3":
        if logits.dim() != 3 or logits.shape[-1] != MULTICLASS_CLASSES:
            raise ModelConfigError(
                f"multiclass3 logits must have shape (N, L, {MULTICLASS_CLASSES}); got {tuple(logits.shape)}"
            )
        return torch.sigmoid(logits[..., MULTICLASS_POSITIVE] - logits[..., MULTICLASS_NEGATIVE])
    raise ModelConfigError(f"unknown head {head!r}; expected one of {list(HEADS)}{did_you_mean(head, HEADS)}")
