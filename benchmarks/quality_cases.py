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
    """The phantom centred in a 16:9 frame with flat bars of grey ``level`` (a viewer's background)."""
    height, width = x.shape
    frame = np.full((height, height * 16 // 9), level, np.float32)
    left = (frame.shape[1] - width) // 2
    frame[:, left : left + width] = x
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


def tilted(x: Pixels, degrees: float = 8.0) -> Pixels:
    """A few degrees of tilt, as films come (the corners filled black)."""
    return np.asarray(Image.fromarray(x).rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0.0))


def collimated(x: Pixels, share: float = 0.05, level: float = 1.0) -> Pixels:
    """A flat strip ``share`` of the side wide on every side (collimation, padding)."""
    return np.pad(x, max(1, int(share * x.shape[0])), constant_values=level).astype(np.float32)


def gamma(x: Pixels, power: float) -> Pixels:
    """Another exposure / display window (darker above 1, brighter below)."""
    return (np.clip(x, 0.0, 1.0) ** power).astype(np.float32)


def marked(x: Pixels) -> Pixels:
    """A burned-in side marker and a text line in the corners, as real films carry."""
    image = _u8(x)
    draw = ImageDraw.Draw(image)
    side = x.shape[0]
    draw.rectangle((side // 20, side // 20, side // 6, side // 6), fill=255)
    draw.text((side // 2, side - side // 8), "PORTABLE AP", fill=255)
    return _f32(image)


def jpeg(x: Pixels, quality: int = 60) -> Pixels:
    import io

    buffer = io.BytesIO()
    _u8(x).save(buffer, format="JPEG", quality=quality)
    return _f32(Image.open(io.BytesIO(buffer.getvalue())))


#: What real films do that must NOT be refused.
MUST_PASS: dict[str, Callable[[Pixels], Pixels]] = {
    "tilted 8 degrees": tilted,
    "tilted -8 degrees": lambda x: tilted(x, -8.0),
    "white strips 5%": collimated,
    "grey strips 7%": lambda x: collimated(x, 0.07, 0.8),
    "darker (gamma 1.6)": lambda x: gamma(x, 1.6),
    "brighter (gamma 0.6)": lambda x: gamma(x, 0.6),
    "markers and text": marked,
    "JPEG quality 60": jpeg,
    "slight blur (0.3%)": lambda x: _f32(_u8(x).filter(ImageFilter.GaussianBlur(0.003 * x.shape[0]))),
}
#: Measured, neither required to pass nor to be refused (docs/input-gate.md, limits).
LIMITS: dict[str, Callable[[Pixels], Pixels]] = {
    "black letterbox": lambda x: letterboxed(x, 0.0),
    "grey strips 10%": lambda x: collimated(x, 0.10, 0.8),
    "blur (1%)": lambda x: _f32(_u8(x).filter(ImageFilter.GaussianBlur(0.01 * x.shape[0]))),
    "portrait film in a 16:9 frame": lambda x: letterboxed(x[:, x.shape[1] // 8 : -(x.shape[1] // 8)], 0.3),
    "4:3 film in a 16:9 frame": lambda x: letterboxed(x[x.shape[0] // 8 : -(x.shape[0] // 8)], 0.3),
    "tilted 30 degrees": lambda x: tilted(x, 30.0),
}
