"""Uncertainty policies: raw dataset labels -> training targets and a loss mask.

Raw label values (see :mod:`training.data.records`): 1.0 positive, 0.0 negative, -1.0
uncertain (CheXpert's labeller found the finding mentioned with uncertainty), NaN not
mentioned (a blank CheXpert cell).

Standard convention, used by every policy here: a finding that is **not mentioned** is
**negative** (target 0, counted in the loss), as in the CheXpert paper and CheXNet-style
training. Only the *uncertain* value depends on the policy (Irvin et al. 2019, section 3):

=============  =============================================================
``u-ignore``   uncertain is masked out of the loss (mask 0, target 0)
``u-zeros``    uncertain -> negative (0)
``u-ones``     uncertain -> positive (1)
``u-multiclass``  three classes per finding: 0 negative, 1 positive, 2 uncertain
=============  =============================================================

A policy can also be a mapping from label name to policy (``"*"`` gives the default for
labels not named), or the preset ``chexpert-paper``: U-Ones for Atelectasis and Edema, U-Zeros
for Cardiomegaly, Consolidation and Pleural Effusion, U-Ignore for the other observations.
(The CheXpert paper found U-Ones best for Atelectasis and Edema; for the other three
competition tasks its best results came from U-MultiClass or U-SelfTrained, which this widely
used per-observation recipe replaces by U-Zeros; see docs/data.md.)
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError
from cxr_core.labels import LabelSet
from training.data.checks import ProblemReport, check_label_width
from training.data.records import (
    MULTICLASS_CLASSES,
    MULTICLASS_NEGATIVE,
    MULTICLASS_POSITIVE,
    MULTICLASS_UNCERTAIN,
    ImageRecord,
)

logger = logging.getLogger(__name__)


class LabelPolicyError(CxrEdgeError, ValueError):
    """An unknown uncertainty policy, or targets / masks / policies that do not fit together."""


U_IGNORE = "u-ignore"
U_ZEROS = "u-zeros"
U_ONES = "u-ones"
U_MULTICLASS = "u-multiclass"
#: The per-label uncertainty policies.
UNCERTAINTY_POLICIES: tuple[str, ...] = (U_IGNORE, U_ZEROS, U_ONES, U_MULTICLASS)

#: Key of a policy mapping that sets the policy of every label the mapping does not name.
DEFAULT_KEY = "*"
#: Policy of labels a mapping does not name when it has no ``"*"`` entry.
DEFAULT_POLICY = U_IGNORE

#: Named per-observation presets. Label names a preset uses that the label set lacks are skipped.
POLICY_PRESETS: dict[str, Mapping[str, str]] = {
    "chexpert-paper": {
        "Atelectasis": U_ONES,
        "Edema": U_ONES,
        "Cardiomegaly": U_ZEROS,
        "Consolidation": U_ZEROS,
        "Pleural Effusion": U_ZEROS,
        DEFAULT_KEY: U_IGNORE,
    },
}

#: Every name ``--uncertainty-policy`` accepts.
POLICY_CHOICES: tuple[str, ...] = UNCERTAINTY_POLICIES + tuple(POLICY_PRESETS)

#: Classes of multiclass targets (one definition in records.py, shared with the model head and loss).
CLASS_NEGATIVE, CLASS_POSITIVE = MULTICLASS_NEGATIVE, MULTICLASS_POSITIVE
CLASS_UNCERTAIN = MULTICLASS_UNCERTAIN
N_MULTICLASS = MULTICLASS_CLASSES


@dataclass(frozen=True)
class EncodedTargets:
    """Training targets of N images for L labels.

    ``targets`` is float32 (N, L) in {0, 1} for binary policies, or int64 (N, L) in {0, 1, 2}
    (negative, positive, uncertain) for ``u-multiclass``. ``mask`` is float32 (N, L): 1 where
    the target counts in the loss, 0 where it is ignored. ``policies`` is the policy of each label.
    """

    targets: NDArray[np.generic]
    mask: NDArray[np.float32]
    policies: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.targets.ndim != 2 or self.targets.shape != self.mask.shape:
            raise LabelPolicyError(
                f"EncodedTargets: targets {self.targets.shape} and mask {self.mask.shape} must both be (N, L)"
            )
        if len(self.policies) != self.targets.shape[1]:
            raise LabelPolicyError(
                f"EncodedTargets: {len(self.policies)} policies for {self.targets.shape[1]} labels; "
                "expected one policy per label"
            )

    @property
    def multiclass(self) -> bool:
        """True when targets are class indices (``u-multiclass``)."""
        return U_MULTICLASS in self.policies

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, indices: Sequence[int] | NDArray[np.integer]) -> EncodedTargets:
        """The targets of rows ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return EncodedTargets(self.targets[idx], self.mask[idx], self.policies)


def normalise_policy_name(name: str) -> str:
    """Canonical policy name (``U_Ones`` -> ``u-ones``); refuses unknown names with a suggestion."""
    if not isinstance(name, str):
        raise LabelPolicyError(
            f"uncertainty policy {name!r} is not a name; expected one of {list(POLICY_CHOICES)}"
        )
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in POLICY_CHOICES:
        return key
    hint = difflib.get_close_matches(key, POLICY_CHOICES, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise LabelPolicyError(
        f"unknown uncertainty policy {name!r}; expected one of {list(POLICY_CHOICES)}{did_you_mean}"
    )


def _mapping_policies(mapping: Mapping[str, str], label_set: LabelSet, preset: bool) -> tuple[str, ...]:
    chosen: dict[str, str] = {}
    for label, value in mapping.items():
        policy = normalise_policy_name(value)
        if policy in POLICY_PRESETS:
            raise LabelPolicyError(
                f"policy for {label!r} is the preset {policy!r}; expected one of {list(UNCERTAINTY_POLICIES)}"
            )
        if label != DEFAULT_KEY and label not in label_set.labels:
            if preset:
                continue
            hint = difflib.get_close_matches(label, label_set.labels, n=1)
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise LabelPolicyError(
                f"uncertainty policy names label {label!r}, which is not in label set {label_set.name!r}"
                f"{did_you_mean}; expected one of {list(label_set.labels)} or {DEFAULT_KEY!r} for the default"
            )
        chosen[label] = policy
    default = chosen.get(DEFAULT_KEY, DEFAULT_POLICY)
    return tuple(chosen.get(label, default) for label in label_set.labels)


def resolve_policy(policy: str | Mapping[str, str], label_set: LabelSet) -> tuple[str, ...]:
    """The policy of each label of ``label_set``, from a policy name, preset name or mapping.

    ``u-multiclass`` is all or nothing: a mapping that gives it to some labels only is refused,
    because the model head then has one shape for every label.
    """
    if isinstance(policy, str):
        name = normalise_policy_name(policy)
        if name in POLICY_PRESETS:
            policies = _mapping_policies(POLICY_PRESETS[name], label_set, preset=True)
        else:
            policies = (name,) * len(label_set)
    elif isinstance(policy, Mapping):
        policies = _mapping_policies(policy, label_set, preset=False)
    else:
        raise LabelPolicyError(
            f"uncertainty policy must be a name or a mapping label -> name; got {type(policy).__name__}"
        )
    if U_MULTICLASS in policies and set(policies) != {U_MULTICLASS}:
        raise LabelPolicyError(
            f"{U_MULTICLASS!r} must apply to every label or to none; got "
            f"{dict(zip(label_set.labels, policies, strict=True))}"
        )
    return policies


def encode_label_matrix(
    raw: NDArray[np.floating], policies: Sequence[str], row_name: Callable[[int], str] = str
) -> EncodedTargets:
    """Encode a raw label matrix (N, L) with one policy per column (see the module docstring).

    Raises :class:`DatasetError` listing the rows (named by ``row_name(position)``) that hold a
    value other than 1, 0, -1 or NaN.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(policies):
        raise LabelPolicyError(
            f"raw labels of shape {raw.shape} do not match {len(policies)} policies; expected (N, L)"
        )
    blank = np.isnan(raw)
    valid = blank | (raw == 1.0) | (raw == 0.0) | (raw == -1.0)
    if not valid.all():
        rows = np.flatnonzero(~valid.all(axis=1))
        report = ProblemReport("raw labels")
        report.add(
            f"{len(rows)} row(s) hold label values other than 1, 0, -1 or blank (row: values)",
            [f"{row_name(int(r))}: {raw[r].tolist()}" for r in rows],
        )
        report.raise_if_any()
    positive = raw == 1.0
    uncertain = raw == -1.0
    if U_MULTICLASS in policies:
        targets = np.full(raw.shape, CLASS_NEGATIVE, dtype=np.int64)
        targets[positive] = CLASS_POSITIVE
        targets[uncertain] = CLASS_UNCERTAIN
        return EncodedTargets(targets, np.ones(raw.shape, dtype=np.float32), tuple(policies))
    per_label = np.asarray(policies)
    targets = positive.astype(np.float32)
    targets[uncertain & (per_label == U_ONES)[None, :]] = 1.0
    mask = np.ones(raw.shape, dtype=np.float32)
    mask[uncertain & (per_label == U_IGNORE)[None, :]] = 0.0
    return EncodedTargets(targets, mask, tuple(policies))


def raw_label_matrix(records: Sequence[ImageRecord], n_labels: int) -> NDArray[np.float64]:
    """The raw labels of ``records`` as a float64 (N, L) matrix (NaN = not mentioned)."""
    if not records:
        return np.zeros((0, n_labels), dtype=np.float64)
    check_label_width(records, n_labels, "records")
    return np.array([record.labels for record in records], dtype=np.float64)


def encode_targets(
    records: Sequence[ImageRecord], label_set: LabelSet, policy: str | Mapping[str, str] = U_IGNORE
) -> EncodedTargets:
    """Training targets and loss mask of ``records`` under ``policy`` (a name, preset or mapping)."""
    policies = resolve_policy(policy, label_set)
    raw = raw_label_matrix(records, len(label_set))
    encoded = encode_label_matrix(raw, policies, row_name=lambda i: str(records[i].path))
    n_uncertain = int((raw == -1.0).sum())
    if n_uncertain:
        logger.info("encoded %d uncertain label(s) with policies %s", n_uncertain, sorted(set(policies)))
    return encoded
