"""A heat-map picture a person can read on its own: the overlay plus what it shows and what it is not.

:func:`heatmap_figure` draws, at display size, the score-weighted overlay of one finding
(:meth:`cxr_core.predictor.Prediction.overlay`) with a caption panel below it: the finding's name,
its operating-point score and the call, a colour bar saying what the colours mean, a threshold
warning when the finding's operating point is unreliable, the decision-support disclaimer, and --
for a bundle trained on synthetic data -- a red band with the synthetic-data mark across the top.
Every PNG that ``cxr-predict`` and the app write is one of these. Pillow only.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from cxr_core.cam import colour_map_table

#: The longest side of the radiograph in the figure: display size, not detector size.
DISPLAY_SIDE = 1024
MARK_COLOUR = (178, 24, 24)
PANEL_COLOUR = (20, 20, 20)
TEXT_COLOUR = (235, 235, 235)
WARN_COLOUR = (255, 190, 60)


@dataclass(frozen=True)
class FigureText:
    """What the caption says: one finding of one image, and the bundle's notices."""

    finding: str
    score: float
    above_operating_point: bool
    threshold_note: str | None
    disclaimer: str
    notices: tuple[str, ...] = ()
    source: str | None = None


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` px (every figure and report of cxr-edge uses it)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def _fit(rgb: NDArray[np.uint8], side: int) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    scale = side / max(image.size)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _colour_bar(width: int, height: int) -> Image.Image:
    """The overlay's colour scale, left (no colour) to right (full strength)."""
    table = np.asarray(colour_map_table(), dtype=np.uint8).reshape(-1, 3)
    row = table[np.linspace(0, len(table) - 1, width).astype(int)]
    return Image.fromarray(np.repeat(row[None], height, axis=0), "RGB")


def heatmap_figure(
    overlay_rgb: NDArray[np.uint8], text: FigureText, side: int = DISPLAY_SIDE
) -> NDArray[np.uint8]:
    """The overlay at display size with its caption panel (and the synthetic band): RGB uint8."""
    picture = _fit(overlay_rgb, side)
    width = max(picture.width, 480)
    unit = max(14, width // 48)
    big, small = font(unit), font(max(11, unit * 3 // 4))
    chars = max(30, int(width / (unit * 0.55)))
    call = "above its operating point" if text.above_operating_point else "below its operating point"
    lines: list[tuple[str, object, tuple[int, int, int]]] = [
        (f"{text.finding}: score {text.score:.0f} / 100 ({call})", big, TEXT_COLOUR),
    ]
    if text.threshold_note:
        lines.append((text.threshold_note, small, WARN_COLOUR))
    bar_label = (
        "Colour: where the model looked for this finding, strength = score / 100 "
        "(50 = operating point). Not a probability, not a lesion outline."
    )
    for chunk in textwrap.wrap(bar_label, chars + chars // 3):
        lines.append((chunk, small, TEXT_COLOUR))
    for chunk in textwrap.wrap(text.disclaimer, chars + chars // 3):
        lines.append((chunk, small, TEXT_COLOUR))
    if text.source:
        lines.append((text.source, small, (160, 160, 160)))
    line_height = unit + unit // 2
    bar_height = unit
    panel = line_height * len(lines) + bar_height + 3 * unit
    band = (unit * 2 + unit // 2) if text.notices else 0
    figure = Image.new("RGB", (width, band + picture.height + panel), PANEL_COLOUR)
    draw = ImageDraw.Draw(figure)
    if band:
        draw.rectangle((0, 0, width, band), fill=MARK_COLOUR)
        draw.text((unit // 2, unit // 2), "  |  ".join(text.notices).upper(), fill=(255, 255, 255), font=big)
    figure.paste(picture, ((width - picture.width) // 2, band))
    y = band + picture.height + unit
    x = unit // 2
    draw.text((x, y), lines[0][0], fill=lines[0][2], font=lines[0][1])
    y += line_height
    bar_width = width - 2 * x - 4 * unit
    figure.paste(_colour_bar(bar_width, bar_height), (x + 2 * unit, y))
    draw.text((x, y), "0", fill=TEXT_COLOUR, font=small)
    draw.text((x + 2 * unit + bar_width + unit // 2, y), "1", fill=TEXT_COLOUR, font=small)
    y += bar_height + unit // 2
    for line, line_font, colour in lines[1:]:
        draw.text((x, y), line, fill=colour, font=line_font)
        y += line_height
    return np.asarray(figure, dtype=np.uint8)
