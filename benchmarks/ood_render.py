"""Pictures that are not chest radiographs, drawn offline for the input-gate study (numpy + Pillow).

Document pages, app and web screenshots with a small chest film inside, CT slices in Hounsfield
units (thorax, abdomen, head) with their display windows, MR slices (T1/T2-like head and abdomen),
noise and flat fields. Every function is deterministic for its ``rng``; nothing is downloaded.
:mod:`benchmarks.ood_corpus` writes them as files by category.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]

WORDS = (
    "patient report findings clinic history radiograph chest normal review follow the of and with "
    "results laboratory sample date signed physician department hospital invoice total page note "
    "blood pressure medication dose daily table summary reference range value unit"
).split()


def _text_lines(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], size: int, ink: int
) -> None:
    font = ImageFont.load_default(size=size)
    x0, y0, x1, y1 = box
    y = y0
    while y + size < y1:
        words = int(max(2, (x1 - x0) / (size * 3.2)))
        draw.text((x0, y), " ".join(rng.choice(WORDS, words)), fill=ink, font=font)
        y += int(size * 1.45)


def document(rng: np.random.Generator, style: int) -> U8:
    """A page of text: plain, two columns, a form with a table, a slide, a lab report, handwriting."""
    width, height = 640, 828
    style %= 6
    if style == 3:  # a slide: light text on a dark background
        page = Image.new("L", (height, width), 30)
        draw = ImageDraw.Draw(page)
        draw.text((40, 40), "Quarterly review", fill=235, font=ImageFont.load_default(size=48))
        _text_lines(draw, rng, (60, 150, height - 40, width - 40), 26, 220)
        return np.asarray(page)
    page = Image.new("L", (width, height), int(rng.integers(238, 252)))
    draw = ImageDraw.Draw(page)
    if style == 0:
        _text_lines(draw, rng, (40, 40, width - 40, height - 40), 14, 20)
    elif style == 1:
        draw.text((40, 30), "Clinical newsletter", fill=10, font=ImageFont.load_default(size=30))
        _text_lines(draw, rng, (40, 90, width // 2 - 15, height - 40), 12, 25)
        _text_lines(draw, rng, (width // 2 + 15, 90, width - 40, height - 40), 12, 25)
    elif style in (2, 4):
        draw.text(
            (40, 30),
            "Laboratory results" if style == 4 else "Admission form",
            fill=10,
            font=ImageFont.load_default(size=26),
        )
        rows, cols = (18, 4) if style == 4 else (12, 3)
        top, cell_h = 100, 30
        col_w = (width - 80) // cols
        for r in range(rows + 1):
            draw.line((40, top + r * cell_h, width - 40, top + r * cell_h), fill=60, width=1)
        for c in range(cols + 1):
            draw.line((40 + c * col_w, top, 40 + c * col_w, top + rows * cell_h), fill=60, width=1)
        font = ImageFont.load_default(size=13)
        for r in range(rows):
            for c in range(cols):
                text = " ".join(rng.choice(WORDS, 2)) if c == 0 else f"{rng.uniform(0, 200):.1f}"
                draw.text((46 + c * col_w, top + 8 + r * cell_h), text, fill=20, font=font)
        _text_lines(draw, rng, (40, top + rows * cell_h + 30, width - 40, height - 40), 13, 30)
    else:  # handwriting: pen strokes on ruled paper
        for y in range(60, height, 32):
            draw.line((30, y, width - 30, y), fill=190, width=1)
        for y in range(56, height - 40, 32):
            x = 40.0
            while x < width - 80:
                points = [(x, y), (x + rng.uniform(4, 12), y - rng.uniform(5, 18))]
                for _ in range(int(rng.integers(3, 8))):
                    last = points[-1]
                    points.append((last[0] + rng.uniform(2, 8), y - rng.uniform(0, 20)))
                draw.line(points, fill=35, width=2, joint="curve")
                x = points[-1][0] + rng.uniform(8, 20)
    return np.asarray(page)


def _film(chest: U8, side: int) -> Image.Image:
    return Image.fromarray(chest).resize((side, side), Image.Resampling.BILINEAR)


def screenshot(chest: U8, rng: np.random.Generator, style: int) -> NDArray[np.uint8]:
    """A screen with a chest film inside: a viewer, a web page, a phone chat, a grid, a report, a monitor.

    Grey (H, W) or colour (H, W, 3); the film covers well under half of the frame.
    """
    style %= 6
    font = ImageFont.load_default(size=16)
    if style == 0:  # a PACS-like viewer, dark UI with a thumbnail strip
        screen = Image.new("L", (1280, 800), 40)
        draw = ImageDraw.Draw(screen)
        draw.rectangle((0, 0, 1280, 36), fill=70)
        for i in range(4):
            screen.paste(_film(np.rot90(chest, i % 2 * 0).copy(), 150), (20, 60 + i * 175))
        screen.paste(_film(chest, 460), (480, 170))
        draw.text((500, 140), "PA  2024-01-01  W 4000 L 2000", fill=200, font=font)
        return np.asarray(screen)
    if style == 1:  # a web page, colour header
        screen = Image.new("RGB", (1024, 768), (250, 250, 250))
        draw = ImageDraw.Draw(screen)
        draw.rectangle((0, 0, 1024, 70), fill=(30, 70, 140))
        draw.text(
            (30, 22), "Radiology teaching file", fill=(255, 255, 255), font=ImageFont.load_default(size=24)
        )
        grey = Image.new("L", (520, 600), 250)
        _text_lines(ImageDraw.Draw(grey), rng, (0, 0, 500, 600), 15, 40)
        screen.paste(grey.convert("RGB"), (30, 110))
        screen.paste(_film(chest, 320).convert("RGB"), (620, 150))
        return np.asarray(screen)
    if style == 2:  # a phone chat with the film as a picture message
        screen = Image.new("RGB", (720, 1440), (236, 229, 221))
        draw = ImageDraw.Draw(screen)
        draw.rectangle((0, 0, 720, 120), fill=(7, 94, 84))
        for i in range(5):
            y = 160 + i * 110
            x = 30 if i % 2 else 250
            draw.rounded_rectangle(
                (x, y, x + 440, y + 80), 18, fill=(255, 255, 255) if i % 2 else (220, 248, 198)
            )
        screen.paste(_film(chest, 400).convert("RGB"), (280, 760))
        return np.asarray(screen)
    if style == 3:  # four films in a grid with captions
        screen = Image.new("L", (1024, 1024), 15)
        draw = ImageDraw.Draw(screen)
        for i in range(4):
            x, y = 40 + (i % 2) * 500, 60 + (i // 2) * 490
            film = chest if i == 0 else np.rot90(chest, 0).copy()
            screen.paste(_film(np.roll(film, i * 17, axis=1), 420), (x, y))
            draw.text((x, y - 30), f"image {i + 1}", fill=220, font=font)
        return np.asarray(screen)
    if style == 4:  # a report page with a small film
        page = Image.new("L", (700, 990), 248)
        draw = ImageDraw.Draw(page)
        draw.text((40, 30), "Radiology report", fill=10, font=ImageFont.load_default(size=28))
        page.paste(_film(chest, 240), (420, 100))
        _text_lines(draw, rng, (40, 100, 390, 360), 13, 25)
        _text_lines(draw, rng, (40, 380, 660, 950), 13, 25)
        return np.asarray(page)
    # a photograph of a monitor: bezel, keystone, moire, glare, blur
    room = Image.new("L", (1024, 768), 90)
    monitor = Image.new("L", (640, 480), 20)
    monitor.paste(_film(chest, 420), (110, 30))
    skew = monitor.transform(
        (700, 520),
        Image.Transform.QUAD,
        (-20, -10, -40, 500, 680, 490, 650, 0),
        resample=Image.Resampling.BILINEAR,
    )
    room.paste(skew, (160, 120))
    pixels = np.asarray(room, dtype=np.float32)
    yy, xx = np.mgrid[0:768, 0:1024].astype(np.float32)
    pixels += 12 * np.sin(xx * 0.9 + yy * 0.35)  # moire
    pixels += 60 * np.exp(-(((xx - 700) / 180) ** 2 + ((yy - 250) / 120) ** 2))  # glare
    pixels += rng.normal(0, 6, pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    return np.asarray(photo)


# -- tomography --------------------------------------------------------------------------------
def _grid(side: int) -> tuple[F32, F32]:
    centres = (np.arange(side, dtype=np.float32) + 0.5) / side * 2.0 - 1.0
    return centres[None, :], centres[:, None]


def _ellipse(u: F32, v: F32, cu: float, cv: float, ru: float, rv: float) -> NDArray[np.bool_]:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def ct_slice(rng: np.random.Generator, region: str, side: int = 512) -> F32:
    """An axial CT slice in Hounsfield units: ``region`` thorax, abdomen or head."""
    u, v = _grid(side)
    jitter = rng.uniform
    hu = np.full((side, side), -1000.0, np.float32)
    hu[(v > 0.8) & (v < 0.86) & (np.abs(u) < 0.9)] = 150.0  # the table
    if region == "head":
        rx, ry = jitter(0.62, 0.7), jitter(0.75, 0.82)
        hu[_ellipse(u, v, 0, 0, rx + 0.05, ry + 0.05)] = -80.0  # scalp fat
        hu[_ellipse(u, v, 0, 0, rx, ry)] = 1400.0  # skull
        hu[_ellipse(u, v, 0, 0, rx - 0.06, ry - 0.06)] = 38.0  # grey matter
        hu[_ellipse(u, v, 0, 0, rx - 0.18, ry - 0.18)] = 28.0  # white matter
        for side_sign in (-1, 1):
            hu[_ellipse(u, v, side_sign * 0.1, -0.05, 0.06, 0.25)] = 5.0  # lateral ventricles
    else:
        rx, ry = jitter(0.8, 0.9), jitter(0.55, 0.65)
        hu[_ellipse(u, v, 0, 0, rx, ry)] = -100.0  # subcutaneous fat
        hu[_ellipse(u, v, 0, 0, rx - 0.06, ry - 0.06)] = 45.0  # muscle and organs
        hu[_ellipse(u, v, 0, 0.38, 0.1, 0.1)] = 250.0  # vertebral body
        hu[_ellipse(u, v, 0, 0.38, 0.1, 0.1) & ~_ellipse(u, v, 0, 0.38, 0.08, 0.08)] = 900.0  # cortex
        hu[_ellipse(u, v, 0, 0.53, 0.025, 0.06)] = 700.0  # spinous process
        hu[_ellipse(u, v, 0.04, 0.2, 0.05, 0.05)] = 180.0  # aorta (contrast)
        if region == "thorax":
            for side_sign in (-1, 1):
                lung = _ellipse(u, v, side_sign * 0.4, -0.02, jitter(0.28, 0.33), jitter(0.4, 0.46))
                hu[lung] = -850.0
                for _ in range(30):  # vessels
                    cu, cv = side_sign * 0.4 + jitter(-0.25, 0.25), jitter(-0.35, 0.35)
                    hu[_ellipse(u, v, cu, cv, 0.012, 0.012) & lung] = 40.0
            hu[_ellipse(u, v, 0.12, -0.05, 0.22, 0.2)] = 50.0  # heart
            angles = np.linspace(0.3, np.pi - 0.3, 7)
            for a in np.r_[angles, -angles]:  # ribs
                hu[_ellipse(u, v, 0.84 * rx * np.cos(a), 0.84 * ry * np.sin(a), 0.03, 0.025)] = 800.0
        else:
            hu[_ellipse(u, v, -0.38, -0.05, 0.32, 0.38)] = 60.0  # liver
            hu[_ellipse(u, v, 0.5, 0.05, 0.14, 0.2)] = 50.0  # spleen
            for side_sign in (-1, 1):
                hu[_ellipse(u, v, side_sign * 0.28, 0.28, 0.09, 0.13)] = 160.0  # kidneys
            for _ in range(8):  # bowel gas
                hu[_ellipse(u, v, jitter(-0.2, 0.35), jitter(-0.3, 0.1), 0.04, 0.03)] = -900.0
    hu += rng.normal(0.0, jitter(8, 20), hu.shape).astype(np.float32)
    return hu


#: Display windows (center, width) of each CT region.
CT_WINDOWS = {
    "thorax": ((-600.0, 1500.0), (40.0, 400.0)),
    "abdomen": ((40.0, 400.0),),
    "head": ((40.0, 80.0),),
}


def window(values: F32, center: float, width: float) -> U8:
    """Linear window to 8 bits."""
    grey = (values - (center - width / 2.0)) / width
    return (np.clip(grey, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mr_slice(rng: np.random.Generator, kind: str, side: int = 512) -> F32:
    """An MR slice in arbitrary signal units (0-1000): ``kind`` t1_head, t2_head or t2_abdomen."""
    u, v = _grid(side)
    jitter = rng.uniform
    signal = np.zeros((side, side), np.float32)
    t2 = kind.startswith("t2")
    if kind.endswith("head"):
        rx, ry = jitter(0.62, 0.7), jitter(0.75, 0.82)
        signal[_ellipse(u, v, 0, 0, rx + 0.05, ry + 0.05)] = 650.0 if t2 else 850.0  # scalp fat
        signal[_ellipse(u, v, 0, 0, rx, ry)] = 40.0  # skull: no signal
        signal[_ellipse(u, v, 0, 0, rx - 0.04, ry - 0.04)] = 900.0 if t2 else 150.0  # CSF
        signal[_ellipse(u, v, 0, 0, rx - 0.07, ry - 0.07)] = 550.0 if t2 else 450.0  # grey matter
        signal[_ellipse(u, v, 0, 0, rx - 0.2, ry - 0.2)] = 400.0 if t2 else 620.0  # white matter
        for side_sign in (-1, 1):
            signal[_ellipse(u, v, side_sign * 0.1, -0.05, 0.06, 0.25)] = 900.0 if t2 else 150.0
    else:
        rx, ry = jitter(0.8, 0.9), jitter(0.55, 0.65)
        signal[_ellipse(u, v, 0, 0, rx, ry)] = 700.0  # fat
        signal[_ellipse(u, v, 0, 0, rx - 0.06, ry - 0.06)] = 250.0  # muscle
        signal[_ellipse(u, v, -0.38, -0.05, 0.32, 0.38)] = 300.0  # liver
        signal[_ellipse(u, v, 0.5, 0.05, 0.14, 0.2)] = 520.0  # spleen
        signal[_ellipse(u, v, 0, 0.38, 0.1, 0.1)] = 380.0  # vertebra
        signal[_ellipse(u, v, 0.1, -0.2, 0.08, 0.06)] = 950.0  # gallbladder
    bias = 1.0 + 0.25 * u * jitter(-1, 1) + 0.2 * v * jitter(-1, 1)  # coil sensitivity
    signal = _smooth(signal * bias)
    noisy = np.hypot(signal + rng.normal(0, 15, signal.shape), rng.normal(0, 15, signal.shape))  # Rician
    return noisy.astype(np.float32)


def _smooth(values: F32) -> F32:
    """A [1, 2, 1] / 4 blur along both axes (partial-volume edges)."""
    padded = np.pad(values, 1, mode="edge")
    rows = (padded[:-2, :] + 2 * padded[1:-1, :] + padded[2:, :]) / 4
    return ((rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4).astype(np.float32)


def to_grey(values: F32) -> U8:
    """0 to the 99.5th percentile -> 0-255 (how a viewer shows an MR slice)."""
    top = float(np.percentile(values, 99.5)) or 1.0
    return (np.clip(values / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# -- noise and flat fields ---------------------------------------------------------------------
def noise(rng: np.random.Generator, style: int, side: int = 512) -> U8:
    """Uniform, Gaussian, salt-and-pepper, smooth (low-frequency), a grating, blurred noise."""
    style %= 6
    if style == 0:
        return rng.integers(0, 256, (side, side), dtype=np.uint8)
    if style == 1:
        return np.clip(rng.normal(128, 45, (side, side)), 0, 255).astype(np.uint8)
    if style == 2:
        image = np.full((side, side), 128, np.uint8)
        pick = rng.random((side, side))
        image[pick < 0.1], image[pick > 0.9] = 0, 255
        return image
    if style == 3:
        cells = rng.standard_normal((8, 8)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(cells).resize((side, side), Image.Resampling.BICUBIC))
        return np.clip(128 + 50 * smooth, 0, 255).astype(np.uint8)
    if style == 4:
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        grating = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * rng.uniform(0.05, 0.3))
        return (128 + 100 * grating).astype(np.uint8)
    raw = Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8))
    return np.asarray(raw.filter(ImageFilter.GaussianBlur(4)))


def flat(style: int, side: int = 512) -> U8:
    """Flat black, dark, mid-grey, light and white fields, and a linear gradient."""
    levels = (0, 64, 128, 192, 255)
    style %= 6
    if style < len(levels):
        return np.full((side, side), levels[style], np.uint8)
    return np.tile(np.linspace(0, 255, side, dtype=np.float32).astype(np.uint8), (side, 1))
