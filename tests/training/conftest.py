"""Shared fixtures of the training tests: one small phantom set per session, tiny run configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.config import TrainConfig

#: Phantom images in the session set and their side in pixels.
PHANTOM_IMAGES = 96
PHANTOM_SIZE = 64


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real phantom dataset in the ChestX-ray14 layout (PNG files, CSV, official lists)."""
    from training.data.synthetic import generate_chestxray14

    root = tmp_path_factory.mktemp("phantoms")
    generate_chestxray14(
        root, n_images=PHANTOM_IMAGES, image_size=PHANTOM_SIZE, seed=0, progress=False, overwrite=True
    )
    return root


@pytest.fixture(scope="session")
def tiny_config(phantom_root: Path) -> Callable[..., TrainConfig]:
    """Factory of a tiny, fast, deterministic CPU run config on the phantom set."""

    def make(out_dir: Path, **changes: Any) -> TrainConfig:
        values: dict[str, Any] = {
            "dataset": "synthetic",
            "data_root": str(phantom_root),
            "out_dir": str(out_dir),
            "architecture": "chexnet",
            "encoder": "tiny-densenet",
            "latent_dim": 16,
            "input_size": 32,
            "resize_to": 36,
            "batch_size": 8,
            "epochs": 1,
            "lr": 1e-3,
            "val_fraction": 0.25,
            "num_workers": 0,
            "device": "cpu",
            "deterministic": True,
            "progress": False,
            "log_every": 0,
            # One intra-op thread: tiny models gain nothing from more, and on a shared machine two
            # spinning OpenMP threads next to a busy core made a 2 s run take 27 s.
            "threads": 1,
        }
        values.update(changes)
        return TrainConfig(**values)

    return make
