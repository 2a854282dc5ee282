"""Fit the image-quality checks at export (numpy + Pillow; no torch needed).

The template is the mean working copy of the training split (the same images the feature gate is
fitted on); every check's threshold is set on the whole validation split (the checks do not
depend on the model, so calibration images are as held out for them as the evaluation ones) at
the bundle's acceptance shared among the checks (:func:`cxr_core.image_quality.check_acceptance`),
never tighter than the check's clear-case bound. Out-of-distribution images are never used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle import QualityInfo
from cxr_core.errors import CxrEdgeError
from cxr_core.image_quality import (
    CHECKS,
    MIN_VALIDATION_IMAGES,
    TEMPLATE_FIT,
    ImageQualityError,
    QualityStatistics,
    check_acceptance,
    fit_template,
    measure,
    template_copy,
    threshold_for,
    working_copy,
)
from cxr_core.imaging import decode_image
from cxr_core.optional import require
from quantize.calibration import evenly_spaced

logger = logging.getLogger(__name__)


def _decoded(files: Sequence[Path], progress: bool, desc: str) -> Any:
    items: Any = files
    if progress:
        items = require("tqdm", extra="export", purpose="export progress bars").tqdm(
            files, desc=desc, unit="img"
        )
    for path in items:
        try:
            yield decode_image(path).pixels
        except (CxrEdgeError, OSError) as exc:
            raise ImageQualityError(f"{desc[:-1]} {path} cannot be used: {exc}") from exc


def validation_statistics(
    files: Sequence[Path], template: NDArray[np.float32], progress: bool = False
) -> list[QualityStatistics]:
    return [measure(pixels, template) for pixels in _decoded(files, progress, "quality validation images")]


def fit_quality(
    train: Sequence[Path], validation: Sequence[Path], acceptance: float, source: str, progress: bool = False
) -> tuple[QualityInfo, dict[str, NDArray[np.float32]]] | None:
    """The quality record and the arrays of its file, or None when there are too few images."""
    if not train or len(validation) < MIN_VALIDATION_IMAGES:
        logger.warning(
            "%d training and %d validation images: the bundle gets no image-quality checks "
            "(they need %d validation images)",
            len(train),
            len(validation),
            MIN_VALIDATION_IMAGES,
        )
        return None
    copies = [
        template_copy(working_copy(pixels)) for pixels in _decoded(train, progress, "quality training images")
    ]
    template = fit_template(copies)
    stats = validation_statistics(validation, template, progress)
    per_check = check_acceptance(acceptance)
    thresholds = {
        check: round(threshold_for(check, np.array([s.value(check) for s in stats]), per_check), 6)
        for check in (*CHECKS, TEMPLATE_FIT)
    }
    logger.info("image-quality checks fitted on %d training images: %s", len(train), thresholds)
    info = QualityInfo(
        acceptance=acceptance,
        check_acceptance=round(per_check, 6),
        fitted_on=f"{source} ({len(train)} training images, {len(validation)} validation images)",
        train_images=len(train),
        validation_images=len(validation),
        thresholds=thresholds,
    )
    return info, {"template": template}


def fit_quality_from_splits(
    splits: Any | None, train_images: int, acceptance: float, progress: bool = False
) -> tuple[QualityInfo, dict[str, NDArray[np.float32]]] | None:
    """:func:`fit_quality` on a checkpoint's recorded splits (None without a training split)."""
    if splits is None or not splits.train or train_images < 1:
        logger.warning("no training split recorded: the bundle gets no image-quality checks")
        return None
    train = evenly_spaced([Path(r.path) for r in splits.train], train_images)  # as the feature gate
    validation = sorted((Path(r.path) for r in splits.val), key=str)
    return fit_quality(train, validation, acceptance, f"splits of {splits.name}", progress)
