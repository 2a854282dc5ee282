"""``cxr-synth --photos``: the ChestX-ray14 layout of photos, photo_corners.csv and the digital twin set.

Real files are written (12 photos of 400 x 300 px of 96 px films) and read back with the csv module,
Pillow and the project's own ChestX-ray14 loader.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.loading import load_dataset
from training.data.photo_scene import DEFECTS, KINDS
from training.data.synthetic_cli import main
from training.data.synthetic_labels import SyntheticOptionError
from training.data.synthetic_photos import CORNERS_HEADER, parse_photo_size, plan_photos

N = 12
ARGS = ["--images", str(N), "--size", "96", "--photo-size", "400x300", "--no-progress", "--unusable", "0.5"]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos") / "set"
    assert main(["--photos", str(root), *ARGS, "--seed", "4", "--workers", "1"]) == 0
    return root


def test_layout_csvs_and_photos(photo_set: Path) -> None:
    for name in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt", "photo_corners.csv"):
        assert (photo_set / name).is_file(), name
    assert (photo_set / "digital" / "Data_Entry_2017.csv").is_file()
    photos = sorted((photo_set / "images_001" / "images").glob("*.jpg"))
    films = sorted((photo_set / "digital" / "images_001" / "images").glob("*.png"))
    assert len(photos) == len(films) == N
    assert [p.stem for p in photos] == [f.stem for f in films]
    for path in photos[:3]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (400, 300) and image.mode == "RGB"
    with Image.open(films[0]) as image:
        assert image.size == (96, 96) and image.mode == "L"


def test_photo_labels_are_the_digital_films_labels(photo_set: Path) -> None:
    photo_rows = read_rows(photo_set / "Data_Entry_2017.csv")
    digital_rows = read_rows(photo_set / "digital" / "Data_Entry_2017.csv")
    assert photo_rows[0] == digital_rows[0]
    for photo, film in zip(photo_rows[1:], digital_rows[1:], strict=True):
        assert photo[0] == Path(film[0]).with_suffix(".jpg").name
        assert photo[1:7] == film[1:7]  # findings, follow-up, patient, age, sex, view
        assert photo[7:9] == ["400", "300"]
    digital_test = (photo_set / "digital" / "test_list.txt").read_text().split()
    assert (photo_set / "test_list.txt").read_text().split() == [
        n.replace(".png", ".jpg") for n in digital_test
    ]
    splits = load_dataset("chestxray14", photo_set)  # the project's loader reads the photo set
    assert all(r.path.suffix == ".jpg" and r.path.is_file() for r in splits.test)


def test_photo_corners_csv(photo_set: Path) -> None:
    rows = read_rows(photo_set / "photo_corners.csv")
    assert rows[0] == CORNERS_HEADER
    assert rows[0][:12] == [
        "Image Index",
        "scene",
        "usable",
        "defect",
        "x0",
        "y0",
        "x1",
        "y1",
        "x2",
        "y2",
        "x3",
        "y3",
    ]
    body = rows[1:]
    assert len(body) == N and len({r[0] for r in body}) == N
    assert {r[1] for r in body} <= set(KINDS)
    unusable = [r for r in body if r[2] == "0"]
    assert len(unusable) == N // 2 and all(r[3] in DEFECTS for r in unusable)
    assert all(r[3] == "" for r in body if r[2] == "1")
    for row in body:
        assert (photo_set / row[12]).is_file() and Path(row[12]).stem == Path(row[0]).stem
        if row[3] == "no_film":
            assert row[4:12] == [""] * 8
            continue
        corners = np.array([float(v) for v in row[4:12]]).reshape(4, 2)
        if row[2] == "1":
            assert (corners >= 0).all() and (corners[:, 0] <= 400).all() and (corners[:, 1] <= 300).all()


def test_same_seed_same_files_whatever_the_workers(photo_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["--photos", str(again), *ARGS, "--seed", "4", "--workers", "2"]) == 0
    for path in sorted(photo_set.rglob("*")):
        if path.is_file() and path.name != "cxr_synth.json":
            assert (again / path.relative_to(photo_set)).read_bytes() == path.read_bytes(), path


def test_plan_spreads_kinds_and_defects() -> None:
    plan = plan_photos(140, seed=1, unusable=0.5)
    defects = [d for _, d in plan if d is not None]
    assert len(defects) == 70 and {defects.count(d) for d in DEFECTS} == {10}
    kinds = [k for k, _ in plan]
    assert all(46 <= kinds.count(k) <= 47 for k in KINDS)
    assert plan == plan_photos(140, seed=1, unusable=0.5) and plan != plan_photos(140, seed=2, unusable=0.5)


def test_photo_size_parsing_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_photo_size("4000x3000") == (4000, 3000)
    for bad in ("1600", "axb", "10x10"):
        with pytest.raises(SyntheticOptionError, match="expected"):
            parse_photo_size(bad)
    assert main(["--photos", str(tmp_path / "a"), "--photo-size", "big", "--no-progress"]) == 2
    assert "'big'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main([str(tmp_path / "b"), "--unusable", "0.3"])
    assert caught.value.code == 2
    assert "--photos" in capsys.readouterr().err


def test_photo_modules_do_not_import_torch() -> None:
    code = (
        "import sys, training.data.synthetic_photos, training.data.photo_render; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
