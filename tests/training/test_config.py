"""TrainConfig: validation, presets, files, flag overrides and their precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxr_core.preprocess import PreprocessSpec
from training.cli import build_parser
from training.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    load_config_file,
    resolve_config,
    save_config_yaml,
)


def _flags(argv: list[str]) -> dict:
    args = build_parser().parse_args(["train", *argv])
    names = [name for name in TrainConfig.__dataclass_fields__ if hasattr(args, name)]
    return {name: getattr(args, name) for name in names}


def test_defaults_are_valid_and_build_the_chexnet_spec() -> None:
    config = TrainConfig()
    assert config.preprocess_spec() == PreprocessSpec()
    small = TrainConfig(input_size=128, resize_to=146)
    assert small.preprocess_spec().output_shape == (3, 128, 128)


def test_presets_hold_the_paper_settings() -> None:
    dgc = resolve_config("dgc-paper")
    assert (dgc.architecture, dgc.lr, dgc.batch_size, dgc.epochs, dgc.augment, dgc.loss) == (
        "dgc",
        1e-5,
        16,
        10,
        "none",
        "batch-balanced-bce",
    )
    chexnet = resolve_config("chexnet-paper")
    assert (chexnet.lr, chexnet.betas, chexnet.batch_size, chexnet.scheduler, chexnet.scheduler_factor) == (
        1e-3,
        (0.9, 0.999),
        16,
        "plateau",
        0.1,
    )
    assert (chexnet.augment, chexnet.loss, chexnet.input_size) == ("hflip", "bce", 224)
    assert set(PRESETS) == {"dgc-paper", "chexnet-paper", "field"}  # field: see test_augment_photo.py


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_precedence_defaults_preset_file_flags(tmp_path: Path, suffix: str) -> None:
    values = {"lr": "2e-5", "batch_size": 8, "encoder": "resnet50", "epochs": 3}
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:  # YAML reads "2e-5" as a string: the config must still take it as a float
        path.write_text("lr: 2e-5\nbatch_size: 8\nencoder: resnet50\nepochs: 3\n")
    overrides = _flags(
        [
            "--epochs",
            "5",
            "--betas",
            "0.8",
            "0.99",
            "--no-frontal-only",
            "--dataset-option",
            "official_split=false",
        ]
    )
    config = resolve_config("dgc-paper", path, overrides)
    assert config.architecture == "dgc"  # preset
    assert config.loss == "batch-balanced-bce"  # preset, untouched by file and flags
    assert config.lr == pytest.approx(2e-5) and config.batch_size == 8  # file over preset
    assert config.encoder == "resnet50"
    assert config.epochs == 5  # flag over file
    assert config.betas == (0.8, 0.99) and config.frontal_only is False
    assert config.dataset_options == {"official_split": False}
    assert config.weight_decay == 0.0  # default


def test_file_may_name_its_preset(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: chexnet-paper\nbatch_size: 4\n")
    config = resolve_config(config_file=path)
    assert config.lr == 1e-3 and config.batch_size == 4


def test_unknown_key_in_file_suggests_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-3\nbatch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rate'") as info:
        resolve_config(config_file=path)
    assert str(path) in str(info.value)
    path.write_text("batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"did you mean 'batch_size'"):
        resolve_config(config_file=path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheduler": "platau"}, r"did you mean 'plateau'"),
        ({"augment": "flip"}, r"augment='flip' is not valid"),
        ({"batch_size": 0}, r"batch_size=0; expected an integer >= 1"),
        ({"lr": -1.0}, r"lr=-1.0"),
        ({"head": "multiclass3"}, r"'multiclass3' head trains with the 'multiclass-ce' loss"),
        ({"betas": (0.9, 1.5)}, r"betas"),
        ({"batch_size": "many"}, r"wrong type"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(changes)


def test_unknown_preset_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'dgc-paper'"):
        resolve_config("dgc-papr")
    bad = tmp_path / "run.txt"
    bad.write_text("lr: 1")
    with pytest.raises(ConfigError, match=r"expected .yaml, .yml or .json"):
        load_config_file(bad)
    broken = tmp_path / "run.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not valid JSON"):
        load_config_file(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping"):
        load_config_file(listing)


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = resolve_config(
        "chexnet-paper", overrides={"dataset_options": {"official_split": False}, "out_dir": str(tmp_path)}
    )
    path = save_config_yaml(config, tmp_path / "config.yaml")
    assert resolve_config(config_file=path) == config
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind
