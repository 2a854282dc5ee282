"""Plots drawn with Pillow: latency distribution per variant, AUC per class per format, end-to-end split.

Why Pillow and not matplotlib: edge-bench runs on the target device with only the runtime extras
(numpy, Pillow, a runtime); matplotlib is not among them and is a large install on a Pi. Pillow
is always there, so the plots come out identically on a laptop, a Pi or in CI, from one code
path that the tests exercise. The charts are simple enough (boxes, dots, bars) not to need more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxr_core.atomic import atomic_write

PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (120, 120, 120), (225, 225, 225)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


WARNING_RED = (180, 0, 0)


def with_notices(image: Image.Image, notices: Sequence[str]) -> Image.Image:
    """``image`` under a red banner per notice (the synthetic-data mark), widened to fit the text."""
    if not notices:
        return image
    font, line_h = _font(16), 28
    texts = [f"*** {notice.upper()} ***" for notice in notices]
    probe = ImageDraw.Draw(image)
    wide = max(int(probe.textlength(text, font=font)) for text in texts) + 20
    framed = Image.new("RGB", (max(image.width, wide), image.height + line_h * len(texts)), WHITE)
    draw = ImageDraw.Draw(framed)
    for i, text in enumerate(texts):
        draw.rectangle([0, i * line_h, framed.width, (i + 1) * line_h - 1], fill=WARNING_RED)
        draw.text((10, i * line_h + line_h / 2), text, fill=WHITE, font=font, anchor="lm")
    framed.paste(image, (0, line_h * len(texts)))
    return framed


def _save(image: Image.Image, path: Path, notices: Sequence[str] = ()) -> Path:
    """Save as PNG atomically (temporary file in the same folder, then os.replace), under ``notices``."""
    image = with_notices(image, notices)
    atomic_write(path, lambda handle: image.save(handle, format="PNG"))
    return path


def _nice_ticks(high: float, count: int = 6) -> list[float]:
    """Round tick values from 0 to at least ``high``."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** np.floor(np.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    return [float(step * i) for i in range(int(np.ceil(high / step)) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks per decade covering [low, high]."""
    ticks = []
    for exponent in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1):
        ticks += [m * 10.0**exponent for m in (1, 2, 5)]
    first = max(i for i, t in enumerate(ticks) if t <= low)
    last = min(i for i, t in enumerate(ticks) if t >= high)
    return ticks[first : last + 1]


def latency_plot(rows: Sequence[dict[str, Any]], path: Path, notices: Sequence[str] = ()) -> Path | None:
    """Box (quartiles, median) plus every sample as a dot, one lane per measured (format, threads)."""
    lanes = [r for r in rows if r.get("status") == "ok" and (r.get("latency_ms") or {}).get("samples")]
    if not lanes:
        return None
    font, small = _font(14), _font(12)
    left, right, top, lane_h = 230, 40, 50, 44
    width, height = 1000, top + lane_h * len(lanes) + 60
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    high = max(max(r["latency_ms"]["samples"]) for r in lanes) * 1.05
    low = min(min(r["latency_ms"]["samples"]) for r in lanes) * 0.95
    log_scale = low > 0 and high / low > 20  # e.g. PyTorch beside INT8: keep both readable
    span = width - left - right
    if log_scale:
        ticks = _log_ticks(low, high)
        lo, hi = np.log10(ticks[0]), np.log10(ticks[-1])

        def x(value: float) -> float:
            return left + (np.log10(max(value, ticks[0])) - lo) / (hi - lo) * span
    else:
        ticks = _nice_ticks(high)

        def x(value: float) -> float:
            return left + value / ticks[-1] * span

    for tick in ticks:
        draw.line([(x(tick), top - 5), (x(tick), height - 50)], fill=LIGHT)
        draw.text((x(tick), height - 45), f"{tick:g}", fill=BLACK, font=small, anchor="mt")
    axis = "latency per call at batch 1 (ms" + (", log scale)" if log_scale else ")")
    draw.text((left + (width - left - right) / 2, height - 22), axis, fill=BLACK, font=font, anchor="mt")
    draw.text(
        (10, 15),
        "Latency distribution (box: quartiles, bar: median, black: Tukey outliers)",
        fill=BLACK,
        font=font,
    )
    rng = np.random.default_rng(0)
    for i, row in enumerate(lanes):
        lat, colour = row["latency_ms"], PALETTE[i % len(PALETTE)]
        mid = top + lane_h * i + lane_h / 2
        draw.text((10, mid), f"{row['name']} @{row['threads']}t", fill=BLACK, font=font, anchor="lm")
        draw.rectangle([x(lat["q1"]), mid - 12, x(lat["q3"]), mid + 12], outline=colour, width=2)
        draw.line([(x(lat["p50"]), mid - 14), (x(lat["p50"]), mid + 14)], fill=colour, width=3)
        fences = lat["outliers"]
        for value, jitter in zip(lat["samples"], rng.uniform(-9, 9, len(lat["samples"])), strict=True):
            outlier = value > fences["high_fence"] or value < fences["low_fence"]
            cx, cy = x(value), mid + jitter
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=BLACK if outlier else colour)
    return _save(image, path, notices)


def auc_plot(
    labels: Sequence[str], formats: Sequence[dict[str, Any]], path: Path, notices: Sequence[str] = ()
) -> Path | None:
    """Grouped bars: AUC of each finding, one bar per format (a dashed line at 0.5, chance)."""
    series = [(f["name"], f["eval"]["auc"]) for f in formats if f.get("eval")]
    if not series:
        return None
    font, small = _font(14), _font(11)
    left, top, bottom = 60, 60, 150
    group = max(24, 8 * len(series) + 10)
    width, height = max(left + 30 + group * len(labels), left + 20 + 150 * len(series)), 520
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    plot_h = height - top - bottom

    def y(value: float) -> float:
        return top + (1.0 - value) * plot_h

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line([(left, y(tick)), (width - 20, y(tick))], fill=LIGHT if tick != 0.5 else GREY)
        draw.text((left - 8, y(tick)), f"{tick:.2f}", fill=BLACK, font=small, anchor="rm")
    draw.text((10, 12), "AUC per finding and format (evaluation set)", fill=BLACK, font=font)
    bar = (group - 10) / len(series)
    for k, label in enumerate(labels):
        x0 = left + 10 + k * group
        for j, (_, aucs) in enumerate(series):
            value = aucs.get(label)
            if value is not None:
                draw.rectangle([x0 + j * bar, y(value), x0 + (j + 1) * bar - 1, y(0.0)], fill=PALETTE[j % 10])
        text = Image.new("RGBA", (140, 16), (0, 0, 0, 0))
        ImageDraw.Draw(text).text((138, 8), label[:20], fill=BLACK, font=small, anchor="rm")
        rotated = text.rotate(60, expand=True)
        image.paste(rotated, (int(x0 + group / 2 - rotated.width + 6), int(y(0.0) + 4)), rotated)
    for j, (name, _) in enumerate(series):
        lx = left + 10 + j * 150
        draw.rectangle([lx, 36, lx + 12, 48], fill=PALETTE[j % 10])
        draw.text((lx + 18, 42), name, fill=BLACK, font=small, anchor="lm")
    return _save(image, path, notices)


def e2e_plot(
    rows: Sequence[dict[str, Any]], stages: Sequence[str], path: Path, notices: Sequence[str] = ()
) -> Path | None:
    """Stacked bars: mean ms per stage of one prediction, per variant."""
    lanes = [r for r in rows if (r.get("e2e") or {}).get("status") == "ok"]
    if not lanes:
        return None
    font, small = _font(14), _font(12)
    left, right, top, lane_h = 230, 40, 80, 36
    width, height = 1000, top + lane_h * len(lanes) + 60
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    ticks = _nice_ticks(max(r["e2e"]["total_ms"] for r in lanes) * 1.05)
    scale = (width - left - right) / ticks[-1]
    for tick in ticks:
        draw.line([(left + tick * scale, top - 5), (left + tick * scale, height - 50)], fill=LIGHT)
        draw.text((left + tick * scale, height - 45), f"{tick:g}", fill=BLACK, font=small, anchor="mt")
    draw.text((10, 12), "End-to-end time per prediction (ms), by stage", fill=BLACK, font=font)
    for j, stage in enumerate(stages):
        draw.rectangle([10 + j * 130, 40, 22 + j * 130, 52], fill=PALETTE[j % 10])
        draw.text((28 + j * 130, 46), stage, fill=BLACK, font=small, anchor="lm")
    for i, row in enumerate(lanes):
        mid, start = top + lane_h * i + lane_h / 2, float(left)
        draw.text((10, mid), f"{row['name']} @{row['threads']}t", fill=BLACK, font=font, anchor="lm")
        for j, stage in enumerate(stages):
            length = row["e2e"]["stages_ms"][stage]["mean"] * scale
            draw.rectangle([start, mid - 11, start + length, mid + 11], fill=PALETTE[j % 10])
            start += length
    return _save(image, path, notices)


def write_plots(results: dict[str, Any], out: Path, stages: Sequence[str]) -> list[str]:
    """Every plot that has data, written into ``out`` under the results' notices; returns their names."""
    notices = results.get("notices") or []
    made = [
        latency_plot(results["rows"], out / "latency.png", notices),
        auc_plot(results["bundle"]["labels"], results["formats"], out / "auc.png", notices),
        e2e_plot(results["rows"], stages, out / "e2e.png", notices),
    ]
    return [p.name for p in made if p is not None]
