"""The recorded calibration list: deterministic choice, clear errors on bad sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantize.calibration import CalibrationError, evenly_spaced, from_directory, load_tensors
from tests.bundle_fixtures import SPEC


def test_directory_choice_is_sorted_and_evenly_spread(calibration_dir: Path) -> None:
    chosen = from_directory(calibration_dir, 3)
    assert chosen.names == ["img_00.png", "img_04.png", "img_07.png"]
    assert from_directory(calibration_dir, 100).names == [f"img_{i:02d}.png" for i in range(8)]
    tensors = load_tensors(chosen, SPEC)
    assert tensors.shape == (3, *SPEC.output_shape) and str(tensors.dtype) == "float32"
    assert chosen.to_dict()["count"] == 3


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        from_directory(tmp_path / "nope", 4)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CalibrationError, match="holds no image files"):
        from_directory(tmp_path, 4)
    with pytest.raises(CalibrationError, match="count 0"):
        evenly_spaced([tmp_path], 0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="broken.png cannot be used"):
        load_tensors(from_directory(tmp_path, 4), SPEC)
