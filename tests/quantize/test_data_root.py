"""cxr-export finds the dataset of a checkpoint moved or exported from another folder (--data-root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantize.calibration import CalibrationError, resolve_data_root
from quantize.cli import main
from tests.bundle_fixtures import write_checkpoint


def test_relative_data_root_is_looked_up_beside_the_checkpoint_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "runs" / "a"
    (run / "data").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("data", run / "best.pt") == (run / "data").resolve()


def test_relative_data_root_falls_back_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("data", tmp_path / "runs" / "a" / "best.pt") == (tmp_path / "data").resolve()


def test_missing_data_root_names_both_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(CalibrationError) as caught:
        resolve_data_root("phantoms", tmp_path / "runs" / "a" / "best.pt")
    message = str(caught.value)
    assert str(tmp_path / "runs" / "a" / "phantoms") in message
    assert str(tmp_path / "elsewhere" / "phantoms") in message
    assert "--data-root" in message


def test_override_wins_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "moved").mkdir()
    assert resolve_data_root("/nowhere/data", tmp_path / "c.pt", tmp_path / "moved") == tmp_path / "moved"
    with pytest.raises(CalibrationError, match="--data-root .*missing is not a folder"):
        resolve_data_root("data", tmp_path / "c.pt", tmp_path / "missing")
    with pytest.raises(CalibrationError, match="records data_root /nowhere/data, which does not exist"):
        resolve_data_root("/nowhere/data", tmp_path / "c.pt")


def test_export_from_another_folder_with_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.config import TrainConfig
    from training.data.synthetic import generate_chestxray14

    data = tmp_path / "project" / "phantoms"
    generate_chestxray14(data, n_images=24, image_size=64, seed=0, progress=False, overwrite=True, workers=1)
    run = TrainConfig(
        dataset="synthetic",
        data_root="phantoms",  # relative to the project folder training ran in
        out_dir="runs/tiny",
        val_fraction=0.25,
        input_size=64,
        resize_to=72,
    )
    checkpoint = write_checkpoint(
        tmp_path / "project" / "runs" / "tiny" / "best.pt", "chexnet", run.to_dict()
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = [
        str(checkpoint),
        "--out",
        str(elsewhere / "bundle"),
        "--formats",
        "onnx",
        "--calibration-images",
        "4",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "runs/tiny/phantoms" in err and str(elsewhere / "phantoms") in err
    assert main([*argv, "--data-root", str(data), "--no-timing"]) == 0
    calibration = json.loads((elsewhere / "bundle" / "manifest.json").read_text())["calibration"]
    assert calibration["count"] == 4 and calibration["root"] == str(data.resolve())
