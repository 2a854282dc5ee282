"""The labelled held-out images on which export parity and the AUC gate are measured.

By default: the checkpoint's validation split minus the calibration images (INT8 ranges were
fitted on those, so parity measured there is optimistic), with the labels encoded exactly as
training's metrics encode them (uncertain labels masked). Capped at ``limit`` images, spread
evenly. Without a recorded dataset (``--calibration-dir``) there is no labelled set: parity is
then measured on the calibration images and the AUC figures are absent from the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quantize.calibration import CalibrationSet, evenly_spaced

logger = logging.getLogger(__name__)

DEFAULT_EVALUATION_IMAGES = 512


@dataclass(frozen=True)
class EvaluationSet:
    """Evaluation images (in order) with their truth and mask ``(N, L)``."""

    source: str
    root: Path
    files: tuple[Path, ...]
    truth: NDArray[np.float32]
    mask: NDArray[np.float32]

    def to_dict(self) -> dict[str, Any]:
        names = [
            f.relative_to(self.root).as_posix() if f.is_relative_to(self.root) else str(f) for f in self.files
        ]
        positives = (self.truth * self.mask).sum(axis=0)
        return {
            "source": self.source,
            "root": str(self.root),
            "count": len(self.files),
            "positives_per_label": [int(p) for p in positives],
            "files": names,
        }


def from_splits(splits: Any, root: Path, calibration: CalibrationSet, limit: int) -> EvaluationSet | None:
    """Validation records not used for calibration, up to ``limit``; ``None`` when none are left."""
    from training.evaluation import evaluation_truth

    used = {Path(f) for f in calibration.files}
    records = [r for r in sorted(splits.val, key=lambda r: str(r.path)) if Path(r.path) not in used]
    if limit <= 0 or not records:
        logger.warning("no held-out evaluation images: parity is measured on the calibration images")
        return None
    picked_paths = evenly_spaced([Path(r.path) for r in records], limit)
    keep = set(picked_paths)
    picked = [r for r in records if Path(r.path) in keep]
    truth, mask, _ = evaluation_truth(picked, splits.label_set, study_level=False)
    return EvaluationSet(
        source=f"validation split of {splits.name} at {root}, minus the calibration images",
        root=root,
        files=tuple(Path(r.path) for r in picked),
        truth=truth.astype(np.float32),
        mask=mask.astype(np.float32),
    )
