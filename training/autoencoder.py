"""The input gate's small convolutional autoencoder (Chester-style) and its deterministic fit (torch, CPU).

:class:`ConvAutoencoder` redraws a ``(N, 1, 64, 64)`` grey image in [0, 1]: three stride-2
convolutions down to an 8 x 8 x 8 code (512 numbers for 4,096 pixels), then three nearest-neighbour
upsamplings each followed by a convolution (no transposed convolutions: Resize + Conv convert to
ONNX, ONNX INT8 and TFLite alike), and a sigmoid. No BatchNorm, so the graph is the same in
training and at inference.

:func:`fit_autoencoder` trains it on the classifier's training images only, for a fixed number
of epochs, on CPU with one thread and a seeded generator: the same images and seed give the same
weights bit for bit. The device side (:mod:`cxr_core.autoencoder_gate`) never imports this.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)

#: Epochs of the fit. On the demo's 442 training phantoms (64 px) a fit of 60 epochs left the threshold
#: further beyond the lowest SSIM of 500 fresh in-distribution phantoms than one of 20 for every seed
#: tried (docs/input-gate.md, "The autoencoder's fit"), at 34-40 s of one core instead of 12-14 s.
DEFAULT_EPOCHS = 60
DEFAULT_SEED = 0
DEFAULT_BATCH = 16
DEFAULT_LEARNING_RATE = 3e-3


class AutoencoderFitError(CxrEdgeError, ValueError):
    """The autoencoder cannot be fitted: no images, images of another shape, or invalid settings."""


class ConvAutoencoder(nn.Module):
    """Grey ``(N, 1, s, s)`` in [0, 1] -> its reconstruction, same shape (``s`` divisible by 16).

    ``widths`` are the channels after each stride-2 convolution (the last is the code): the default
    squeezes a 64 px image (4,096 pixels) into a 4 x 4 x 8 code (128 numbers), so the decoder can
    only draw what the training images have in common, and a flat or foreign image is redrawn as
    something else.
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 16, 16), code: int = 32, size: int = 64) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.code = code
        cells = (size // 2 ** len(widths)) ** 2 * widths[-1]
        self._grid = (widths[-1], size // 2 ** len(widths), size // 2 ** len(widths))
        self.bottleneck = (
            nn.Sequential(nn.Flatten(), nn.Linear(cells, code), nn.Linear(code, cells), nn.ReLU(inplace=True))
            if code
            else nn.Identity()
        )
        encoder: list[nn.Module] = []
        channels = 1
        for width in self.widths:
            encoder += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels = width
        decoder: list[nn.Module] = []
        for width in (*reversed(self.widths[:-1]), self.widths[0]):
            decoder += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, width, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
            channels = width
        decoder += [nn.Conv2d(channels, 1, 3, padding=1)]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        #: The logit of the training images' mean image: the decoder draws the difference from it.
        self.register_buffer("prior", torch.zeros(1, 1, size, size))

    @property
    def stride(self) -> int:
        return 2 ** len(self.widths)

    def forward(self, x: Tensor) -> Tensor:
        code = self.encoder(x)
        if self.code:
            code = self.bottleneck(code).reshape(-1, *self._grid)
        return torch.sigmoid(self.decoder(code) + self.prior)

    def set_prior(self, images: Tensor) -> None:
        """Start from the mean of ``images`` (N, 1, s, s): a flat or foreign image is redrawn chest-like."""
        mean = images.mean(dim=0, keepdim=True).clamp(0.02, 0.98)
        self.prior.copy_(torch.log(mean / (1 - mean)))


@dataclass(frozen=True)
class FitReport:
    """What the fit did: images, epochs, seed, the last epoch's mean loss, how much of the images it
    learned to redraw, and the wall time."""

    images: int
    epochs: int
    seed: int
    final_loss: float
    seconds: float
    #: CPU time of the fit (one thread): its wall time on an otherwise idle core.
    cpu_seconds: float
    #: Mean squared error of drawing every training image as their mean image (the decoder's start).
    prior_loss: float = float("nan")
    #: Share of that error the fitted model removes (1 - its own error / ``prior_loss``, evaluated
    #: after the fit): about 0 when the fit stalled at drawing the mean image whatever the input.
    explained: float = float("nan")


def fit_autoencoder(
    images: NDArray[np.float32],
    epochs: int = DEFAULT_EPOCHS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> tuple[ConvAutoencoder, FitReport]:
    """Train a :class:`ConvAutoencoder` on ``images`` ``(N, 1, s, s)`` in [0, 1]; return it (eval mode).

    Deterministic for a seed: the weights are initialised and the batches shuffled from ``seed``,
    on CPU with one thread (the thread count changes the order of float sums), restored afterwards.
    Mean squared error, Adam.
    """
    data = np.asarray(images, dtype=np.float32)
    if data.ndim != 4 or data.shape[1] != 1 or data.shape[2] != data.shape[3] or data.shape[2] % 16:
        raise AutoencoderFitError(
            f"autoencoder training images of shape {data.shape}; expected (N, 1, s, s) with s divisible by 16"
        )
    if len(data) < 2:
        raise AutoencoderFitError(f"{len(data)} autoencoder training image(s); expected at least 2")
    if epochs < 1 or batch_size < 1 or not learning_rate > 0:
        raise AutoencoderFitError(
            f"epochs={epochs}, batch_size={batch_size}, learning_rate={learning_rate}; "
            "expected positive values"
        )
    threads = torch.get_num_threads()
    start = time.perf_counter()
    cpu_start = time.process_time()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ConvAutoencoder(size=data.shape[2])
        tensor = torch.from_numpy(np.ascontiguousarray(data))
        model.set_prior(tensor)
        optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
        loss_fn = nn.MSELoss()
        model.train()
        last = float("nan")
        for _ in range(epochs):
            order = torch.randperm(len(tensor), generator=generator)
            total = 0.0
            for first in range(0, len(tensor), batch_size):
                batch = tensor[order[first : first + batch_size]]
                optimiser.zero_grad()
                loss = loss_fn(model(batch), batch)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            last = total / len(tensor)
        model.eval()
        # the error of the mean image the model starts from, and of the fitted model
        prior_loss = float(np.mean((torch.sigmoid(model.prior).detach().numpy() - data) ** 2))
        fitted_loss = float(np.mean((reconstruct(model, data) - data) ** 2))
    finally:
        torch.set_num_threads(threads)
    explained = 1.0 - fitted_loss / prior_loss if prior_loss > 0 else 0.0
    report = FitReport(
        len(data),
        epochs,
        seed,
        last,
        time.perf_counter() - start,
        time.process_time() - cpu_start,
        prior_loss,
        explained,
    )
    logger.info(
        "autoencoder fitted on %d images, %d epochs (seed %d): loss %.5f, %.0f%% of the error of the mean "
        "image removed, in %.1f s (%.1f s of CPU)",
        report.images,
        epochs,
        seed,
        last,
        100 * explained,
        report.seconds,
        report.cpu_seconds,
    )
    return model, report


def reconstruct(model: nn.Module, images: NDArray[np.float32], batch: int = 64) -> NDArray[np.float32]:
    """PyTorch reconstructions of ``images`` ``(N, 1, s, s)`` (the FP32 reference)."""
    parts = []
    with torch.no_grad():
        for first in range(0, len(images), batch):
            parts.append(model(torch.from_numpy(np.ascontiguousarray(images[first : first + batch]))).numpy())
    return np.concatenate(parts)
