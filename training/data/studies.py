"""Study-level aggregation: one score per study from the scores of its images.

CheXpert is labelled per study and its evaluation protocol scores a study by the maximum of
the model's outputs over the study's images (frontal and lateral views). The same maximum
turns per-image binary targets into per-study targets. For ChestX-ray14 every image is its own
study, so aggregation leaves the scores unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import ScoreInputError


def aggregate_by_study(
    scores: NDArray[np.generic], study_ids: Sequence[str]
) -> tuple[NDArray[np.generic], tuple[str, ...]]:
    """Max over each study's rows of ``scores`` (N, L).

    Returns ``(study_scores, study_ids_unique)``: ``study_scores`` is (S, L) with the dtype of
    ``scores``; studies are in order of first appearance in ``study_ids``. NaN propagates (a
    study with a NaN score for a label gets NaN for that label).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ScoreInputError(f"aggregate_by_study expects scores of shape (N, L); got shape {scores.shape}")
    if len(study_ids) != scores.shape[0]:
        raise ScoreInputError(
            f"aggregate_by_study got {scores.shape[0]} score rows but {len(study_ids)} study ids; "
            "expected one study id per row"
        )
    position: dict[str, int] = {}
    ids = (position.setdefault(study, len(position)) for study in study_ids)
    inverse = np.fromiter(ids, dtype=np.int64, count=len(study_ids))
    if np.issubdtype(scores.dtype, np.floating):
        fill = -np.inf
    elif np.issubdtype(scores.dtype, np.integer):
        fill = np.iinfo(scores.dtype).min
    elif scores.dtype == np.bool_:
        fill = False
    else:
        raise ScoreInputError(
            f"aggregate_by_study expects numeric or boolean scores; got dtype {scores.dtype}"
        )
    out = np.full((len(position), scores.shape[1]), fill, dtype=scores.dtype)
    np.maximum.at(out, inverse, scores)
    return out, tuple(position)
