"""The photo flow's geometry and text (edge_app.photo): no window, no model."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.photo import (
    CornerError,
    PhotoView,
    as_corners,
    corners_list,
    inset_corners,
    max_shift,
    preview_pixels,
    quad_problem,
    quality_line,
    rotate_reading,
)

SQUARE = [[100.0, 80.0], [500.0, 90.0], [490.0, 560.0], [110.0, 540.0]]


def test_inset_rectangle_is_a_valid_quad_inside_the_photo() -> None:
    corners = inset_corners(4000, 3000)
    assert corners.shape == (4, 2)
    assert corners[0].tolist() == [480.0, 360.0] and corners[2].tolist() == [3520.0, 2640.0]
    assert quad_problem(corners, 4000, 3000) is None


def test_crossed_or_anticlockwise_corners_are_named() -> None:
    crossed = np.array(SQUARE)[[0, 2, 1, 3]]  # top-right and bottom-right swapped: sides cross
    assert "do not outline the film" in quad_problem(crossed, 640, 640)
    anticlockwise = np.array(SQUARE)[::-1]
    assert "do not outline the film" in quad_problem(anticlockwise, 640, 640)
    assert quad_problem(SQUARE, 640, 640) is None


def test_a_tiny_quad_is_not_a_film() -> None:
    tiny = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], dtype=float)
    assert "too small" in quad_problem(tiny, 4000, 3000)


def test_rotating_the_reading_moves_the_top_side() -> None:
    rotated = rotate_reading(SQUARE)
    assert rotated[0].tolist() == SQUARE[3]  # the old bottom-left is the new top-left
    assert rotate_reading(rotate_reading(rotate_reading(rotated))).tolist() == SQUARE
    assert quad_problem(rotated, 640, 640) is None  # still clockwise


def test_bad_corner_arrays_name_what_came() -> None:
    with pytest.raises(CornerError, match=r"shape \(3, 2\)"):
        as_corners([[0, 0], [1, 0], [1, 1]])
    with pytest.raises(CornerError, match="expected 4"):
        as_corners([[0, 0], [1, 0], [1, np.nan], [0, 1]])


def test_shift_list_and_quality_line() -> None:
    moved = np.array(SQUARE)
    moved[2] += (30.0, 40.0)
    assert max_shift(SQUARE, moved) == pytest.approx(50.0)
    assert corners_list(moved)[2] == [520.0, 600.0]
    line = quality_line({"glare": 0.0123, "tilt_deg": 7.25, "usable": True, "note": "x"})
    assert line == "glare 0.0123, tilt deg 7.25"


def test_preview_pixels_from_either_range() -> None:
    unit = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    rgb = preview_pixels(unit)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 2] == 255
    assert np.array_equal(preview_pixels(unit * 255.0), rgb)


def test_photo_view_converts_between_display_and_photo_pixels() -> None:
    display = np.zeros((300, 400, 3), dtype=np.uint8)
    view = PhotoView("p.jpg", display, (4000, 3000), 0.1, inset_corners(4000, 3000), False)
    assert view.display_size == (400, 300)
    assert np.allclose(view.to_photo(view.to_display(SQUARE)), SQUARE)
    assert view.to_display(view.corners)[0].tolist() == pytest.approx([48.0, 36.0])


def test_the_study_screen_says_how_a_photo_was_judged() -> None:
    from edge_app.history import photo_lines

    record = {
        "kind": "photo",
        "corners": [[10.4, 20.6], [900, 22], [890, 1100], [12, 1090]],
        "quality": {"glare": 0.03, "tilt_deg": 4.0},
        "confirmation": {"placed_by_hand": False, "moved_by_clinician_px": 12.6},
    }
    lines = photo_lines(record)
    assert lines[0].startswith("Input: a phone photo of a film")
    assert "(10, 21), (900, 22), (890, 1100), (12, 1090)" in lines[1]
    assert lines[2] == "Corners detected, confirmed by the clinician (moved up to 13 px)"
    assert lines[3] == "Photo quality: glare 0.03, tilt deg 4"
    hand = photo_lines({**record, "confirmation": {"placed_by_hand": True}, "fix": "move closer"})
    assert "Corners placed by hand (no film was found automatically)" in hand
    assert hand[-1] == "What to do: move closer"
