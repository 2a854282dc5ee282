"""Turn cxr_core results into display-sized RGB arrays (no model, preprocessing or CAM logic here).

GPUs of small devices cap texture sizes (4096 px on a Raspberry Pi 4, 4096-8192 on phones) and a
full-resolution 3000 x 3000 radiograph costs 27 MB per RGB texture, so what the screen shows is
downsized with Pillow to at most :data:`DISPLAY_MAX_SIDE` pixels on its long side. Reports and
JSON use the full-resolution arrays straight from :class:`cxr_core.predictor.Prediction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

if TYPE_CHECKING:
    from cxr_core.predictor import Prediction

#: Longest side of a displayed image, in pixels.
DISPLAY_MAX_SIDE = 2048


@dataclass(frozen=True)
class DisplayImages:
    """The grey radiograph and its full-strength overlay for one finding, same display size.

    ``overlay`` is ``Prediction.overlay(label, alpha=1.0)``. The overlay blend is linear in alpha
    (cxr_core.cam.overlay: ``grey + alpha * heat * (colour - grey)``), so drawing it over ``grey``
    with opacity ``a`` on the GPU shows ``overlay(label, alpha=a)``: the opacity slider needs no
    recomputation.
    """

    label: str
    grey: NDArray[np.uint8]  # (h, w, 3)
    overlay: NDArray[np.uint8]  # (h, w, 3)
    original_size: tuple[int, int]  # (H, W) of the decoded image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the display arrays, as Kivy sizes go."""
        return int(self.grey.shape[1]), int(self.grey.shape[0])


def grey_to_rgb8(pixels: NDArray[np.floating]) -> NDArray[np.uint8]:
    """A decoded grey image in [0, 1] (H, W) as RGB uint8 (H, W, 3), rounded as cxr_core.cam.overlay does."""
    unit = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    grey = np.rint(unit * np.float32(255.0)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def fit_for_display(rgb: NDArray[np.uint8], max_side: int = DISPLAY_MAX_SIDE) -> NDArray[np.uint8]:
    """``rgb`` (H, W, 3) downsized (area-averaged) so its long side is at most ``max_side``."""
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return np.ascontiguousarray(rgb)
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def display_images(prediction: Prediction, label: str, max_side: int = DISPLAY_MAX_SIDE) -> DisplayImages:
    """Grey + overlay for ``label`` of a Prediction, both fitted for display (worker-thread work)."""
    pixels = prediction.image.pixels
    overlay = prediction.overlay(label, alpha=1.0)
    return DisplayImages(
        label=label,
        grey=fit_for_display(grey_to_rgb8(pixels), max_side),
        overlay=fit_for_display(np.asarray(overlay, dtype=np.uint8), max_side),
        original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
    )
