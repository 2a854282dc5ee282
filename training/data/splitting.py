"""Patient-level, seeded, deterministic splits.

Images of one patient are strongly correlated (follow-up studies, several views); splitting by
image would put a patient in both the training and the validation split and inflate the
validation AUC. Every split here holds whole patients.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from training.data.records import DatasetOptionError, ImageRecord

logger = logging.getLogger(__name__)


def check_fraction(name: str, value: float) -> float:
    """Validate a split fraction in [0, 1); returns it as a float."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise DatasetOptionError(f"{name}={value!r} is not a number; expected a fraction in [0, 1)") from None
    if not 0.0 <= fraction < 1.0:
        raise DatasetOptionError(
            f"{name}={value!r}; expected a fraction in [0, 1) (e.g. 0.125 for one patient in eight)"
        )
    return fraction


def held_out_patients(patient_ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """The patients to hold out: ``round(fraction * n_patients)`` of them, chosen by ``seed``.

    Deterministic for a given set of patients, seed and fraction, whatever the order of
    ``patient_ids`` (they are sorted before shuffling). At least one patient is held out when
    ``fraction > 0`` and there are two or more patients, and at least one always remains.
    """
    fraction = check_fraction("fraction", fraction)
    unique = sorted(set(patient_ids))
    if fraction == 0.0 or len(unique) < 2:
        return frozenset()
    n_held = min(max(1, round(fraction * len(unique))), len(unique) - 1)
    order = np.random.default_rng(seed).permutation(len(unique))
    return frozenset(unique[i] for i in order[:n_held])


def split_by_patient(
    records: Sequence[ImageRecord], fraction: float, seed: int
) -> tuple[tuple[ImageRecord, ...], tuple[ImageRecord, ...]]:
    """Split ``records`` into (kept, held out) by patient; ``fraction`` is a fraction of patients.

    Record order is preserved inside each part.
    """
    held = held_out_patients([record.patient_id for record in records], fraction, seed)
    kept = tuple(record for record in records if record.patient_id not in held)
    out = tuple(record for record in records if record.patient_id in held)
    logger.debug("patient split (fraction %.4f, seed %d): %d patients held out", fraction, seed, len(held))
    return kept, out
