"""Checkpoints: atomic save, validated load, RNG capture/restore, rebuilding the model."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_core.labels import CHESTXRAY14_LABELS
from cxr_core.preprocess import PreprocessSpec
from training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_model,
    restore_rng_state,
    save_checkpoint,
)
from training.models import ModelConfig, build_model


def _payload(model_config: ModelConfig, model: torch.nn.Module) -> dict:
    return {
        "model_config": model_config.to_dict(),
        "preprocess": PreprocessSpec(input_size=32, resize_to=36).to_dict(),
        "labels": list(CHESTXRAY14_LABELS),
        "model_state": model.state_dict(),
        "epoch": 3,
        "global_step": 120,
        "run_config": {"lr": 1e-3},
        "operating_points": [0.25] * 14,
        "rng_state": capture_rng_state(),
        "metrics_history": [{"epoch": 1, "val": {"mean_auc": float("nan")}}],
        "best_metric": 0.75,
        "best_epoch": 2,
    }


@pytest.fixture()
def tiny() -> tuple[ModelConfig, torch.nn.Module]:
    torch.manual_seed(0)
    config = ModelConfig(architecture="dgc", encoder="tiny-densenet", latent_dim=16)
    return config, build_model(config)


def test_round_trip_rebuilds_the_same_model(tmp_path: Path, tiny) -> None:
    config, model = tiny
    path = save_checkpoint(tmp_path / "run" / "best.pt", _payload(config, model))
    ckpt = load_checkpoint(path)
    assert ckpt.model_config == config and ckpt.spec.input_size == 32
    assert ckpt.labels == CHESTXRAY14_LABELS and ckpt.epoch == 3 and ckpt.global_step == 120
    assert ckpt.operating_points == (0.25,) * 14 and ckpt.best_epoch == 2
    assert ckpt.version != "" and ckpt.state["format"] == 1
    rebuilt, _ = load_model(path)
    assert not rebuilt.training
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    assert torch.equal(rebuilt(x), model(x))
    # Only plain types and tensors: the file loads with weights_only=True.
    torch.load(path, weights_only=True)


def test_failed_save_keeps_the_previous_file(tmp_path: Path, tiny) -> None:
    config, model = tiny
    path = save_checkpoint(tmp_path / "last.pt", _payload(config, model))
    before = path.read_bytes()
    bad = _payload(config, model)
    bad["run_config"] = {"callback": lambda: None}  # cannot be pickled
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises, the old file must survive
        save_checkpoint(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left
    missing = _payload(config, model)
    del missing["labels"]
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['labels'\]"):
        save_checkpoint(tmp_path / "x.pt", missing)


def test_bad_files_are_refused_by_name(tmp_path: Path, tiny) -> None:
    config, model = tiny
    good = save_checkpoint(tmp_path / "good.pt", _payload(config, model))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"truncated\.pt cannot be read"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match=r"nothere\.pt does not exist"):
        load_checkpoint(tmp_path / "nothere.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"lacks key\(s\)"):
        load_checkpoint(tmp_path / "other.pt")
    wrong = _payload(config, model)
    wrong["labels"] = wrong["labels"][:5]
    save_checkpoint(tmp_path / "wrong.pt", wrong)
    with pytest.raises(CheckpointError, match=r"5 labels for a model with num_classes=14"):
        load_checkpoint(tmp_path / "wrong.pt")
    bad_config = _payload(config, model)
    bad_config["model_config"]["architecture"] = "dgcc"
    save_checkpoint(tmp_path / "badcfg.pt", bad_config)
    with pytest.raises(CheckpointError, match=r"badcfg\.pt.*did you mean 'dgc'"):
        load_checkpoint(tmp_path / "badcfg.pt")


def test_rng_state_restores_every_stream(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state({"loader": generator})
    # Through a file, as a resumed run reads it.
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)

    def draw() -> tuple:
        return (
            random.random(),
            float(np.random.rand()),
            float(torch.rand(())),
            float(torch.randn(3).sum()),
            int(torch.randint(0, 10**6, (1,), generator=generator)),
        )

    first = draw()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    generator.manual_seed(99)
    assert draw() != first
    restore_rng_state(loaded, {"loader": generator})
    assert draw() == first
