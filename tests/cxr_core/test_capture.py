"""cxr_core.capture: the film found in photos, each unusable photo refused with its own reason and fix,
white balance, rectification, loading. Photos are made with a Pillow perspective transform of a real
phantom film (tests/cxr_core/photo_factory.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.capture import (
    CaptureInputError,
    PhotoRefusedError,
    capture_film,
    find_film,
    load_photo,
    rectify,
)
from cxr_core.errors import CxrEdgeError, ImageDecodeError
from cxr_core.input_gate import ImageRefusedError
from tests.cxr_core.photo_factory import make_photo, phantom_film, quad_for

SIZE = (1600, 1200)


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return phantom_film(seed=1)


def _corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    """Largest corner error as a share of the film's diagonal."""
    return float(np.linalg.norm(found - truth, axis=1).max() / np.linalg.norm(truth[2] - truth[0]))


@pytest.mark.parametrize("kind", ["lightbox", "monitor", "window"])
@pytest.mark.parametrize("tilt", [0.0, 0.2])
def test_the_film_is_found_within_half_a_percent_of_its_diagonal(
    film: np.ndarray, kind: str, tilt: float
) -> None:
    truth = quad_for(SIZE, 0.4, tilt, shift=(0.03, -0.02))
    photo = make_photo(film, truth, SIZE, kind=kind, cast=(1.0, 0.92, 0.8))
    quad = find_film(photo)
    assert _corner_error(quad.corners, truth) < 0.005
    assert quad.confidence > 0.8


def _refusal(photo: np.ndarray, **kwargs: object) -> PhotoRefusedError:
    with pytest.raises(PhotoRefusedError) as info:
        capture_film(photo, name="ward3.jpg", **kwargs)
    error = info.value
    assert isinstance(error, ImageRefusedError) and isinstance(error, CxrEdgeError)
    assert str(error).startswith("ward3.jpg: refused, not scored: ")
    assert error.fix in str(error) and error.reason in str(error)
    return error


def test_a_photo_without_a_film_is_refused_as_no_film(film: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    wall = np.full((SIZE[1], SIZE[0], 3), 140, np.uint8)
    wall = np.clip(wall + rng.normal(0, 6, wall.shape), 0, 255).astype(np.uint8)
    wall[500:560, 100:1500] = 60  # a shelf: a long straight edge, but no closed quad around a picture
    error = _refusal(wall)
    assert error.code == "no_film"
    assert "no film found" in error.reason and "four corners" in error.fix


def test_two_films_side_by_side_are_refused(film: np.ndarray) -> None:
    left = quad_for(SIZE, 0.16, 0.0, shift=(-0.22, 0.0))
    right = quad_for(SIZE, 0.16, 0.0, shift=(0.22, 0.02))
    photo = make_photo(film, left, SIZE, extra_films=(right,))
    error = _refusal(photo)
    assert error.code == "two_films"
    assert "one film at a time" in error.fix


def test_extreme_tilt_asks_to_hold_the_phone_parallel(film: np.ndarray) -> None:
    photo = make_photo(film, quad_for(SIZE, 0.35, 0.55), SIZE)
    error = _refusal(photo)
    assert error.code == "tilt"
    assert error.fix == "hold the phone parallel to the film"
    assert error.measures["tilt_deg"] > 35


def test_glare_over_the_lungs_asks_to_avoid_the_reflection(film: np.ndarray) -> None:
    truth = quad_for(SIZE, 0.4, 0.05)
    lung = truth[0] + 0.35 * (truth[1] - truth[0]) + 0.4 * (truth[3] - truth[0])
    photo = make_photo(film, truth, SIZE, glare=(lung[0], lung[1], 140.0))
    error = _refusal(photo)
    assert error.code == "glare"
    assert error.fix.startswith("avoid the reflection")
    assert "lung fields" in error.reason


def test_a_film_far_away_asks_to_move_closer(film: np.ndarray) -> None:
    photo = make_photo(film, quad_for(SIZE, 0.05, 0.05), SIZE)
    error = _refusal(photo)
    assert error.code == "far"
    assert error.fix.startswith("move closer")


def test_a_blurred_photo_asks_to_hold_the_phone_still(film: np.ndarray) -> None:
    photo = make_photo(film, quad_for(SIZE, 0.4, 0.05), SIZE, blur=7.0)
    error = _refusal(photo)
    assert error.code == "blur"
    assert error.fix.startswith("hold the phone still")


def test_a_film_running_out_of_the_photo_asks_to_move_back(film: np.ndarray) -> None:
    photo = make_photo(film, quad_for(SIZE, 0.6, 0.05, shift=(0.3, 0.0)), SIZE)
    error = _refusal(photo)
    assert error.code == "cut_off"
    assert error.fix.startswith("move back")


def test_white_balance_removes_a_colour_cast(film: np.ndarray) -> None:
    truth = quad_for(SIZE, 0.4, 0.1)
    neutral = capture_film(make_photo(film, truth, SIZE))
    cast = capture_film(make_photo(film, truth, SIZE, cast=(1.0, 0.85, 0.6)))
    raw = make_photo(film, truth, SIZE, cast=(1.0, 0.85, 0.6))
    crop = raw[500:700, 700:900].astype(float) / 255
    raw_chroma = float((crop.max(axis=2) - crop.min(axis=2)).mean())
    assert raw_chroma > 0.1  # the photo itself is clearly tinted
    assert cast.image.provenance.colourfulness < 0.02 < raw_chroma
    a = neutral.image.pixels
    b = np.asarray(Image.fromarray(cast.image.pixels, "F").resize(a.shape[::-1]), np.float32)
    assert float(np.abs(a - b).mean()) < 0.03


def test_the_rectified_film_matches_the_film(film: np.ndarray) -> None:
    truth = quad_for(SIZE, 0.45, 0.0)
    captured = capture_film(make_photo(film, truth, SIZE, noise=0.5))
    grey = captured.image.pixels
    assert captured.detected
    assert abs(grey.shape[1] / grey.shape[0] - 1.0) < 0.06  # the phantom film is square
    original = np.asarray(Image.fromarray(film).resize(grey.shape[::-1], Image.Resampling.BOX), np.float32)
    correlation = np.corrcoef(original.ravel(), grey.ravel())[0, 1]
    assert correlation > 0.97
    assert set(captured.quality.to_dict()) >= {"glare", "blur", "moire", "tilt_deg", "fill"}
    assert "rectified" in " ".join(captured.image.provenance.notes)


def test_given_corners_skip_detection_and_are_kept(film: np.ndarray) -> None:
    truth = quad_for(SIZE, 0.4, 0.1)
    photo = make_photo(film, truth, SIZE)
    captured = capture_film(photo, corners=truth)
    assert not captured.detected
    np.testing.assert_allclose(captured.corners, truth)
    assert captured.photo_input().to_dict()["detected"] is False
    grey = rectify(photo, truth, long_side=256)
    assert max(grey.shape) == 256 and grey.dtype == np.float32


def test_bad_corners_and_arrays_are_refused_with_what_was_expected(film: np.ndarray) -> None:
    photo = make_photo(film, quad_for(SIZE, 0.4), SIZE)
    with pytest.raises(CaptureInputError, match=r"shape \(3, 2\).*expected 4 finite \(x, y\) points"):
        capture_film(photo, corners=[[0, 0], [1, 0], [1, 1]])
    with pytest.raises(CaptureInputError, match=r"shape \(20, 20\).*expected \(H, W, 3\) uint8"):
        capture_film(np.zeros((20, 20), np.uint8))


def test_load_photo_applies_exif_orientation_and_names_bad_files(tmp_path: Path, film: np.ndarray) -> None:
    photo = make_photo(film, quad_for((400, 300), 0.4), (400, 300))
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, format="JPEG", exif=exif.tobytes(), quality=92)
    loaded = load_photo(path)
    assert loaded.shape == (400, 300, 3)
    with pytest.raises(ImageDecodeError, match=r"missing\.jpg: file not found; expected a JPEG or PNG photo"):
        load_photo(tmp_path / "missing.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(ImageDecodeError, match=r"notes\.jpg: .*expected a JPEG or PNG photo"):
        load_photo(text)


def test_a_large_jpeg_is_decoded_at_reduced_scale_with_the_same_corners(
    tmp_path: Path, film: np.ndarray
) -> None:
    size = (3200, 2400)
    truth = quad_for(size, 0.4, 0.1)
    photo = make_photo(film, truth, size, noise=1.0)
    path = tmp_path / "large.jpg"
    Image.fromarray(photo).save(path, quality=92)
    from_file = capture_film(path)  # decoded at 1/2 scale (libjpeg draft mode), corners in full-size pixels
    from_array = capture_film(load_photo(path))  # decoded at full size
    assert from_file.photo_size == size == from_array.photo_size
    assert _corner_error(from_file.corners, truth) < 0.005
    assert np.abs(from_file.corners - from_array.corners).max() < 3.0
    a, b = from_file.image.pixels, from_array.image.pixels
    assert max(a.shape) == max(b.shape) == 1024 and abs(min(a.shape) - min(b.shape)) <= 0.02 * min(b.shape)
    a = np.asarray(Image.fromarray(a, "F").resize(b.shape[::-1]), np.float32)
    assert float(np.abs(a - b).mean()) < 0.03


def test_a_16_bit_grey_png_photo_reads_as_its_8_bit_copy(tmp_path: Path, film: np.ndarray) -> None:
    # Pillow's convert("RGB") clips 16-bit grey at 255: the photo came out all white and its film
    # was refused as blurred. Scaled by 257, it reads as the 8-bit file and captures the same film.
    truth = quad_for(SIZE, 0.4, 0.1)
    grey = np.asarray(Image.fromarray(make_photo(film, truth, SIZE)).convert("L"))
    Image.fromarray(grey).save(tmp_path / "photo8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "photo16.png")
    assert Image.open(tmp_path / "photo16.png").mode.startswith("I")
    eight, sixteen = load_photo(tmp_path / "photo8.png"), load_photo(tmp_path / "photo16.png")
    assert np.array_equal(eight, sixteen)
    captured = capture_film(tmp_path / "photo16.png")
    assert _corner_error(captured.corners, truth) < 0.005
