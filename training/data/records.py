"""Torch-free records shared by every dataset loader: one image, its labels and who it belongs to.

Loaders (ChestX-ray14, CheXpert, the synthetic phantom set, which uses the ChestX-ray14 layout)
produce :class:`DatasetSplits`; the torch ``Dataset`` and the training loop consume it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cxr_core.errors import CxrEdgeError
from cxr_core.labels import LabelSet


class DatasetOptionError(CxrEdgeError, ValueError):
    """An unknown dataset kind, loader option, split name or split fraction, or a bad sample size."""


class UnknownSplitError(DatasetOptionError, KeyError):
    """A split name other than train, val and test."""


#: Raw label values in an :class:`ImageRecord`.
POSITIVE = 1.0
NEGATIVE = 0.0
UNCERTAIN = -1.0
NOT_MENTIONED = math.nan

#: Class indices of U-MultiClass targets, of the ``multiclass3`` model head and of the
#: ``multiclass-ce`` loss: one definition so the three can never drift apart.
MULTICLASS_NEGATIVE = 0
MULTICLASS_POSITIVE = 1
MULTICLASS_UNCERTAIN = 2
MULTICLASS_CLASSES = 3


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    ``labels`` follows the dataset's :class:`LabelSet` order with raw values: 1.0 positive,
    0.0 negative, -1.0 uncertain (CheXpert only), NaN not mentioned (CheXpert blank cells).
    An uncertainty policy turns them into training targets.
    """

    path: Path
    labels: tuple[float, ...]
    patient_id: str
    study_id: str
    view: str = ""  # e.g. "PA", "AP", "LATERAL"
    frontal: bool = True
    age: float | None = None
    sex: str | None = None


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test records of one dataset, with the label order they use."""

    name: str
    label_set: LabelSet
    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]
    test: tuple[ImageRecord, ...]

    def split(self, name: str) -> tuple[ImageRecord, ...]:
        """Records of split ``name`` (train, val or test)."""
        if name not in ("train", "val", "test"):
            raise UnknownSplitError(f"unknown split {name!r}; expected one of ['train', 'val', 'test']")
        return getattr(self, name)
