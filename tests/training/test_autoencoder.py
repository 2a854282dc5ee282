"""The gate's autoencoder: a deterministic fit for a seed, and settings it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.autoencoder import AutoencoderFitError, ConvAutoencoder, fit_autoencoder, reconstruct


def _images(count: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    base = 0.5 + 0.3 * np.sin(5 * xx) * np.cos(3 * yy)
    return np.clip(base + 0.05 * rng.standard_normal((count, 1, 64, 64)), 0, 1).astype(np.float32)


def test_fitting_is_deterministic_for_a_seed() -> None:
    images = _images()
    threads = torch.get_num_threads()
    a, report = fit_autoencoder(images, epochs=2, seed=3, batch_size=4)
    b, _ = fit_autoencoder(images.copy(), epochs=2, seed=3, batch_size=4)
    c, _ = fit_autoencoder(images, epochs=2, seed=4, batch_size=4)
    assert torch.get_num_threads() == threads  # restored
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    assert report.images == 12 and report.epochs == 2 and np.isfinite(report.final_loss)
    out = reconstruct(a, images)
    assert out.shape == images.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert not a.training


def test_the_model_shape_and_refused_settings() -> None:
    model = ConvAutoencoder()
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    with pytest.raises(AutoencoderFitError, match="expected \\(N, 1, s, s\\)"):
        fit_autoencoder(np.zeros((4, 3, 64, 64), np.float32))
    with pytest.raises(AutoencoderFitError, match="at least 2"):
        fit_autoencoder(np.zeros((1, 1, 64, 64), np.float32))
    with pytest.raises(AutoencoderFitError, match="epochs=0"):
        fit_autoencoder(_images(), epochs=0)
