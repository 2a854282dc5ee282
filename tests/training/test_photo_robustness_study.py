"""The photo robustness study: its rectification recovers the film, and a tiny study runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.phantom import render_phantom
from training.data.photo_render import render_photo
from training.photo_robustness_study import choose_rectifier, main, pillow_rectify


def resized(grey: np.ndarray, side: int = 128) -> np.ndarray:
    return np.asarray(Image.fromarray(grey, "F").resize((side, side), Image.Resampling.BILINEAR))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("kind", ["lightbox", "monitor", "window"])
def test_pillow_rectify_recovers_the_film_from_its_photo(kind: str) -> None:
    film = render_phantom(("Cardiomegaly",), seed=4, size=128).image
    photo = render_photo(film, np.random.default_rng(11), kind=kind, size=(480, 360))
    grey = pillow_rectify(photo.rgb, photo.corners, 128)
    assert max(grey.shape) == 128 and min(grey.shape) >= 120 and grey.dtype == np.float32  # aspect ~ 1
    assert 0.0 <= float(grey.min()) and float(grey.max()) <= 1.0
    good = correlation(resized(grey), film.astype(np.float32))
    assert good > 0.9, good
    diagonal = np.linalg.norm(photo.corners[2] - photo.corners[0])
    shifted = photo.corners + np.array([0.08, 0.0]) * diagonal  # corners a few percent off: worse
    off = correlation(resized(pillow_rectify(photo.rgb, shifted, 128)), film.astype(np.float32))
    assert off < good - 0.05, (good, off)


def test_rectifier_choice() -> None:
    name, function = choose_rectifier("pillow")
    assert name.startswith("pillow") and function is pillow_rectify
    name, _ = choose_rectifier("auto")
    assert name in ("cxr_core.capture.rectify", "pillow (grey world, percentile stretch)")


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path), "--images", "60", "--size", "64", "--input-size", "32", "--epochs", "1"]
    assert main([*argv, "--photo-size", "320x240", "--threads", "1", "--no-progress"]) == 0
    study = json.loads((tmp_path / "study.json").read_text())
    assert set(study["results"]) == {"hflip", "hflip-photo"}
    n = study["photos"]["photographed"]["n_photos"]
    assert n > 0 and study["photos"]["corners_off"]["n_photos"] == n
    for result in study["results"].values():
        assert result["digital"]["n"] == n
        for condition in ("photographed", "corners_off"):
            c = result[condition]
            assert c["n"] == n and c["drop"] == pytest.approx(result["digital"]["mean_auc"] - c["mean_auc"])
            assert 0.0 <= c["mean_abs_delta_p"] <= c["max_abs_delta_p"] <= 1.0
    off = np.asarray(Image.open(next((tmp_path / "corners_off").rglob("*.png"))))  # a real, different crop
    assert off.ndim == 2
    assert "| hflip-photo |" in capsys.readouterr().out
    photo = next((tmp_path / "examples").glob("*_photo.jpg"))
    with Image.open(photo) as image:
        assert image.size == (320, 240)
    linked = [p for p in (tmp_path / "photographed").rglob("*.png") if p.is_symlink()]
    assert linked and all(p.resolve().is_relative_to((tmp_path / "digital").resolve()) for p in linked)
