"""Losses against hand-computed values on a 2x3 example, masks, empty kinds, errors, and a short fit."""

from __future__ import annotations

import logging
import math

import pytest

torch = pytest.importorskip("torch")

from training.losses import (  # noqa: E402
    BatchBalancedBCE,
    LossInputError,
    MaskedBCE,
    MultiClassCE,
    PrevalenceWeightedBCE,
    build_loss,
    positive_class_weights,
)
from training.models import ModelConfig, build_model  # noqa: E402

pytestmark = pytest.mark.needs_torch

LOGITS = [[0.5, -1.0, 2.0], [-0.3, 0.8, 0.0]]
TARGETS = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pos(x: float) -> float:
    """-log p for a positive."""
    return -math.log(_sig(x))


def _neg(x: float) -> float:
    """-log(1 - p) for a negative."""
    return -math.log(1.0 - _sig(x))


# Per-element terms of the 2x3 example, by hand.
A, B, C = _pos(0.5), _neg(-1.0), _neg(2.0)
D, E, F = _neg(-0.3), _neg(0.8), _pos(0.0)


def _t(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_plain_bce_matches_hand_computation() -> None:
    loss = build_loss("bce")(_t(LOGITS), _t(TARGETS))
    assert isinstance(build_loss("bce"), MaskedBCE)
    assert loss.item() == pytest.approx((A + B + C + D + E + F) / 6, rel=1e-6)


def test_prevalence_weighted_bce_matches_hand_computation() -> None:
    loss_fn = build_loss("weighted-bce", pos_weight=[2.0, 0.5, 3.0])
    assert isinstance(loss_fn, PrevalenceWeightedBCE)
    # Positives sit in class 0 (row 0) and class 2 (row 1); negatives are unweighted.
    expected = (2.0 * A + B + C + D + E + 3.0 * F) / 6
    assert loss_fn(_t(LOGITS), _t(TARGETS)).item() == pytest.approx(expected, rel=1e-6)


def test_batch_balanced_bce_matches_the_dgc_formula() -> None:
    # |P| = 2, |N| = 4: beta_P = 6 / 2 = 3, beta_N = 6 / 4 = 1.5; averaged over the 6 entries.
    expected = (3.0 * (A + F) + 1.5 * (B + C + D + E)) / 6
    loss = build_loss("batch-balanced-bce")(_t(LOGITS), _t(TARGETS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Equivalently: mean over positives plus mean over negatives.
    assert loss.item() == pytest.approx((A + F) / 2 + (B + C + D + E) / 4, rel=1e-6)


def test_batch_balanced_bce_without_positives_or_negatives_is_plain_bce() -> None:
    logits = _t(LOGITS)
    zeros, ones = torch.zeros(2, 3), torch.ones(2, 3)
    no_pos = BatchBalancedBCE()(logits, zeros)
    assert no_pos.item() == pytest.approx((_neg(0.5) + B + C + D + E + _neg(0.0)) / 6, rel=1e-6)
    no_neg = BatchBalancedBCE()(logits, ones)
    all_pos = (A + _pos(-1.0) + _pos(2.0) + _pos(-0.3) + _pos(0.8) + F) / 6
    assert no_neg.item() == pytest.approx(all_pos, rel=1e-6)
    assert math.isfinite(no_pos.item()) and math.isfinite(no_neg.item())


def test_multiclass_ce_matches_hand_computation() -> None:
    logits = [[[1.0, 0.0, -1.0], [0.2, 0.4, 0.6]], [[-0.5, 2.0, 0.0], [0.0, 0.0, 3.0]]]
    targets = [[0, 2], [1, 2]]  # negative, uncertain / positive, uncertain
    terms = []
    for row, target_row in zip(logits, targets, strict=True):
        for scores, target in zip(row, target_row, strict=True):
            log_sum = math.log(sum(math.exp(s) for s in scores))
            terms.append(log_sum - scores[target])
    loss = build_loss("multiclass-ce")(_t(logits), torch.tensor(targets))
    assert isinstance(build_loss("multiclass-ce"), MultiClassCE)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-6)
    masked = MultiClassCE()(_t(logits), _t([[0, 2], [1, -1]]), mask=_t([[1, 1], [1, 0]]))
    assert masked.item() == pytest.approx(sum(terms[:3]) / 3, rel=1e-6)


# --- masks -------------------------------------------------------------------------------------


def test_mask_ignores_entries_whatever_their_target() -> None:
    targets = _t([[1.0, math.nan, 0.0], [0.0, -1.0, 1.0]])  # NaN: not mentioned; -1: uncertain
    mask = _t([[1, 0, 1], [1, 0, 1]])
    plain = MaskedBCE()(_t(LOGITS), targets, mask)
    assert plain.item() == pytest.approx((A + C + D + F) / 4, rel=1e-6)
    weighted = PrevalenceWeightedBCE([2.0, 7.0, 3.0])(_t(LOGITS), targets, mask)
    assert weighted.item() == pytest.approx((2.0 * A + C + D + 3.0 * F) / 4, rel=1e-6)
    # Masked entries do not count: |P| = 2, |N| = 2, beta_P = beta_N = 2.
    balanced = BatchBalancedBCE()(_t(LOGITS), targets, mask.bool())
    assert balanced.item() == pytest.approx((2.0 * (A + F) + 2.0 * (C + D)) / 4, rel=1e-6)


def test_mask_changes_the_batch_balanced_counts() -> None:
    mask = _t([[1, 0, 1], [1, 1, 1]])  # drops the negative B: |P| = 2, |N| = 3
    expected = (5 / 2 * (A + F) + 5 / 3 * (C + D + E)) / 5
    assert BatchBalancedBCE()(_t(LOGITS), _t(TARGETS), mask).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["bce", "batch-balanced-bce"])
def test_fully_masked_batch_gives_zero_and_zero_gradients(name: str) -> None:
    logits = _t(LOGITS).requires_grad_()
    loss = build_loss(name)(logits, _t(TARGETS), torch.zeros(2, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and bool((logits.grad == 0).all())


def test_losses_are_stable_for_extreme_logits() -> None:
    logits = _t([[100.0, -100.0], [-100.0, 100.0]])
    targets = _t([[0.0, 1.0], [1.0, 1.0]])  # three confidently wrong entries, one right
    for name in ("bce", "batch-balanced-bce"):
        value = build_loss(name)(logits, targets).item()
        assert math.isfinite(value) and value > 50
    assert build_loss("bce")(logits, targets).item() == pytest.approx(300 / 4, rel=1e-4)


# --- prevalence weights ------------------------------------------------------------------------


def test_positive_class_weights_count_the_training_targets(caplog: pytest.LogCaptureFixture) -> None:
    targets = [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, math.nan]]
    mask = [[1, 1, 1]] * 5 + [[1, 1, 0]]
    with caplog.at_level(logging.WARNING, logger="training.losses"):
        weights = positive_class_weights(targets, mask)
    # class 0: 1 positive, 5 negatives; class 1: no positive (fallback 1.0); class 2: 2 vs 3.
    assert weights.tolist() == pytest.approx([5.0, 1.0, 1.5])
    assert "class 1 has 0 positives" in caplog.text
    assert "class 0" not in caplog.text and "class 2" not in caplog.text


def test_positive_class_weights_reject_unmasked_uncertain_labels() -> None:
    with pytest.raises(LossInputError, match="got -1.0"):
        positive_class_weights(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(LossInputError, match=r"shape \(N, L\)"):
        positive_class_weights([1.0, 0.0])


# --- errors ------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    logits = _t(LOGITS)
    with pytest.raises(LossInputError, match=r"targets have shape \(3, 2\); expected \(2, 3\)"):
        MaskedBCE()(logits, torch.zeros(3, 2))
    with pytest.raises(LossInputError, match=r"mask has shape \(2,\)"):
        MaskedBCE()(logits, _t(TARGETS), torch.ones(2))
    with pytest.raises(LossInputError, match="got -1.0"):
        BatchBalancedBCE()(logits, _t([[1, -1, 0], [0, 0, 1]]))
    with pytest.raises(LossInputError, match="got nan"):
        MaskedBCE()(logits, _t([[1, math.nan, 0], [0, 0, 1]]))
    with pytest.raises(LossInputError, match="3 classes but pos_weight has 2"):
        PrevalenceWeightedBCE([1.0, 2.0])(logits, _t(TARGETS))
    with pytest.raises(LossInputError, match="finite, non-negative"):
        PrevalenceWeightedBCE([1.0, math.inf, 2.0])
    with pytest.raises(LossInputError, match=r"shape \(N, L, 3\)"):
        MultiClassCE()(logits, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(LossInputError, match="got 3"):
        MultiClassCE()(torch.zeros(1, 2, 3), torch.tensor([[0, 3]]))
    with pytest.raises(LossInputError, match="non-integer"):
        MultiClassCE()(torch.zeros(1, 2, 3), _t([[0, 0.5]]))


def test_build_loss_names_and_arguments() -> None:
    with pytest.raises(LossInputError, match="did you mean 'weighted-bce'"):
        build_loss("weighted_bce")
    with pytest.raises(LossInputError, match="needs pos_weight"):
        build_loss("weighted-bce")
    with pytest.raises(LossInputError, match="does not take arguments"):
        build_loss("bce", pos_weight=[1.0])
    assert isinstance(build_loss("batch-balanced-bce"), BatchBalancedBCE)


# --- with a real model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss_name", "head"), [("batch-balanced-bce", "binary"), ("multiclass-ce", "multiclass3")]
)
def test_a_tiny_model_fits_a_fixed_batch(loss_name: str, head: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig("chexnet", "tiny-densenet", num_classes=3, head=head))
    loss_fn = build_loss(loss_name)
    x = torch.randn(4, 3, 32, 32)
    if head == "binary":
        targets = _t([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    else:
        targets = torch.tensor([[1, 0, 2], [0, 1, 0], [2, 0, 1], [1, 1, 0]])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn(model(x), targets)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
