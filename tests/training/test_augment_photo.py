"""The photographic augmentation (CheXphoto's transformations) and the ``field`` preset.

A real phantom, preprocessed with the real PreprocessSpec, goes through each transformation; the
checks are on what the transformation must do to the pixels (a reflection brightens a spot, blur
removes detail, noise adds it, tilt moves the film's edge) and on what the training loop relies on
(shape, dtype, the normalised range, reproducibility from torch's seed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_core.preprocess import PreprocessSpec, preprocess
from training import augment_photo
from training.augment import build_augmentation
from training.config import AUGMENTATIONS, PRESETS, TrainConfig, preset_values
from training.data.phantom import render_phantom

SPEC = PreprocessSpec(input_size=64, resize_to=64)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    grey = render_phantom(("Nodule",), seed=2, size=128).image.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(preprocess(grey, SPEC)))


def to01(x: torch.Tensor, spec: PreprocessSpec = SPEC) -> torch.Tensor:
    mean = torch.tensor(spec.mean).reshape(-1, 1, 1)
    std = torch.tensor(spec.std).reshape(-1, 1, 1)
    return x * std + mean


def detail(x: torch.Tensor) -> float:
    """Mean squared Laplacian of the first channel: fine detail (and noise)."""
    g = x[0]
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


def test_the_preprocessed_phantom_is_what_the_augmentation_expects(image: torch.Tensor) -> None:
    x01 = to01(image)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert float(x01.min()) >= -1e-5 and float(x01.max()) <= 1 + 1e-5
    assert torch.allclose(x01[0], x01[1], atol=1e-5) and torch.allclose(x01[0], x01[2], atol=1e-5)


def test_each_transformation_does_what_it_says(image: torch.Tensor) -> None:
    grey = to01(image)[:1]
    torch.manual_seed(0)
    glared = augment_photo.glare(grey)
    assert float((glared - grey).max()) > 0.1 and float((glared - grey).min()) >= 0.0
    blurred = augment_photo.blur(grey)
    assert detail(blurred) < 0.7 * detail(grey)
    noisy = augment_photo.noise(grey)
    assert detail(noisy) > detail(grey) and float((noisy - grey).abs().mean()) > 1e-3
    fringed = augment_photo.moire(grey)
    ratio = fringed / grey.clamp(min=1e-3)
    assert float(ratio[grey > 0.2].std()) > 0.01  # a multiplicative pattern
    tilted = augment_photo.tilt(torch.ones(1, 64, 64))
    assert float(tilted.min()) == 0.0 and float(tilted.mean()) < 0.99  # the film's edge moved in somewhere
    shifted = augment_photo.brightness_contrast(grey)
    assert not torch.allclose(shifted, grey)
    for out in (glared, blurred, noisy, fringed, tilted, shifted):
        assert out.shape == (1, 64, 64) and out.dtype == torch.float32


@pytest.mark.parametrize("name", ["photo", "hflip-photo"])
def test_augmentation_keeps_shape_dtype_range_and_is_reproducible(image: torch.Tensor, name: str) -> None:
    aug = build_augmentation(name, SPEC)
    torch.manual_seed(3)
    outs = [aug(image) for _ in range(30)]
    lo = ((0.0 - torch.tensor(SPEC.mean)) / torch.tensor(SPEC.std)).reshape(-1, 1, 1)
    hi = ((1.0 - torch.tensor(SPEC.mean)) / torch.tensor(SPEC.std)).reshape(-1, 1, 1)
    for out in outs:
        assert out.shape == image.shape and out.dtype == image.dtype
        assert bool((out >= lo - 1e-4).all()) and bool((out <= hi + 1e-4).all())
        x01 = to01(out)
        assert torch.allclose(x01[0], x01[1], atol=1e-4) and torch.allclose(x01[0], x01[2], atol=1e-4)
    changed = sum(
        not torch.allclose(o, image) and not torch.allclose(o, torch.flip(image, (-1,))) for o in outs
    )
    assert changed >= 20  # P(no transformation) = 0.6 ** 6 per draw
    torch.manual_seed(3)
    assert torch.equal(aug(image), outs[0])


def test_range_normalisation_is_undone_and_redone(image: torch.Tensor) -> None:
    spec = PreprocessSpec(input_size=64, resize_to=64, normalization="range", value_range=(-1.0, 1.0))
    x = to01(image) * 2 - 1
    torch.manual_seed(5)
    outs = [build_augmentation("photo", spec)(x) for _ in range(10)]
    assert all(float(o.min()) >= -1 - 1e-5 and float(o.max()) <= 1 + 1e-5 for o in outs)
    assert any(not torch.allclose(o, x) for o in outs)


def test_field_preset_turns_the_photo_augmentation_on_and_paper_presets_do_not() -> None:
    assert "photo" in AUGMENTATIONS and "hflip-photo" in AUGMENTATIONS
    field = preset_values("field")
    assert field["augment"] == "hflip-photo"
    config = TrainConfig.from_dict({**field, "out_dir": "runs/x", "data_root": "data"})
    assert config.augment == "hflip-photo"
    for name in PRESETS:
        if name.endswith("-paper"):
            assert "photo" not in PRESETS[name].get("augment", "none"), name
    assert {"chexnet-paper", "dgc-paper", "field"} <= set(PRESETS)


def test_unknown_augmentation_lists_the_choices() -> None:
    from training.augment import Augmentation
    from training.config import ConfigError

    with pytest.raises(ConfigError, match="'hflip-photo'"):
        Augmentation("photograph", SPEC)
