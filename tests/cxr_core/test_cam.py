"""cxr_core.cam: CAM arithmetic, upsampling through the preprocessing geometry, colour map, overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxr_core import cam
from cxr_core.preprocess import PreprocessSpec, compute_geometry

RNG = np.random.default_rng(0)


def test_cam_is_the_weighted_sum_of_feature_channels() -> None:
    fmap = RNG.standard_normal((6, 3, 4)).astype(np.float32)
    weight = RNG.standard_normal((5, 6)).astype(np.float32)
    expected = np.einsum("k,khw->hw", weight[2].astype(np.float64), fmap.astype(np.float64))
    np.testing.assert_allclose(cam.class_activation_map(fmap, weight, 2), expected, rtol=1e-5, atol=1e-5)
    every = cam.class_activation_maps(fmap, weight)
    assert every.shape == (5, 3, 4)
    np.testing.assert_allclose(every[2], expected, rtol=1e-5, atol=1e-5)


def test_cam_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="expected weight"):
        cam.class_activation_map(np.zeros((6, 2, 2)), np.zeros((3, 5)), 0)
    with pytest.raises(ValueError, match=r"expected \(C, h, w\)"):
        cam.class_activation_map(np.zeros((1, 6, 2, 2)), np.zeros((3, 6)), 0)
    with pytest.raises(IndexError, match="out of range"):
        cam.class_activation_map(np.zeros((6, 2, 2)), np.zeros((3, 6)), 3)


def test_normalise_map_spans_zero_to_one_and_a_flat_map_is_zero() -> None:
    scaled = cam.normalise_map(np.array([[-3.0, 1.0], [5.0, 0.0]]))
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert scaled[0, 1] == pytest.approx(0.5)
    assert not cam.normalise_map(np.full((3, 3), 7.0)).any()


def test_upsampling_matches_pillow_bilinear_inside_the_crop() -> None:
    """An independent bilinear (Pillow, mode F) on a geometry without resize: same values."""
    spec = PreprocessSpec(input_size=64, resize="none", crop="center")
    geometry = compute_geometry(100, 120, spec)
    top, left, size, _ = geometry.crop_box
    small = RNG.random((4, 4)).astype(np.float32)
    heat = cam.upsample_to_image(small, geometry)
    assert heat.shape == (100, 120)
    reference = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(heat[top : top + size, left : left + size], reference, atol=1e-5)
    outside = np.ones_like(heat, dtype=bool)
    outside[top : top + size, left : left + size] = False
    assert not heat[outside].any(), "pixels the model never saw must be 0"


def test_upsampling_through_resize_and_crop_covers_the_crop_in_original_pixels() -> None:
    spec = PreprocessSpec(input_size=64, resize_to=80)
    geometry = compute_geometry(300, 500, spec)  # resized to 80x133, crop at (8, 34)
    heat = cam.upsample_to_image(np.ones((2, 2), np.float32), geometry)
    rows, cols = np.nonzero(heat)
    (new_h, new_w), (top, left, size, _) = geometry.resized_size, geometry.crop_box

    def centres_inside(start: float, end: float) -> tuple[int, int]:
        """First and last pixel whose centre (i + 0.5) lies in [start, end) of original pixels."""
        return int(np.ceil(start - 0.5)), int(np.ceil(end - 0.5)) - 1

    assert (rows.min(), rows.max()) == centres_inside(top * 300 / new_h, (top + size) * 300 / new_h)
    assert (cols.min(), cols.max()) == centres_inside(left * 500 / new_w, (left + size) * 500 / new_w)
    np.testing.assert_allclose(heat[heat > 0], 1.0, atol=1e-6)


@pytest.mark.parametrize("cell", [(0, 0), (1, 2), (3, 3)])
def test_heat_map_is_hottest_where_the_feature_map_is(cell: tuple[int, int]) -> None:
    spec = PreprocessSpec(input_size=128, resize_to=146)
    geometry = compute_geometry(700, 600, spec)
    fmap = np.zeros((3, 4, 4), np.float32)
    fmap[1][cell] = 5.0
    weight = np.array([[0.0, 2.0, 0.0]], np.float32)
    heat = cam.heatmap(fmap, weight, 0, geometry)
    assert heat.shape == (700, 600) and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0, abs=0.02)
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    (new_h, new_w), (top, left, size, _) = geometry.resized_size, geometry.crop_box
    grid_y = ((y + 0.5) * new_h / 700 - top) * 4 / size
    grid_x = ((x + 0.5) * new_w / 600 - left) * 4 / size
    assert (int(grid_y), int(grid_x)) == cell


def test_colour_map_is_perceptual_lightness_rises_steadily() -> None:
    table = cam.colour_map_table()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    lab = cam.linear_srgb_to_oklab(cam.srgb_decode(table / 255.0))
    lightness = lab[:, 0]
    assert np.all(np.diff(lightness) > 0), "lightness must increase monotonically"
    assert lightness[0] < 0.25 and lightness[-1] > 0.9
    steps = np.linalg.norm(np.diff(lab, axis=0), axis=1)
    assert steps.max() / steps.min() < 4.0, "colour steps should be roughly uniform in OKLab"
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    assert chroma[128] > 0.15, "the middle of the map is coloured, not grey"


def test_oklab_round_trip() -> None:
    rgb = RNG.random((50, 3))
    lab = cam.linear_srgb_to_oklab(rgb)
    np.testing.assert_allclose(cam._oklab_to_linear_srgb(lab), rgb, atol=2e-4)  # published 10-digit matrices
    np.testing.assert_allclose(cam.srgb_decode(cam.srgb_encode(rgb)), rgb, atol=1e-12)


def test_colourise_uses_the_table_ends() -> None:
    table = cam.colour_map_table()
    out = cam.colourise(np.array([[0.0, 1.0], [-2.0, 7.0]]))
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], table[0])
    np.testing.assert_array_equal(out[0, 1], table[-1])
    np.testing.assert_array_equal(out[1, 0], table[0])
    np.testing.assert_array_equal(out[1, 1], table[-1])


def test_overlay_is_grey_where_cold_and_coloured_where_hot() -> None:
    grey = np.tile(np.linspace(0.2, 0.8, 40, dtype=np.float32), (30, 1))
    heat = np.zeros((30, 40), np.float32)
    heat[10:20, 10:20] = 1.0
    heat[0:5, 30:40] = 0.5
    out = cam.overlay(grey, heat, alpha=0.6)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    cold = heat == 0
    expected_grey = np.rint(grey * 255).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel][cold], expected_grey[cold])
    spread = out.max(axis=-1).astype(int) - out.min(axis=-1).astype(int)
    assert spread[10:20, 10:20].min() > 30, "hot pixels must be visibly coloured"
    assert spread[0:5, 30:40].min() > 10
    np.testing.assert_array_equal(cam.overlay(grey, heat, alpha=0.0)[..., 1], expected_grey)


def test_overlay_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        cam.overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        cam.overlay(np.zeros((4, 4)), np.zeros((4, 5)))
