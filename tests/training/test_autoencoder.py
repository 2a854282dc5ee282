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


def _shapes(count: int = 12) -> np.ndarray:
    """Images that differ by more than noise: a bright disc at a different place in each."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:64]
    images = np.full((count, 1, 64, 64), 0.2, np.float32)
    for image in images:
        cy, cx = rng.integers(16, 48, size=2)
        image[0][(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 0.8
    return images


def test_the_report_says_how_much_of_the_mean_images_error_the_fit_removes() -> None:
    images = _shapes()
    model, report = fit_autoencoder(images, epochs=30, seed=0, batch_size=4)
    mean = np.clip(images.mean(axis=0, keepdims=True), 0.02, 0.98)
    assert report.prior_loss == pytest.approx(float(((mean - images) ** 2).mean()), rel=1e-4)
    fitted = float(((reconstruct(model, images) - images) ** 2).mean())
    assert report.explained == pytest.approx(1.0 - fitted / report.prior_loss, abs=1e-4)
    assert 0.1 < report.explained < 1.0  # it learned where the disc is, not only the mean image


def test_the_export_fits_again_from_the_next_seed_when_a_fit_removes_too_little() -> None:
    from quantize.autoencoder_export import fit_learned_autoencoder

    images = _shapes()
    shares: list[float] = []
    for seed in range(8):  # until a seed's successor beats it
        shares.append(fit_autoencoder(images, epochs=30, seed=seed)[1].explained)
        if len(shares) > 1 and shares[-2] < shares[-1]:
            break
    first = len(shares) - 2
    _, kept, tried = fit_learned_autoencoder(images, 30, first, attempts=2, min_explained=shares[first + 1])
    assert [fit.seed for fit in tried] == [first, first + 1] and kept is tried[-1]
    assert kept.explained == shares[first + 1] and tried[0].explained == shares[first]


def test_the_export_gives_up_when_every_fit_removes_too_little() -> None:
    from quantize.autoencoder_export import fit_learned_autoencoder

    # one pattern plus independent noise: nothing but the mean image to learn
    stalled = r"in 2 fits of 3 epochs \(seed 5: .*seed 6: .*--autoencoder-seed 7"
    with pytest.raises(AutoencoderFitError, match=stalled):
        fit_learned_autoencoder(_images(), 3, 5, attempts=2)
    with pytest.raises(AutoencoderFitError, match="attempts=0"):
        fit_learned_autoencoder(_images(), 3, 5, attempts=0)
    with pytest.raises(AutoencoderFitError, match="seed=-1"):
        fit_learned_autoencoder(_images(), 3, -1)
