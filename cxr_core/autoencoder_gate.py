"""The autoencoder signal of the learned gate: can a model of the training images redraw this one? (numpy)

Chester-style (Cohen et al.): a small convolutional autoencoder, trained at export on the
classifier's **training split only**, redraws a downscaled grey copy of the image; an image unlike
the training images is redrawn badly, so the structural similarity (SSIM) between the image and its
reconstruction is low. Each classifier model file of the bundle runs with the autoencoder file of
its own runtime and precision (FP32 classifier -> FP32 autoencoder, INT8 -> INT8), and has its own
SSIM threshold, set on the held-out validation images run through that very autoencoder file at the
bundle's acceptance (99% by default). An image whose SSIM falls below it is refused.

The autoencoder's input (:func:`autoencoder_input`) is derived from the **model input batch** the
classifier gets (preprocessed with the bundle's spec): normalisation undone, channels averaged,
area-resized to ``input_size`` (64 px). The exporter derives its training, calibration and
validation inputs with this same function from the same preprocessed tensors, so the device and the
export see identical pixels.

numpy + Pillow + the project's runtime backends only: no torch here.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.bundle.schema import (
    AUTOENCODER_SIGNAL,
    RECONSTRUCTION_ROLE,
    AutoencoderFile,
    AutoencoderInfo,
    ModelEntry,
)
from cxr_core.errors import CxrEdgeError
from cxr_core.preprocess import PreprocessSpec

if TYPE_CHECKING:
    from cxr_core.bundle import Bundle
    from cxr_core.gate_signals import SignalDecision
    from cxr_core.imaging import DecodedImage
    from cxr_core.runtime import Backend

logger = logging.getLogger(__name__)

SIGNAL = AUTOENCODER_SIGNAL
#: Side of the autoencoder's square grey input (the issue allows 64-128 px).
DEFAULT_INPUT_SIZE = 64
#: How the input is made, recorded in the manifest.
INPUT_FROM = (
    "the classifier's model input (preprocessed with the bundle's spec): normalisation undone, "
    "channels averaged, clipped to [0, 1], area-resized (Pillow BOX) to input_size"
)
#: Wang et al. (2004): an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, range L = 1.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Gaussian smoothing (px at input_size) of image and reconstruction before SSIM.
DEFAULT_SMOOTHING = 1.0
#: Threads of the autoencoder's runtime: it is tiny; one thread leaves the others to the classifier.
AUTOENCODER_THREADS = 1


class AutoencoderGateError(CxrEdgeError, ValueError):
    """The autoencoder gate cannot be applied: an input of the wrong shape, or images SSIM cannot compare."""


# ----------------------------------------------------------------------------- SSIM


def _gaussian_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> NDArray[np.float64]:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    window = np.exp(-(x**2) / (2.0 * sigma**2))
    return window / window.sum()


@functools.lru_cache(maxsize=16)
def _filter_matrix(
    size: int, sigma: float, radius: int, pad: bool, dtype: str = "float64"
) -> NDArray[np.floating]:
    """The 1-D Gaussian filter along an axis of ``size`` as a matrix: ``'valid'`` positions only, or
    (``pad``) every position with the edges mirrored (``d c b a | a b c d``, scipy's ``reflect``)."""
    if dtype != "float64":
        single = _filter_matrix(size, sigma, radius, pad).astype(dtype)
        single.setflags(write=False)
        return single
    window = _gaussian_window(sigma, radius)
    positions = size if pad else size - 2 * radius
    matrix = np.zeros((positions, size))
    for row in range(positions):
        for offset, weight in enumerate(window):
            column = row + offset - (radius if pad else 0)
            if column < 0:
                column = -column - 1
            elif column >= size:
                column = 2 * size - column - 1
            matrix[row, column] += weight
    matrix.setflags(write=False)
    return matrix


def _filter(images: NDArray[np.floating], sigma: float, radius: int, pad: bool) -> NDArray[np.floating]:
    """Separable Gaussian filter of (N, H, W) images as two small matrix products (fast on a phone),
    in the images' own precision (float64 or float32)."""
    dtype = str(images.dtype)
    rows = _filter_matrix(images.shape[1], sigma, radius, pad, dtype)
    columns = _filter_matrix(images.shape[2], sigma, radius, pad, dtype)
    return rows @ images @ columns.T


def ssim(
    images: NDArray[np.floating],
    references: NDArray[np.floating],
    data_range: float = 1.0,
    precision: type[np.floating] = np.float64,
) -> NDArray[np.float64]:
    """Mean SSIM of each image against its reference (Wang et al. 2004), ``(N,)`` for ``(N, H, W)``.

    Gaussian window (sigma 1.5, 11 x 11), K1 = 0.01, K2 = 0.03, statistics without the sample
    correction, averaged over the window positions fully inside the image (as scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
    2-D inputs give a 0-d result. Symmetric; 1 for identical images. ``precision`` is the float type
    the filters run in (the mean is taken in float64 either way).
    """
    x = np.asarray(images, dtype=precision)
    y = np.asarray(references, dtype=precision)
    single = x.ndim == 2
    if single:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.ndim != 3:
        raise AutoencoderGateError(
            f"SSIM of images of shape {np.shape(images)} against {np.shape(references)}; expected two "
            "equal shapes (H, W) or (N, H, W)"
        )
    if min(x.shape[1:]) < 2 * SSIM_RADIUS + 1:
        raise AutoencoderGateError(
            f"SSIM of {x.shape[1]} x {x.shape[2]} images; expected at least {2 * SSIM_RADIUS + 1} px a side"
        )
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    count = len(x)
    moments = _filter(np.concatenate([x, y, x * x, y * y, x * y]), SSIM_SIGMA, SSIM_RADIUS, pad=False)
    mu_x, mu_y, xx, yy, xy = (moments[i * count : (i + 1) * count] for i in range(5))
    # each product once (doubling is exact, so 2 * (mu_x * mu_y) is 2 * mu_x * mu_y bit for bit)
    mu_xx, mu_yy, mu_xy = mu_x**2, mu_y**2, mu_x * mu_y
    var_x = xx - mu_xx
    var_y = yy - mu_yy
    cov = xy - mu_xy
    numerator = (2 * mu_xy + c1) * (2 * cov + c2)
    denominator = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    values = (numerator / denominator).mean(axis=(1, 2), dtype=np.float64)
    return values[0] if single else values


def smooth(
    images: NDArray[np.floating], sigma: float, precision: type[np.floating] = np.float64
) -> NDArray[np.floating]:
    """Gaussian blur of ``(N, H, W)`` images (radius ``4 sigma``, edges mirrored); ``sigma`` 0: unchanged.

    The same as ``scipy.ndimage.gaussian_filter(image, sigma)`` per image (mode ``reflect``).
    """
    x = np.asarray(images, dtype=precision)
    if sigma <= 0:
        return x
    return _filter(x, float(sigma), int(4.0 * sigma + 0.5), pad=True)


#: The float type the gate's score is computed in. The autoencoder's images are float32 in [0, 1];
#: float64 filters gave the same SSIM (to 2.3e-5 over 260 phantoms and corpus images, median 9e-7)
#: in 2.6x the time, 0.48-0.61 against 0.18-0.23 ms per 64 px image, work that runs beside the
#: classifier and slows it (docs/input-gate.md, "Gate cost").
SCORE_PRECISION = np.float32


def reconstruction_score(
    inputs: NDArray[np.floating], reconstructions: NDArray[np.floating], smoothing: float
) -> NDArray[np.float64]:
    """SSIM of each reconstruction against its input ``(N, H, W)``, both smoothed by ``smoothing`` px.

    The smoothing (1 px at 64 px) discounts the film grain that no small code can redraw, so the score
    measures whether the autoencoder redrew the image's structure; measured on the demo phantoms it
    widened the gap between the validation images and a flat or noise image (docs/input-gate.md).
    Computed in :data:`SCORE_PRECISION` at export and on the device alike.
    """
    recon = np.clip(np.asarray(reconstructions, dtype=SCORE_PRECISION), 0.0, 1.0)
    inputs = np.asarray(inputs, dtype=SCORE_PRECISION)
    both = smooth(np.concatenate([recon, inputs]), smoothing, SCORE_PRECISION)
    return ssim(both[: len(recon)], both[len(recon) :], precision=SCORE_PRECISION)


# ----------------------------------------------------------------------------- the input


def _denormalized(array: NDArray[np.float32], spec: PreprocessSpec) -> NDArray[np.float32]:
    """An ``(N, C, H, W)`` batch with ``spec``'s normalisation undone: ``x * std + mean`` or the
    ``value_range`` mapping, per channel (a new array)."""
    if spec.normalization == "mean_std":
        x = array * np.asarray(spec.std, dtype=np.float32)[None, :, None, None]
        x += np.asarray(spec.mean, dtype=np.float32)[None, :, None, None]
        return x
    low, high = spec.value_range
    x = array - np.float32(low)
    x /= np.float32(high - low)
    return x


def _channel_mean(array: NDArray[np.float32]) -> NDArray[np.float32]:
    """``array.mean(axis=1)`` of an ``(N, C, H, W)`` float32 batch, bit for bit (numpy adds the
    channels in order and divides by their count), in a single buffer: 0.06 against 0.10 ms for
    the autoencoder's whole input from a 128 px batch, work that runs beside the classifier."""
    total = array[:, 0].copy() if array.shape[1] == 1 else array[:, 0] + array[:, 1]
    for channel in range(2, array.shape[1]):
        total += array[:, channel]
    total /= np.float32(array.shape[1])
    return total


def autoencoder_input(
    batch: NDArray[np.floating], spec: PreprocessSpec, size: int = DEFAULT_INPUT_SIZE
) -> NDArray[np.float32]:
    """``(N, 1, size, size)`` float32 in [0, 1] from a model input batch preprocessed with ``spec``.

    The batch is in ``spec.layout`` (``(N, C, H, W)`` or ``(N, H, W, C)``). Normalisation is undone
    (``x * std + mean`` or the ``value_range`` mapping), the channels (grey replicated) averaged,
    the result clipped to [0, 1] and area-resized. Used at export and on the device alike.
    """
    array = np.asarray(batch, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    expected = (spec.channels, spec.input_size, spec.input_size)
    if spec.layout == "NHWC":
        expected = (spec.input_size, spec.input_size, spec.channels)
    if array.ndim != 4 or array.shape[1:] != expected:
        raise AutoencoderGateError(
            f"autoencoder input from a batch of shape {np.shape(batch)}; expected (N, "
            f"{', '.join(map(str, expected))}) preprocessed with the bundle's spec ({spec.layout})"
        )
    if spec.layout == "NHWC":
        array = np.transpose(array, (0, 3, 1, 2))
    grey = _channel_mean(_denormalized(array, spec))
    np.clip(grey, 0.0, 1.0, out=grey)
    if grey.shape[1:] == (2 * size, 2 * size):
        # Pillow's BOX filter at exactly half size is the 2 x 2 block mean: four strided sums give it
        # (equal up to float32 rounding) without a Pillow round trip per image.
        grey = (grey[:, 0::2, 0::2] + grey[:, 1::2, 0::2] + grey[:, 0::2, 1::2] + grey[:, 1::2, 1::2]) * 0.25
    elif grey.shape[1:] != (size, size):
        grey = np.stack(
            [
                np.asarray(
                    Image.fromarray(plane).resize((size, size), Image.Resampling.BOX), dtype=np.float32
                )
                for plane in grey
            ]
        )
    return np.ascontiguousarray(np.clip(grey, 0.0, 1.0)[:, None], dtype=np.float32)


# ----------------------------------------------------------------------------- running the autoencoder


def file_entry(info: AutoencoderFile, sha256: str = "") -> ModelEntry:
    """A model entry for an autoencoder file, so the runtime layer can open and check it."""
    return ModelEntry(
        name=f"autoencoder-{info.format}",
        file=info.file,
        format=info.format,
        precision=info.precision,
        runtime=info.runtime,
        sha256=sha256,
        inputs=(info.input,),
        outputs=(info.output,),
    )


def open_autoencoder(
    path: Any, info: AutoencoderFile, runtime: str | None = None, threads: int = AUTOENCODER_THREADS
) -> Backend:
    """Open one autoencoder file with the project's runtime backends (ONNX Runtime or LiteRT)."""
    from cxr_core.runtime import open_model
    from cxr_core.runtime.signature import ModelSignature

    entry = file_entry(info)
    signature = ModelSignature(
        name=entry.name,
        format=info.format,
        runtime=info.runtime,
        input=info.input,
        outputs={RECONSTRUCTION_ROLE: info.output},
    )
    return open_model(path, entry, runtime=runtime, threads=threads, signature=signature)


def reconstruction_ssim(
    backend: Backend, inputs: NDArray[np.float32], smoothing: float = DEFAULT_SMOOTHING
) -> NDArray[np.float64]:
    """The score of each ``(N, 1, s, s)`` input: :func:`reconstruction_score` of the autoencoder's output."""
    reconstruction = backend(inputs)[RECONSTRUCTION_ROLE]
    return reconstruction_score(inputs[:, 0], reconstruction[:, 0], smoothing)


def autoencoder_format_for(info: AutoencoderInfo, model_name: str) -> str | None:
    """The autoencoder format the classifier model ``model_name`` runs with, or None."""
    return info.models.get(model_name)


def missing_autoencoder_warning(bundle: Bundle, model_name: str) -> str | None:
    """Why ``model_name`` runs without the autoencoder signal although the bundle has one (else None)."""
    info = bundle.manifest.autoencoder
    if info is None or model_name in info.models:
        return None
    runtime = bundle.model(model_name).runtime
    return (
        f"the bundle's autoencoder gate has no file for {runtime} (it has {sorted(info.files)}): model "
        f"{model_name!r} runs without the reconstruction check; the other gate signals still apply"
    )


@dataclass
class AutoencoderSignal:
    """The reconstruction SSIM as a gate signal (:class:`cxr_core.gate_signals.ImageSignal`)."""

    backend: Backend
    threshold: float
    acceptance: float
    spec: PreprocessSpec
    input_size: int
    smoothing: float = DEFAULT_SMOOTHING
    name: str = SIGNAL

    @classmethod
    def from_bundle(cls, bundle: Bundle, model_name: str) -> AutoencoderSignal | None:
        """The autoencoder of ``model_name``'s runtime and precision with its threshold, or None
        when the bundle has no autoencoder (or none for that runtime: see
        :func:`missing_autoencoder_warning`)."""
        from cxr_core.bundle.reader import listed_path

        info = bundle.manifest.autoencoder
        if info is None:
            return None
        fmt = autoencoder_format_for(info, model_name)
        if fmt is None:
            return None
        part = info.files[fmt]
        path = listed_path(bundle, part.file, f"autoencoder.files.{fmt}.file")
        backend = open_autoencoder(path, part)
        return cls(
            backend,
            info.thresholds[model_name],
            info.acceptance,
            bundle.spec,
            info.input_size,
            info.smoothing,
        )

    def scores(self, model_input: NDArray[np.float32]) -> NDArray[np.float64]:
        """Reconstruction SSIM of every image of a model input batch."""
        inputs = autoencoder_input(model_input, self.spec, self.input_size)
        return reconstruction_ssim(self.backend, inputs, self.smoothing)

    def evaluate(self, image: DecodedImage, model_input: NDArray[np.float32]) -> list[SignalDecision]:
        from cxr_core.gate_signals import SignalDecision

        score = float(self.scores(model_input)[0])
        reason = (
            f"unlike the images this model was trained on: the gate's autoencoder, trained on them, "
            f"redraws this image with structural similarity {score:.2f}, below the threshold "
            f"{self.threshold:.2f}, which accepts {self.acceptance:.1%} of its validation images; the "
            "model cannot vouch for this image"
        )
        return [SignalDecision.measure(self.name, score, self.threshold, refuse_above=False, reason=reason)]

    def close(self) -> None:
        self.backend.close()


# ----------------------------------------------------------------------------- golden check


def check_golden(
    bundle: Bundle, golden_inputs: NDArray[np.float32], runtime: str | None = None
) -> list[dict[str, Any]]:
    """Re-run each autoencoder file on the golden inputs; one row per file (``pass``/``fail``/...).

    The reference is the SSIM the same file gave at export (``golden_ssim``), within its tolerance.
    A file whose runtime is not installed is ``unavailable``; one that does not open is ``error``.
    """
    from cxr_core.bundle.reader import listed_path

    info = bundle.manifest.autoencoder
    if info is None:
        return []
    inputs = autoencoder_input(golden_inputs, bundle.spec, info.input_size)
    rows = []
    for fmt, part in info.files.items():
        row: dict[str, Any] = {"autoencoder": fmt, "status": "error", "message": None, "max_abs_dssim": None}
        try:
            path = listed_path(bundle, part.file, f"autoencoder.files.{fmt}.file")
            backend = open_autoencoder(path, part, runtime=runtime)
            try:
                values = reconstruction_ssim(backend, inputs, info.smoothing)
            finally:
                backend.close()
        except ImportError as exc:
            row.update(status="unavailable", message=f"{type(exc).__name__}: {exc}")
            rows.append(row)
            continue
        except (CxrEdgeError, OSError) as exc:
            from cxr_core.runtime import RuntimeUnavailableError

            status = "unavailable" if isinstance(exc, RuntimeUnavailableError) else "error"
            row.update(status=status, message=f"{type(exc).__name__}: {exc}")
            rows.append(row)
            continue
        reference = np.asarray(part.golden_ssim, dtype=np.float64)
        if reference.shape != values.shape:
            row["message"] = f"{values.size} golden image(s) but {reference.size} recorded SSIM values"
            rows.append(row)
            continue
        drift = float(np.max(np.abs(values - reference))) if values.size else 0.0
        passed = math.isfinite(drift) and drift <= part.golden_tolerance
        row.update(
            status="pass" if passed else "fail",
            max_abs_dssim=round(drift, 6),
            message=f"golden SSIM within {drift:.2g} of export (tolerance {part.golden_tolerance:g})",
        )
        rows.append(row)
    return rows


__all__ = [
    "SIGNAL",
    "AutoencoderGateError",
    "AutoencoderSignal",
    "autoencoder_input",
    "check_golden",
    "missing_autoencoder_warning",
    "open_autoencoder",
    "reconstruction_ssim",
    "ssim",
]
