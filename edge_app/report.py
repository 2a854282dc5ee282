"""Export a scored image as a PNG report (image + overlay + findings table) and as JSON.

The PNG is drawn with Pillow from the :class:`~cxr_core.predictor.Prediction` itself, not grabbed
from the screen, so it is identical on a phone, a kiosk and a headless test, and independent of
zoom or layout. The JSON is ``Prediction.to_dict()`` plus what the user was looking at (selected
finding, overlay opacity) and the app version. Both files are written atomically into the
reports folder (``<data dir>/reports``); the name is the image's stem and a UTC time stamp.
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


@dataclass(frozen=True)
class ExportedReport:
    png: Path
    json: Path


def report_stem(source: str, when: datetime) -> str:
    """``<image stem>-<UTC yyyymmdd-hhmmss>``: unusual characters become ``_``, no leading dot (hidden)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).stem)[:60].lstrip(".") or "image"
    return f"{stem}-{when.strftime('%Y%m%d-%H%M%S')}"


def report_payload(prediction: Prediction, label: str, opacity: float, bundle_title: str) -> dict[str, Any]:
    """The JSON document: the prediction's own dict plus what the user was looking at."""
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
    }
    return payload


def render_report(prediction: Prediction, label: str, opacity: float, bundle_title: str) -> Image.Image:
    """The report as an RGB Pillow image: header, image with the overlay of ``label``, findings table."""
    overlay = np.asarray(prediction.overlay(label, alpha=float(opacity)), dtype=np.uint8)
    picture = Image.fromarray(fit_for_display(overlay, REPORT_IMAGE_SIDE))
    plain = Image.fromarray(fit_for_display(grey_to_rgb8(prediction.image.pixels), REPORT_IMAGE_SIDE))
    ranked = prediction.ranked()
    notice_h = 44 if prediction.notices else 0
    override_lines = _override_lines(prediction)
    override_h = 44 + 20 * len(override_lines) if override_lines else 0
    band_h = notice_h + override_h
    header_h = 110 + band_h
    table_h = _ROW * (len(ranked) + 1) + 60
    width = _PAD * 3 + picture.width * 2 + _PAD + _TABLE_WIDTH
    height = header_h + max(picture.height + 40, table_h) + 74
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
    top = header_h
    canvas.paste(plain, (_PAD, top))
    canvas.paste(picture, (_PAD * 2 + plain.width, top))
    selected = prediction.finding(label)
    caption = f"Heat map: {label}, score {selected.score:.0f} (colour strength = score / 100)"
    draw.text((_PAD * 2 + plain.width, top + picture.height + 8), caption, fill=_MUTED, font=font(16))
    _draw_table(draw, ranked, label, (_PAD * 4 + plain.width + picture.width, top))
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
) -> ExportedReport:
    """Write ``<stem>.png`` and ``<stem>.json`` into ``folder`` atomically; return their paths.

    ``stem`` defaults to :func:`report_stem` of the image and ``when``; the kiosk passes the
    study's own stem so a study processed twice (after a kill) overwrites its own report.
    """
    folder = Path(folder)
    stem = stem or report_stem(prediction.source, when or datetime.now(UTC))
    buffer = io.BytesIO()
    render_report(prediction, label, opacity, bundle_title).save(buffer, format="PNG")
    payload = report_payload(prediction, label, opacity, bundle_title)
    png = write_atomic(folder / f"{stem}.png", buffer.getvalue())
    js = write_atomic(folder / f"{stem}.json", json.dumps(payload, indent=2).encode("utf-8"))
    return ExportedReport(png, js)
