"""Phone photos of films for the app's photo-flow tests, written as real JPEG files.

``training.data.photo_render`` draws them (a phantom film on a light box, perspective, colour cast,
glare, JPEG as a camera saves it) with ground-truth corners. Where it is not importable, a simpler
photo is drawn here with Pillow: a phantom-like film warped onto a lit panel in a dark room.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Where the Pillow-made film lies in its 1600 x 1200 photo (TL, TR, BR, BL).
DRAWN_CORNERS = np.array([[470.0, 160.0], [1140.0, 205.0], [1105.0, 1045.0], [440.0, 1010.0]])


@dataclass(frozen=True)
class PhotoCase:
    path: Path
    corners: np.ndarray  # (4, 2) ground truth in photo pixels (NaN: no film)
    film: np.ndarray  # the film photographed, uint8 grey
    rendered: bool  # True: training.data.photo_render drew it


def film(height: int = 560, width: int = 480, seed: int = 3) -> np.ndarray:
    """A phantom chest film (uint8 grey); the drawn stand-in of the app tests without training/."""
    try:
        from training.data.phantom import render_phantom

        pixels = np.asarray(render_phantom(["Cardiomegaly"], seed=seed, size=max(height, width)).image)
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
        return pixels.astype(np.uint8)
    except ImportError:
        from tests.edge_app.conftest import radiograph

        return np.rint(radiograph(height, width, seed) * 255).astype(np.uint8)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows, dtype=np.float64))
    return vt[-1].reshape(3, 3) / vt[-1, -1]


def drawn_photo(
    grey: np.ndarray | None, size: tuple[int, int] = (1600, 1200), glare: bool = False
) -> np.ndarray:
    """A photo of ``grey`` on a light box at :data:`DRAWN_CORNERS` (None: the lit panel, no film).

    ``glare``: a saturated reflection over the right lung field."""
    width, height = size
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:height, 0:width] / max(size)
    room = 0.12 + 0.08 * xx + 0.04 * rng.random((height, width))
    rgb = np.stack([room * 0.95, room, room * 1.1], axis=-1)
    panel = (300, 80, 1300, 1130)
    rgb[panel[1] : panel[3], panel[0] : panel[2]] = (0.86, 0.92, 1.0)  # the light box, a little blue
    if grey is not None:
        fh, fw = grey.shape
        source = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], dtype=np.float64)
        h = _homography(DRAWN_CORNERS, source)  # photo -> film, what Pillow's transform wants
        film_rgb = Image.fromarray(grey).convert("RGB")
        warped = film_rgb.transform(size, Image.Transform.PERSPECTIVE, tuple(h.reshape(-1)[:8]))
        mask = Image.new("L", (fw, fh), 255).transform(
            size, Image.Transform.PERSPECTIVE, tuple(h.reshape(-1)[:8])
        )
        inside = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
        lit = np.asarray(warped, dtype=np.float64) / 255.0 * np.array([0.86, 0.92, 1.0])
        rgb = rgb * (1 - inside) + lit * inside
    if glare:
        cx, cy = DRAWN_CORNERS.mean(axis=0) + (-120.0, -60.0)
        spot = ((xx * max(size) - cx) / 150.0) ** 2 + ((yy * max(size) - cy) / 110.0) ** 2 < 1.0
        rgb[spot] = 1.0
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def write_photo(
    path: Path, defect: str | None = None, seed: int = 0, kind: str = "lightbox", size=(1600, 1200)
) -> PhotoCase:
    """A phone photo of a phantom film written to ``path`` (JPEG), with its true corners."""
    grey = film()
    try:
        from training.data.photo_render import render_photo
    except ImportError:
        if defect not in (None, "no_film", "glare"):
            raise
        rgb = drawn_photo(None if defect == "no_film" else grey, size, glare=defect == "glare")
        Image.fromarray(rgb).save(path, format="JPEG", quality=90)
        corners = np.full((4, 2), np.nan) if defect == "no_film" else DRAWN_CORNERS.copy()
        return PhotoCase(path, corners, grey, rendered=False)
    photo = render_photo(grey, np.random.default_rng(seed), kind=kind, defect=defect, size=size)
    if photo.jpeg:
        path.write_bytes(photo.jpeg)
    else:
        Image.fromarray(photo.rgb).save(path, format="JPEG", quality=90)
    return PhotoCase(path, np.asarray(photo.corners, dtype=np.float64), grey, rendered=True)


def write_photo_cases(root: Path, seeds: tuple[int, int, int]) -> dict[str, PhotoCase]:
    """The photo flow's three cases as JPEGs under ``root``: a good photo, an empty light box and a
    reflection over the lungs (``good``, ``no_film``, ``glare``), rendered with ``seeds`` in that order."""
    good, empty, glare = seeds
    return {
        "good": write_photo(root / "film_on_lightbox.jpg", seed=good),
        "no_film": write_photo(root / "empty_lightbox.jpg", defect="no_film", seed=empty),
        "glare": write_photo(root / "film_with_reflection.jpg", defect="glare", seed=glare),
    }
