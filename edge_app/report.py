"""Export a scored image as a PNG report (image + overlay + findings table) and as JSON.

The PNG is drawn with Pillow from the :class:`~cxr_core.predictor.Prediction` itself, not grabbed
from the screen, so it is identical on a phone, a kiosk and a headless test, and independent of
zoom or layout. The JSON is ``Prediction.to_dict()`` plus what the user was looking at (selected
finding, overlay opacity) and the app version. Both files are written atomically into the
reports folder (``<data dir>/reports``); the name is the image's stem and a UTC time stamp.

A photo of a film (``Predictor.predict_photo``) is reported as such: the header says the input was a
photo, with its quality figures; the PNG shows the photo with the film's outline (the corners it
was scored with, top side highlighted) beside the rectified film and the heat map; the JSON has the
prediction's ``input`` record (kind "photo", corners, quality) and ``report.photo`` (the detected
and the confirmed corners, whether the clinician moved or placed them).
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from cxr_core import __version__
from cxr_core.errors import CxrEdgeError
from cxr_core.heatmap_figure import MARK_COLOUR, font
from cxr_core.predictor import OVERRIDE_WARNING, SCORE_DEFINITION
from edge_app.display import fit_for_display, grey_to_rgb8
from edge_app.gate_text import OVERRIDE_EXPLANATION, OVERRIDE_NOTE, OVERRIDE_TITLE, signal_line
from edge_app.storage import write_atomic

if TYPE_CHECKING:
    from cxr_core.predictor import Prediction

DISCLAIMER = "Decision support only - not a diagnosis. Review the image yourself."
REPORT_IMAGE_SIDE = 720
_ROW = 34
_PAD = 24
_TABLE_WIDTH = 690
_BG = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (110, 110, 110)
_BAR = (70, 110, 180)
_BAR_POSITIVE = (200, 70, 50)
_OVERRIDE = (160, 78, 20)
_QUAD = (40, 190, 240)
_QUAD_TOP = (250, 200, 40)
PHOTO_CAPTION = "The photo, film outlined (top side yellow)"
CROP_CAPTION = "The film, straightened: what was scored"


@dataclass(frozen=True)
class ExportedReport:
    png: Path
    json: Path


def report_stem(source: str, when: datetime) -> str:
    """``<image stem>-<UTC yyyymmdd-hhmmss>``: unusual characters become ``_``, no leading dot (hidden)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).stem)[:60].lstrip(".") or "image"
    return f"{stem}-{when.strftime('%Y%m%d-%H%M%S')}"


def photo_input(prediction: Prediction) -> dict[str, Any] | None:
    """The prediction's record of a photo input (``to_dict()["input"]``, kind "photo"), else None."""
    record = prediction.to_dict().get("input")
    if isinstance(record, dict) and record.get("kind") == "photo":
        return record
    return None


def photo_summary(prediction: Prediction) -> str:
    """One line for a photo's report header: it was a photo, and its quality figures."""
    from edge_app.photo import quality_line

    record = photo_input(prediction) or {}
    quality = record.get("quality") or {}
    line = "Input: a phone photo of a film, straightened to the corners shown"
    figures = quality_line(quality) if isinstance(quality, dict) else ""
    return f"{line}; photo quality: {figures}" if figures else line


def report_payload(
    prediction: Prediction,
    label: str,
    opacity: float,
    bundle_title: str,
    photo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document: the prediction's own dict plus what the user was looking at.

    ``photo``: how the corners of a photographed film were confirmed (``edge_app.photo_flow``);
    it becomes ``report.photo``.
    """
    payload = dict(prediction.to_dict())
    payload["report"] = {
        "selected_finding": label,
        "overlay_opacity": round(float(opacity), 3),
        "bundle": bundle_title,
        "app": f"cxr-edge {__version__}",
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "score_definition": SCORE_DEFINITION,
        "notices": list(prediction.notices),
        "model_information": list(prediction.model_information),
        # The user's explicit choice to score an image the learned input gate refused (None: it
        # was not refused); the signals' scores are in "gate_signals" above.
        "score_anyway": None
        if not prediction.gate_override
        else {
            "user_chose_to_score_anyway": True,
            "overridden_reasons": list(prediction.gate_override),
            "note": OVERRIDE_NOTE,
        },
        "input_gate_signals": [signal_line(d) for d in prediction.gate_signals],
        # A photographed film: the detected and the confirmed corners (None for an image file).
        "photo": photo,
    }
    return payload


def photo_panel(
    rgb: np.ndarray, corners: Any, photo_width: float | None = None, side: int = REPORT_IMAGE_SIDE
) -> Image.Image:
    """The photo fitted to ``side`` with the film's quad drawn (top side in its own colour).

    ``corners`` are in the original photo's pixels; ``photo_width`` is that photo's width when
    ``rgb`` is a downsized copy of it (the confirm screen's).
    """
    from edge_app.photo import as_corners

    shown = Image.fromarray(fit_for_display(np.asarray(rgb, dtype=np.uint8), side))
    scale = shown.width / float(photo_width or rgb.shape[1])
    points = [(float(x) * scale, float(y) * scale) for x, y in as_corners(corners)]
    draw = ImageDraw.Draw(shown)
    width = max(2, round(shown.width / 240))
    draw.line([*points, points[0]], fill=_QUAD, width=width)
    draw.line(points[:2], fill=_QUAD_TOP, width=width * 2)
    for x, y in points:
        draw.ellipse((x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), outline=_QUAD, width=width)
    return shown


def _photo_of(
    prediction: Prediction, photo_rgb: np.ndarray | None, photo_width: float | None
) -> Image.Image | None:
    """The report's photo panel of a photo input (the photo is read again when not given)."""
    record = photo_input(prediction)
    if record is None or record.get("corners") is None:
        return None
    if photo_rgb is not None:
        photo_width = photo_width or (record.get("photo_size") or [None])[0]
    else:
        photo_width = None
        from cxr_core.capture import load_photo

        try:
            photo_rgb = load_photo(prediction.source)
        except (OSError, CxrEdgeError):  # the photo is gone: the crop and the corners still say it all
            return None
    return photo_panel(photo_rgb, record["corners"], photo_width)


def render_report(
    prediction: Prediction,
    label: str,
    opacity: float,
    bundle_title: str,
    photo_rgb: np.ndarray | None = None,
    photo_width: float | None = None,
) -> Image.Image:
    """The report as an RGB Pillow image: header, image with the overlay of ``label``, findings table.

    For a photo input the photo with the film's outline comes first (``photo_rgb``, a copy of the
    photo ``photo_width`` pixels wide -- default: the photo's own width, so a downsized copy is
    scaled -- else the photo read again from ``prediction.source``), then the rectified film and
    its heat map.
    """
    overlay = np.asarray(prediction.overlay(label, alpha=float(opacity)), dtype=np.uint8)
    picture = Image.fromarray(fit_for_display(overlay, REPORT_IMAGE_SIDE))
    plain = Image.fromarray(fit_for_display(grey_to_rgb8(prediction.image.pixels), REPORT_IMAGE_SIDE))
    photo = _photo_of(prediction, photo_rgb, photo_width)
    photo_w = photo.width + _PAD if photo is not None else 0
    ranked = prediction.ranked()
    notice_h = 44 if prediction.notices else 0
    override_lines = _override_lines(prediction)
    override_h = 44 + 20 * len(override_lines) if override_lines else 0
    band_h = notice_h + override_h
    photo_line = photo_summary(prediction) if photo_input(prediction) is not None else ""
    header_h = 110 + band_h + (26 if photo_line else 0)
    table_h = _ROW * (len(ranked) + 1) + 60
    width = _PAD * 3 + photo_w + picture.width * 2 + _PAD + _TABLE_WIDTH
    tallest = max(picture.height, photo.height if photo is not None else 0)
    height = header_h + max(tallest + 40, table_h) + 74
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    if notice_h:  # the synthetic-data mark: part of every report of such a bundle, not a setting
        draw.rectangle((0, 0, width, notice_h), fill=MARK_COLOUR)
        draw.text(
            (_PAD, 10), "  |  ".join(n.upper() for n in prediction.notices), fill="white", font=font(22)
        )
    if override_h:  # scored at the user's request although the input gate refused it
        draw.rectangle((0, notice_h, width, band_h), fill=_OVERRIDE)
        draw.text((_PAD, notice_h + 8), OVERRIDE_TITLE, fill="white", font=font(22))
        for index, line in enumerate(override_lines):
            draw.text((_PAD, notice_h + 38 + 20 * index), line, fill="white", font=font(15))
    draw.text(
        (_PAD, band_h + 16), f"cxr-edge report: {Path(prediction.source).name}", fill=_INK, font=font(26)
    )
    draw.text(
        (_PAD, band_h + 52),
        f"Model: {bundle_title} | {prediction.model_name} on {prediction.runtime}",
        fill=_MUTED,
        font=font(18),
    )
    warnings = "; ".join(shown_warnings(prediction))
    if warnings:
        draw.text((_PAD, band_h + 78), f"Warning: {warnings}", fill=_BAR_POSITIVE, font=font(18))
    if photo_line:
        draw.text((_PAD, band_h + 104), textwrap.shorten(photo_line, 190), fill=_INK, font=font(17))
    top = header_h
    if photo is not None:
        canvas.paste(photo, (_PAD, top))
        draw.text((_PAD, top + photo.height + 8), PHOTO_CAPTION, fill=_MUTED, font=font(16))
    left = _PAD + photo_w
    canvas.paste(plain, (left, top))
    if photo_line:
        draw.text((left, top + plain.height + 8), CROP_CAPTION, fill=_MUTED, font=font(16))
    canvas.paste(picture, (left + _PAD + plain.width, top))
    selected = prediction.finding(label)
    caption = f"Heat map: {label}, score {selected.score:.0f} (colour strength = score / 100)"
    draw.text((left + _PAD + plain.width, top + picture.height + 8), caption, fill=_MUTED, font=font(16))
    _draw_table(draw, ranked, label, (left + _PAD * 3 + plain.width + picture.width, top))
    info = [line for line in prediction.model_information if line not in prediction.notices]
    if info:
        draw.text((_PAD, height - 60), " | ".join(info), fill=_MUTED, font=font(14))
    draw.text((_PAD, height - 36), DISCLAIMER, fill=_BAR_POSITIVE, font=font(18))
    return canvas


def shown_warnings(prediction: Prediction) -> list[str]:
    """The warnings to show beside the result; an overridden refusal has its own mark instead."""
    if not prediction.gate_override:
        return list(prediction.warnings)
    return [w for w in prediction.warnings if not w.startswith(OVERRIDE_WARNING)]


def _override_lines(prediction: Prediction, width: int = 170, most: int = 3) -> list[str]:
    """The overridden refusal's explanation and reasons, wrapped for the report's band."""
    if not prediction.gate_override:
        return []
    lines = textwrap.wrap(OVERRIDE_EXPLANATION + "; ".join(prediction.gate_override), width)
    if len(lines) > most:
        lines = [*lines[: most - 1], textwrap.shorten(" ".join(lines[most - 1 :]), width, placeholder=" ...")]
    return lines


def _draw_table(draw: ImageDraw.ImageDraw, ranked: list, selected: str, origin: tuple[int, int]) -> None:
    x, y = origin
    bar_x, bar_w = x + 230, 200
    head = font(16)
    draw.text((x, y), "Finding", fill=_MUTED, font=head)
    draw.text((bar_x, y), "Score 0-100 (not a probability)", fill=_MUTED, font=head)
    draw.text((bar_x + bar_w + 12, y), "score  output / threshold", fill=_MUTED, font=head)
    body = font(18)
    for index, finding in enumerate(ranked, start=1):
        row_y = y + index * _ROW
        weight = _INK if finding.label != selected else _BAR
        flags = (" *" if finding.above_operating_point else "") + (" !" if finding.threshold_note else "")
        name = finding.label.replace("_", " ") + flags
        draw.text((x, row_y), name, fill=weight, font=body)
        draw.rectangle((bar_x, row_y + 4, bar_x + bar_w, row_y + 22), outline=_MUTED)
        filled = bar_x + round(bar_w * min(1.0, max(0.0, finding.score / 100.0)))
        colour = _BAR_POSITIVE if finding.above_operating_point else _BAR
        draw.rectangle((bar_x, row_y + 4, filled, row_y + 22), fill=colour)
        marker = bar_x + bar_w // 2  # the score puts every operating point at 50
        draw.line((marker, row_y, marker, row_y + 26), fill=_INK, width=2)
        detail = f"{finding.score:5.1f}  {finding.model_output:.3f}/{finding.operating_point:.3f}"
        draw.text((bar_x + bar_w + 12, row_y), detail, fill=_INK, font=body)
    note_y = y + (len(ranked) + 1) * _ROW + 6
    draw.text(
        (x, note_y),
        "* above the operating point (marker = 50). ! threshold unreliable (fallback or < 10 positives).",
        fill=_MUTED,
        font=font(14),
    )


def export_report(
    prediction: Prediction,
    folder: str | Path,
    label: str,
    opacity: float,
    bundle_title: str,
    when: datetime | None = None,
    stem: str | None = None,
    photo: dict[str, Any] | None = None,
    photo_rgb: np.ndarray | None = None,
) -> ExportedReport:
    """Write ``<stem>.png`` and ``<stem>.json`` into ``folder`` atomically; return their paths.

    ``stem`` defaults to :func:`report_stem` of the image and ``when``; the kiosk passes the
    study's own stem so a study processed twice (after a kill) overwrites its own report.
    ``photo`` / ``photo_rgb``: a photo input's corner confirmation and a (possibly downsized) copy
    of its pixels (see :func:`report_payload`, :func:`render_report`).
    """
    folder = Path(folder)
    stem = stem or report_stem(prediction.source, when or datetime.now(UTC))
    buffer = io.BytesIO()
    render_report(prediction, label, opacity, bundle_title, photo_rgb).save(buffer, format="PNG")
    payload = report_payload(prediction, label, opacity, bundle_title, photo)
    png = write_atomic(folder / f"{stem}.png", buffer.getvalue())
    js = write_atomic(folder / f"{stem}.json", json.dumps(payload, indent=2).encode("utf-8"))
    return ExportedReport(png, js)
