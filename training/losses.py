"""Training losses for multi-label chest X-ray classification, all on logits and all maskable.

* ``bce``: plain binary cross-entropy (CheXNet).
* ``weighted-bce``: BCE with a per-class positive weight ``N_neg / N_pos`` counted once on the
  training targets (:func:`positive_class_weights`).
* ``batch-balanced-bce``: the weighted BCE of the DGC paper (Mao et al. 2018, after Wang et al. 2017),
  weights counted on each mini-batch.
* ``multiclass-ce``: cross-entropy over {negative, positive, uncertain} per label (CheXpert U-MultiClass).

Every loss takes ``(logits, targets, mask=None)``. ``mask`` has the targets' shape ``(N, L)``; where it
is 0 the element is ignored (U-Ignore, or a label a dataset does not report): it adds nothing to the
loss, nothing to the counts, and its target may hold anything, NaN included. The result is a mean over
the unmasked elements; with every element masked it is a zero that still back-propagates (zeros).
All binary losses use ``binary_cross_entropy_with_logits``, which is stable for large |logits|.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from cxr_core.errors import CxrEdgeError
from training.models.config import MULTICLASS_CLASSES

logger = logging.getLogger(__name__)


class LossInputError(CxrEdgeError, ValueError):
    """Logits, targets or mask given to a loss have the wrong shape or values, or the loss name is unknown."""


def _prepare(
    logits: Tensor, targets: Tensor, mask: Tensor | None, expected: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Check shapes; return (boolean keep mask, targets with ignored entries set to 0)."""
    if tuple(targets.shape) != expected:
        raise LossInputError(
            f"targets have shape {tuple(targets.shape)}; expected {expected} to match the logits"
        )
    if mask is None:
        keep = torch.ones(expected, dtype=torch.bool, device=targets.device)
    else:
        if tuple(mask.shape) != expected:
            raise LossInputError(f"mask has shape {tuple(mask.shape)}; expected {expected} like the targets")
        keep = mask != 0
    targets = torch.where(keep, targets, torch.zeros((), dtype=targets.dtype, device=targets.device))
    return keep, targets


def _check_binary(logits: Tensor, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if logits.dim() != 2:
        raise LossInputError(f"binary losses take logits of shape (N, L); got {tuple(logits.shape)}")
    keep, targets = _prepare(logits, targets, mask, tuple(logits.shape))
    targets = targets.to(logits.dtype)
    bad = ~((targets >= 0) & (targets <= 1))  # NaN is bad too
    if bool(bad.any()):
        value = targets[bad][0].item()
        raise LossInputError(
            f"binary targets must lie in [0, 1] where the mask is 1; got {value} "
            "(mask uncertain (-1) or missing (NaN) labels, or map them with an uncertainty policy)"
        )
    return keep, targets


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``values`` over ``keep``; an all-masked batch gives 0 connected to the graph."""
    kept = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() / keep.sum().clamp(min=1)


class MaskedBCE(nn.Module):
    """Plain binary cross-entropy on logits, averaged over the unmasked elements (CheXNet)."""

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        keep, targets = _check_binary(logits, targets, mask)
        return _masked_mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), keep)


class PrevalenceWeightedBCE(nn.Module):
    """BCE with positive terms of class c weighted by ``pos_weight[c] = N_neg[c] / N_pos[c]``.

    Counted once on the training set with :func:`positive_class_weights`; averaged over unmasked elements.
    """

    pos_weight: Tensor

    def __init__(self, pos_weight: Tensor | ArrayLike) -> None:
        super().__init__()
        weight = torch.as_tensor(pos_weight, dtype=torch.float32)
        if weight.dim() != 1 or not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
            raise LossInputError(
                f"pos_weight must be a finite, non-negative 1-D vector (one per class); got {weight.tolist()}"
            )
        self.register_buffer("pos_weight", weight)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        keep, targets = _check_binary(logits, targets, mask)
        if logits.shape[1] != self.pos_weight.shape[0]:
            raise LossInputError(
                f"logits have {logits.shape[1]} classes but pos_weight has {self.pos_weight.shape[0]}"
            )
        losses = F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight.to(logits.device, logits.dtype), reduction="none"
        )
        return _masked_mean(losses, keep)


class BatchBalancedBCE(nn.Module):
    """The DGC paper's weighted BCE, weights counted on the mini-batch (all classes together).

    With |P| the number of positive and |N| the number of negative unmasked entries of the batch's
    target matrix, beta_P = (|P| + |N|) / |P| and beta_N = (|P| + |N|) / |N|, and

        loss = -(beta_P * sum_{y=1} log p + beta_N * sum_{y=0} log(1 - p)) / (|P| + |N|)
             = mean over positives of -log p  +  mean over negatives of -log(1 - p).

    When a batch has no positive (|P| = 0) beta_P is undefined but multiplies an empty sum; the
    present kind's weight is then (|P| + |N|) / |N| = 1 and the loss is plain BCE (likewise for
    |N| = 0). Soft targets t in [0, 1] count t towards |P| and 1 - t towards |N|.
    """

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        keep, targets = _check_binary(logits, targets, mask)
        keep_f, targets_f = keep.float(), targets.float()  # count in float32 even under autocast
        n_pos = (targets_f * keep_f).sum()
        n_neg = ((1 - targets_f) * keep_f).sum()
        total = n_pos + n_neg
        beta_pos = torch.where(n_pos > 0, total / n_pos.clamp(min=1e-12), torch.ones_like(total))
        beta_neg = torch.where(n_neg > 0, total / n_neg.clamp(min=1e-12), torch.ones_like(total))
        neg_log_p = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        neg_log_1mp = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        losses = beta_pos * targets * neg_log_p + beta_neg * (1 - targets) * neg_log_1mp
        return _masked_mean(losses, keep)


class MultiClassCE(nn.Module):
    """Cross-entropy over {negative 0, positive 1, uncertain 2} per label (CheXpert U-MultiClass).

    Logits ``(N, L, 3)`` from the ``multiclass3`` head, targets ``(N, L)`` holding class indices
    (see ``training.models.config.MULTICLASS_*``); averaged over unmasked elements.
    """

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        if logits.dim() != 3 or logits.shape[2] != MULTICLASS_CLASSES:
            raise LossInputError(
                f"multiclass-ce takes logits of shape (N, L, {MULTICLASS_CLASSES}) from the multiclass3 "
                f"head; got {tuple(logits.shape)}"
            )
        keep, targets = _prepare(logits, targets, mask, tuple(logits.shape[:2]))
        if targets.is_floating_point() and bool((targets != targets.round()).any()):
            raise LossInputError(
                "multiclass-ce targets must be class indices 0, 1 or 2; got non-integer values"
            )
        indices = targets.long()
        bad = (indices < 0) | (indices >= MULTICLASS_CLASSES)
        if bool(bad.any()):
            raise LossInputError(
                f"multiclass-ce targets must be 0 (negative), 1 (positive) or 2 (uncertain) where the mask "
                f"is 1; got {indices[bad][0].item()}"
            )
        losses = F.cross_entropy(logits.permute(0, 2, 1), indices, reduction="none")
        return _masked_mean(losses, keep)


LOSSES: dict[str, type[nn.Module]] = {
    "bce": MaskedBCE,
    "weighted-bce": PrevalenceWeightedBCE,
    "batch-balanced-bce": BatchBalancedBCE,
    "multiclass-ce": MultiClassCE,
}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`); ``weighted-bce`` needs ``pos_weight=``."""
    if name not in LOSSES:
        hint = difflib.get_close_matches(name, list(LOSSES), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise LossInputError(f"unknown loss {name!r}; expected one of {list(LOSSES)}{did_you_mean}")
    if name == "weighted-bce" and "pos_weight" not in kwargs:
        raise LossInputError(
            "loss 'weighted-bce' needs pos_weight= (per-class N_neg / N_pos; see positive_class_weights())"
        )
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise LossInputError(f"loss {name!r} does not take arguments {sorted(kwargs)}: {exc}") from exc


def positive_class_weights(targets: Tensor | ArrayLike, mask: Tensor | ArrayLike | None = None) -> Tensor:
    """Per-class ``pos_weight = N_neg / N_pos`` counted on the training targets ``(N, L)``.

    Targets must be 0/1 (or soft, counted fractionally) where ``mask`` is non-zero. A class without
    any positive (or without any negative) cannot be balanced: it gets weight 1.0 and a warning.
    """
    t = np.asarray(targets.detach().cpu() if isinstance(targets, Tensor) else targets, dtype=np.float64)
    if t.ndim != 2:
        raise LossInputError(f"targets must have shape (N, L); got {t.shape}")
    if mask is None:
        keep = np.ones_like(t, dtype=bool)
    else:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask)
        if m.shape != t.shape:
            raise LossInputError(f"mask has shape {m.shape}; expected {t.shape} like the targets")
        keep = m != 0
    kept = np.where(keep, t, 0.0)
    if not (np.all(kept >= 0) and np.all(kept <= 1)):
        bad = kept[~((kept >= 0) & (kept <= 1))][0]
        raise LossInputError(f"targets must lie in [0, 1] where the mask is 1; got {bad}")
    n_pos = kept.sum(axis=0)
    n_neg = (keep * (1.0 - kept)).sum(axis=0)
    weights = np.ones(t.shape[1])
    usable = (n_pos > 0) & (n_neg > 0)
    weights[usable] = n_neg[usable] / n_pos[usable]
    for c in np.flatnonzero(~usable):
        logger.warning(
            "class %d has %d positives and %d negatives in the training targets; pos_weight set to 1.0",
            c,
            int(n_pos[c]),
            int(n_neg[c]),
        )
    return torch.as_tensor(weights, dtype=torch.float32)
