"""Types shared by the photo-capture modules (:mod:`cxr_core.capture` is the public module).

Kept apart so that detection (:mod:`cxr_core.capture_detect`), the quality checks
(:mod:`cxr_core.capture_quality`) and the capture itself import one way, into this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError
from cxr_core.input_gate import ImageRefusedError

#: Corner order everywhere: top-left, top-right, bottom-right, bottom-left of the film as it is read.
CORNER_NAMES: tuple[str, ...] = ("top-left", "top-right", "bottom-right", "bottom-left")


class PhotoRefusedError(ImageRefusedError):
    """A photo of a film that cannot be used: ``reason`` says what is wrong in plain words, ``fix`` what
    to do ("avoid the reflection", ...), ``code`` which check refused (``no_film``, ``two_films``,
    ``cut_off``, ``tilt``, ``far``, ``glare``, ``blur``, ``moire``), ``measures`` the quality figures."""

    def __init__(
        self,
        path: str | Path,
        code: str,
        reason: str,
        fix: str,
        measures: Mapping[str, float] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.fix = fix
        self.measures = dict(measures or {})
        super().__init__(path, [f"{reason}; {fix}"])


class CaptureInputError(CxrEdgeError, ValueError):
    """An argument of the capture functions is malformed (not an RGB array, corners not 4 points)."""


@dataclass(frozen=True, eq=False)
class FilmQuad:
    """Where the film is in a photo: ``corners`` (4, 2) float64 in photo pixels, in the order of
    :data:`CORNER_NAMES`; ``confidence`` in [0, 1] is the share of the film's outline backed by an edge."""

    corners: NDArray[np.float64]
    confidence: float
    #: Sides that lie on the photo's border (the film runs out of the frame): indices 0..3 = top,
    #: right, bottom, left.
    border_sides: tuple[int, ...] = field(default=())


def as_corners(corners: object, name: str = "corners") -> NDArray[np.float64]:
    """``corners`` as a finite (4, 2) float64 array, or :class:`CaptureInputError` naming what came."""
    try:
        array = np.asarray(corners, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CaptureInputError(f"{name} {corners!r} are not numbers; expected 4 (x, y) points") from exc
    if array.shape != (4, 2) or not np.isfinite(array).all():
        raise CaptureInputError(
            f"{name} have shape {array.shape} (or non-finite values); expected 4 finite (x, y) points "
            f"in the order {', '.join(CORNER_NAMES)}"
        )
    return array


@dataclass(frozen=True)
class PhotoInput:
    """What a prediction records of the photo it was made from (JSON-ready via :meth:`to_dict`)."""

    corners: tuple[tuple[float, float], ...]  # in the original photo's pixels, TL, TR, BR, BL
    detected: bool  # False when the user supplied the corners
    quality: dict[str, float]
    photo_size: tuple[int, int]  # (width, height)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "photo",
            "corners": [[round(x, 2), round(y, 2)] for x, y in self.corners],
            "detected": self.detected,
            "quality": dict(self.quality),
            "photo_size": list(self.photo_size),
        }


#: What a prediction of an image file records as its input (the photo fields are null).
FILE_INPUT: dict[str, object] = {
    "kind": "file",
    "corners": None,
    "detected": None,
    "quality": None,
    "photo_size": None,
}


def input_record(photo: PhotoInput | None) -> dict[str, object]:
    """The ``input`` record of a prediction: a file, or the photo's corners and quality figures."""
    return dict(FILE_INPUT) if photo is None else photo.to_dict()
