"""Resuming a killed run gives bit-for-bit the result of an uninterrupted run (CPU, deterministic).

The DGC's sampling layer draws eps from torch's generator in train mode, augmentation draws
flips and rotation angles, dropout draws masks: all of them must come back from the checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint
from training.config import ConfigError
from training.resume import config_for_resume
from training.trainer import run_training

TIMING_KEYS = ("seconds", "train_seconds", "images_per_s")


def _without_timing(history: list[dict]) -> str:
    """The history minus wall-clock fields, as JSON text (NaN AUCs compare equal as text)."""
    return json.dumps([{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history], sort_keys=True)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_a_kill_equals_the_uninterrupted_run(tiny_config, tmp_path: Path) -> None:
    settings = {"architecture": "dgc", "epochs": 2, "augment": "hflip-rotate", "dropout": 0.2}
    straight = run_training(tiny_config(tmp_path / "straight", **settings))

    # "Kill" after epoch 1: the process ends with last.pt of epoch 1 on disk.
    killed = run_training(tiny_config(tmp_path / "killed", **settings), stop_after_epochs=1)
    after_kill = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert len(killed.history) == 1 and after_kill.epoch == 1
    epoch1 = after_kill.model_state
    # A fresh process has other RNG states; the checkpoint must put them back.
    random.seed(123)
    np.random.seed(456)
    torch.manual_seed(789)
    config = config_for_resume(tmp_path / "killed")
    resumed = run_training(config, resume=tmp_path / "killed")

    assert len(resumed.history) == 2
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    _assert_same_state(a.model_state, b.model_state)
    assert _without_timing(a.metrics_history) == _without_timing(b.metrics_history)
    assert a.operating_points == b.operating_points and a.global_step == b.global_step
    assert (a.best_epoch, a.best_metric) == (b.best_epoch, b.best_metric)
    for (ka, va), (kb, vb) in zip(
        a.optimizer_state["state"].items(), b.optimizer_state["state"].items(), strict=True
    ):
        assert ka == kb
        for name in va:
            assert torch.equal(torch.as_tensor(va[name]), torch.as_tensor(vb[name])), (ka, name)
    # Epoch 2 really moved the weights (the equality above is not trivially true).
    assert any(not torch.equal(epoch1[k], b.model_state[k]) for k in epoch1 if epoch1[k].is_floating_point())


def test_resume_checks_the_model_and_the_file(tiny_config, tmp_path: Path) -> None:
    run_training(tiny_config(tmp_path / "run"), stop_after_epochs=1)
    with pytest.raises(ConfigError, match=r"model config .* differs"):
        run_training(tiny_config(tmp_path / "run", architecture="dgc-baseline"), resume=tmp_path / "run")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken/last\.pt cannot be read"):
        config_for_resume(broken)
    with pytest.raises(ConfigError, match=r"no such checkpoint"):
        config_for_resume(tmp_path / "absent")
