"""Synthetic image-quality failures built from a phantom (float32 (H, W) in [0, 1]), one per check.

Used by ``python -m benchmarks.quality_study`` (the figures in docs/input-gate.md, "Image-quality
checks") and by the quality-check tests. numpy + Pillow only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

Pixels = NDArray[np.float32]


def _u8(x: Pixels) -> Image.Image:
    return Image.fromarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _f32(image: Image.Image) -> Pixels:
    return np.asarray(image, dtype=np.float32) / 255.0


def inverted(x: Pixels) -> Pixels:
    return 1.0 - x


def rotated(quarter_turns: int) -> Callable[[Pixels], Pixels]:
    """Turned ``quarter_turns`` x 90 degrees counter-clockwise (numpy's rot90)."""
    return lambda x: np.rot90(x, quarter_turns).copy()


def blank(x: Pixels) -> Pixels:
    """A nearly flat grey page: the phantom at 3% contrast."""
    return (0.5 + 0.03 * (x - 0.5)).astype(np.float32)


def overexposed(x: Pixels) -> Pixels:
    """Burnt out: the brightest 75% of the picture pure white."""
    return np.clip(x / max(float(np.percentile(x, 25)), 1e-3), 0.0, 1.0).astype(np.float32)


def underexposed(x: Pixels) -> Pixels:
    """The darkest 75% of the picture pure black."""
    low = float(np.percentile(x, 75))
    return np.clip((x - low) / max(1.0 - low, 1e-3), 0.0, 1.0).astype(np.float32)


def blurred(x: Pixels) -> Pixels:
    """Gaussian blur with a sigma of 3% of the side (a camera out of focus, a smeared copy)."""
    return _f32(_u8(x).filter(ImageFilter.GaussianBlur(0.03 * x.shape[0])))


def screenshot(x: Pixels) -> Pixels:
    """The phantom small inside an app window: title bar, side bar with a list, flat background."""
    side = x.shape[0]
    screen = Image.new("L", (4 * side, 3 * side), 235)
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, 4 * side, side // 5), fill=60)
    draw.rectangle((side // 10, side // 3, side, 3 * side - side // 10), fill=200)
    for row in range(8):
        top = side // 3 + side // 10 + row * side // 3
        draw.rectangle((side // 6, top, side - side // 10, top + side // 6), fill=150)
    screen.paste(_u8(x).resize((side * 5 // 4, side * 5 // 4)), (2 * side, side))
    return _f32(screen)


def letterboxed(x: Pixels, level: float = 0.3) -> Pixels:
    """The square phantom centred in a 16:9 frame with flat bars of grey ``level`` (a viewer's background)."""
    side = x.shape[0]
    width = side * 16 // 9
    frame = np.full((side, width), level, np.float32)
    left = (width - side) // 2
    frame[:, left : left + side] = x
    return frame


#: check -> the synthetic failures it must refuse.
CASES: dict[str, dict[str, Callable[[Pixels], Pixels]]] = {
    "polarity": {"inverted": inverted},
    "orientation": {"rotated 90": rotated(1), "rotated 180": rotated(2), "rotated 270": rotated(3)},
    "contrast": {"blank": blank},
    "exposure": {"overexposed": overexposed, "underexposed": underexposed},
    "sharpness": {"blurred": blurred},
    "framing": {"screenshot": screenshot, "letterboxed": letterboxed},
}
