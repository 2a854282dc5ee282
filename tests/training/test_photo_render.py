"""Rendered phone photos of phantom films: determinism, ground-truth corners, and each defect present.

Photos are small (400 x 300 px of a 128 px film) so the file runs in seconds; the corners are checked
against the pixels (a black film and a white film photographed in the same scene differ exactly
inside the film's outline), and every deliberately unusable photo is checked for its defect on
the rendered pixels or the corners, not on the knobs alone.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.data.phantom import render_phantom
from training.data.photo_geometry import film_corners
from training.data.photo_render import DEFECTS, KINDS, LUNG_BOX, render_photo, render_scene
from training.data.photo_scene import DEFECT_TILT_MIN, FAR_FILL_MAX, USABLE_TILT_MAX, sample_scene
from training.data.synthetic_labels import SyntheticOptionError

SIZE = (400, 300)
FOCAL = 0.8


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return render_phantom(("Effusion",), seed=5, size=128).image


def polygon_mask(quad: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in quad.tolist()], fill=1)
    return np.asarray(mask, bool)


def quad_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))  # > 0: clockwise, y down


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y, -u], [0, 0, 0, x, y, 1, -v * x, -v * y, -v]]
    return np.linalg.svd(np.array(rows))[2][-1].reshape(3, 3)


def tilt_from_corners(corners: np.ndarray, shape: tuple[int, int], size: tuple[int, int] = SIZE) -> float:
    """The film plane's tilt recovered from the corners alone (plane-to-image homography, known focal)."""
    f = FOCAL * max(size)
    k = np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1.0]])
    m = np.linalg.inv(k) @ homography(film_corners(shape), corners)
    normal = np.cross(m[:, 0] / np.linalg.norm(m[:, 0]), m[:, 1] / np.linalg.norm(m[:, 1]))
    return math.degrees(math.acos(abs(normal[2]) / np.linalg.norm(normal)))


def shrink(quad: np.ndarray, pixels: float) -> np.ndarray:
    """``quad`` moved ``pixels`` towards (or, negative, away from) its centre along each corner's ray."""
    centre = quad.mean(axis=0)
    ray = quad - centre
    return centre + ray * (1 - pixels / np.linalg.norm(ray, axis=1, keepdims=True))


def test_same_seed_same_bytes_and_another_seed_differs(film: np.ndarray) -> None:
    a = render_photo(film, np.random.default_rng(3), kind="monitor", size=SIZE)
    b = render_photo(film, np.random.default_rng(3), kind="monitor", size=SIZE)
    c = render_photo(film, np.random.default_rng(4), kind="monitor", size=SIZE)
    assert a.jpeg == b.jpeg and np.array_equal(a.rgb, b.rgb) and np.array_equal(a.corners, b.corners)
    assert a.jpeg != c.jpeg
    assert a.rgb.shape == (SIZE[1], SIZE[0], 3) and a.rgb.dtype == np.uint8
    with Image.open(io.BytesIO(a.jpeg)) as decoded:
        assert decoded.format == "JPEG" and decoded.size == SIZE
        assert np.array_equal(np.asarray(decoded.convert("RGB")), a.rgb)


@pytest.mark.parametrize("kind", KINDS)
def test_usable_photos_have_the_film_inside_the_frame_in_reading_order(film: np.ndarray, kind: str) -> None:
    for seed in range(4):
        photo = render_photo(film, np.random.default_rng(seed), kind=kind, size=SIZE)
        assert photo.usable and photo.defect is None and photo.scene.kind == kind
        c = photo.corners
        assert c.shape == (4, 2) and c.dtype == np.float64
        assert (c >= 0).all() and (c[:, 0] <= SIZE[0]).all() and (c[:, 1] <= SIZE[1]).all()
        assert quad_area(c) > 0  # TL, TR, BR, BL runs clockwise on screen
        assert c[0, 0] < c[1, 0] and c[3, 0] < c[2, 0] and c[0, 1] < c[3, 1] and c[1, 1] < c[2, 1]
        assert tilt_from_corners(c, film.shape) <= USABLE_TILT_MAX
        assert quad_area(c) / (SIZE[0] * SIZE[1]) >= 0.2


@pytest.mark.parametrize("kind", KINDS)
def test_corners_match_the_film_outline_in_the_pixels(kind: str) -> None:
    """A black and a white film in the same scene differ exactly inside the ground-truth quad."""
    scene = dataclasses.replace(
        sample_scene(np.random.default_rng(8), kind, size=SIZE), glare=(), fingers=False, tilt_deg=10.0
    )
    black, white = np.zeros((128, 104), np.uint8), np.full((128, 104), 255, np.uint8)
    a = render_scene(black, scene, np.random.default_rng(1), size=SIZE)
    b = render_scene(white, scene, np.random.default_rng(1), size=SIZE)
    np.testing.assert_array_equal(a.corners, b.corners)
    diff = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max(axis=2)
    quad = polygon_mask(a.corners)
    changed = diff > 40
    iou = (changed & quad).sum() / (changed | quad).sum()
    assert iou > 0.95, iou
    assert diff[polygon_mask(shrink(a.corners, 3))].min() > 40  # well inside: always film
    assert diff[~polygon_mask(shrink(a.corners, -10))].max() <= 24  # well outside: JPEG ringing at most


def test_glare_defect_saturates_the_lungs_and_usable_photos_do_not(film: np.ndarray) -> None:
    for seed in range(4):
        kind = KINDS[seed % 3]
        photo = render_photo(film, np.random.default_rng(seed), kind=kind, defect="glare", size=SIZE)
        assert not photo.usable and photo.defect == "glare"
        u0, v0, u1, v1 = LUNG_BOX
        h, w = film.shape
        box = np.array([[u0 * w, v0 * h], [u1 * w, v0 * h], [u1 * w, v1 * h], [u0 * w, v1 * h]], float)
        p = np.c_[box, np.ones(4)] @ photo.homography.T
        lungs = polygon_mask(p[:, :2] / p[:, 2:])
        saturated = photo.rgb.min(axis=2) >= 245
        assert (saturated & lungs).sum() >= 0.03 * lungs.sum(), (saturated & lungs).sum() / lungs.sum()
        usable = render_photo(film, np.random.default_rng(seed), kind=kind, size=SIZE)
        inside = polygon_mask(shrink(usable.corners, 3))
        assert (usable.rgb.min(axis=2)[inside] >= 245).mean() < 0.002


def test_tilt_defect_is_beyond_the_threshold_in_the_corners(film: np.ndarray) -> None:
    for seed in range(4):
        photo = render_photo(
            film, np.random.default_rng(seed), kind=KINDS[seed % 3], defect="tilt", size=SIZE
        )
        assert photo.defect == "tilt" and photo.scene.tilt_deg >= DEFECT_TILT_MIN
        measured = tilt_from_corners(photo.corners, film.shape)
        assert measured >= DEFECT_TILT_MIN, measured
        assert abs(measured - photo.scene.tilt_deg) < 1.0


def test_far_defect_film_fills_little_of_the_frame(film: np.ndarray) -> None:
    for seed in range(3):
        photo = render_photo(film, np.random.default_rng(seed), kind=KINDS[seed], defect="far", size=SIZE)
        share = quad_area(photo.corners) / (SIZE[0] * SIZE[1])
        assert 0.01 < share <= FAR_FILL_MAX < 0.15, share


def laplacian_energy(rgb: np.ndarray, quad: np.ndarray) -> float:
    grey = rgb.astype(np.float64).mean(axis=2)
    grey = (grey[0::2, 0::2] + grey[1::2, 0::2] + grey[0::2, 1::2] + grey[1::2, 1::2]) / 4  # tame the noise
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    inside = polygon_mask(quad / 2, (grey.shape[1], grey.shape[0]))[1:-1, 1:-1]
    return float((lap[inside] ** 2).mean())


def test_blur_defect_removes_the_detail_of_the_same_scene(film: np.ndarray) -> None:
    for seed in range(3):
        scene = sample_scene(np.random.default_rng(seed), KINDS[seed], "blur", SIZE)
        blurred = render_scene(film, scene, np.random.default_rng(9), size=SIZE, defect="blur")
        sharp = render_scene(
            film, dataclasses.replace(scene, blur_px=0.0), np.random.default_rng(9), size=SIZE
        )
        ratio = laplacian_energy(blurred.rgb, blurred.corners) / laplacian_energy(sharp.rgb, sharp.corners)
        assert ratio < 0.25, ratio


def test_cut_off_defect_leaves_part_of_the_film_outside_the_frame(film: np.ndarray) -> None:
    for seed in range(4):
        photo = render_photo(film, np.random.default_rng(seed), kind="lightbox", defect="cut_off", size=SIZE)
        c = photo.corners
        outside = (c[:, 0] < 0) | (c[:, 0] > SIZE[0]) | (c[:, 1] < 0) | (c[:, 1] > SIZE[1])
        assert outside.any()
        visible = polygon_mask(c).sum() / quad_area(c)
        assert 0.4 < visible < 0.95, visible


def test_two_films_defect_shows_a_second_film_beside_the_first() -> None:
    """Black and white films in one two-film scene differ in the first quad and as much again beside it."""
    scene = dataclasses.replace(
        sample_scene(np.random.default_rng(2), "lightbox", "two_films", SIZE), glare=()
    )
    black, white = np.zeros((128, 104), np.uint8), np.full((128, 104), 255, np.uint8)
    a = render_scene(black, scene, np.random.default_rng(5), size=SIZE, defect="two_films")
    b = render_scene(white, scene, np.random.default_rng(5), size=SIZE, defect="two_films")
    changed = np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max(axis=2) > 40
    first = polygon_mask(shrink(a.corners, -3))
    assert (changed & first).sum() > 0.9 * quad_area(a.corners)
    assert (changed & ~first).sum() > 0.8 * quad_area(a.corners)  # a second film-sized region


def test_no_film_defect_has_no_film_and_nan_corners(film: np.ndarray) -> None:
    a = render_photo(film, np.random.default_rng(6), kind="monitor", defect="no_film", size=SIZE)
    b = render_photo(255 - film, np.random.default_rng(6), kind="monitor", defect="no_film", size=SIZE)
    assert np.isnan(a.corners).all() and a.homography is None and not a.usable
    assert a.jpeg == b.jpeg  # the film's pixels appear nowhere


def test_every_defect_renders_for_every_kind(film: np.ndarray) -> None:
    for i, defect in enumerate(DEFECTS):
        for kind in KINDS:
            photo = render_photo(film, np.random.default_rng(i), kind=kind, defect=defect, size=(160, 120))
            assert photo.defect == defect and not photo.usable and photo.rgb.shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("bad", "kwargs", "message"),
    [
        (np.zeros((64, 64, 3), np.uint8), {}, "expected a 2-D uint8 grey image"),
        (np.zeros((64, 64), np.float32), {}, "expected a 2-D uint8 grey image"),
        (np.zeros((8, 64), np.uint8), {}, "expected at least 16 px a side"),
        (
            np.zeros((64, 64), np.uint8),
            {"kind": "scanner"},
            "expected one of ['lightbox', 'monitor', 'window']",
        ),
        (np.zeros((64, 64), np.uint8), {"defect": "smudge"}, "expected None or one of"),
        (np.zeros((64, 64), np.uint8), {"size": (10, 300)}, "expected (width, height) of 64 to 8000"),
    ],
)
def test_bad_arguments_are_refused_with_what_was_expected(
    bad: np.ndarray, kwargs: dict, message: str
) -> None:
    args = {"kind": "lightbox", "size": SIZE} | kwargs
    with pytest.raises(SyntheticOptionError) as caught:
        render_photo(bad, np.random.default_rng(0), **args)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
