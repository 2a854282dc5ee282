"""The learned feature-space gate: is this image like the images the model was trained on? (numpy only)

The classifier's own feature map, pooled the way its head pools it, places every image in a space
the model learned. Bundles exported from this version scale each pooled vector to unit length
first (``normalization: l2``; Mahalanobis++, Mueller and Hein 2025): an image's overall activation
strength varies far more than a Gaussian allows, and left in it gives the distances a heavy right
tail that a few dozen validation images cannot show (docs/input-gate.md, "Unit-length features").
At export the gate is **fitted on the training split only** (never on out-of-distribution
images): the mean and a shrunk covariance of those features (Ledoit-Wolf: the training set has
fewer images than DenseNet-121 has feature channels, so the plain covariance is singular). An
image's score is its Mahalanobis distance to that mean. The
threshold of each model file is set on the **held-out validation images run through that very
file** (INT8 features differ from FP32 ones) at a stated in-distribution acceptance (default 99%:
one in-distribution image in a hundred is refused). Nothing is extra to run: the feature map is an
output of every model of the bundle, so the gate costs one matrix-vector product per image; with
fewer training images than feature channels that product takes the precision matrix's low-rank
form (:class:`LowRankPrecision`): 0.43x of the work on the demo, the same distances to 1e-4.

A model trained on phantoms therefore refuses real radiographs as unlike its training data: that
is the honest answer, and the reason says so.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError

if TYPE_CHECKING:
    from cxr_core.bundle import Bundle
    from cxr_core.gate_signals import SignalDecision

logger = logging.getLogger(__name__)

#: Up to this many rows, distances are computed without the BLAS thread pool (see ``distances``).
SINGLE_THREAD_ROWS = 8
#: Eigenvalues of a stored precision matrix within this share of its largest one of the repeated
#: "bulk" value count as that value (float32 storage spreads them by about 1e-7; see LowRankPrecision).
BULK_TOLERANCE = 1e-6
#: The low-rank form is used when at most this share of the eigenvalues differ from the bulk value.
LOW_RANK_MAX_SHARE = 0.75
#: Rows per block of the precision's packed upper triangle (:class:`TriangularPrecision`): 256 read
#: 62.5% of a 1,024-channel matrix in four dot-product calls; 64 would read 53% in sixteen, and the
#: calls' overhead ate the difference (measured: 72 against 91 us with the matrix out of the cache).
TRIANGLE_BLOCK_ROWS = 256
#: Share of in-distribution (validation) images a threshold accepts.
DEFAULT_ACCEPTANCE = 0.99
SIGNAL = "feature_mahalanobis"
#: How pooled features are scaled before the distance: ``l2`` to unit length (new bundles), ``none``
#: as pooled (bundles exported before the gate recorded it).
NORMALIZATIONS: tuple[str, ...] = ("none", "l2")
DEFAULT_NORMALIZATION = "l2"


class FeatureGateError(CxrEdgeError, ValueError):
    """The gate cannot be fitted or applied (too few images, a feature map of another shape)."""


def pooled_features(feature_map: NDArray[np.floating], pooling: str) -> NDArray[np.float32]:
    """``(N, C)`` from ``(N, C, h, w)`` (or ``(C, h, w)`` for one image), pooled like the model's head."""
    fmap = np.asarray(feature_map, dtype=np.float32)
    if fmap.ndim == 3:
        fmap = fmap[None]
    if fmap.ndim != 4:
        raise FeatureGateError(f"feature map of shape {fmap.shape}; expected (N, C, h, w) or (C, h, w)")
    # numpy reduces a few contiguous values per channel slowly (0.12 ms for a 1,024 x 4 x 4 map);
    # laid out position-major, the same maximum takes 0.02 ms and einsum's sum 0.01 ms
    flat = fmap.reshape(fmap.shape[0], fmap.shape[1], -1)
    if pooling == "max":
        return np.ascontiguousarray(flat.transpose(0, 2, 1)).max(axis=1)
    if pooling == "mean":
        return np.einsum("ncs->nc", flat) * np.float32(1.0 / flat.shape[2])
    raise FeatureGateError(f"pooling {pooling!r}; expected 'mean' or 'max'")


def normalized(features: NDArray[np.floating], normalization: str) -> NDArray[np.float32]:
    """Pooled ``(N, C)`` features as the gate compares them: as they are (``none``) or scaled to unit
    length (``l2``; a vector of zeros stays zero)."""
    x = np.asarray(features, dtype=np.float32)
    if normalization == "none":
        return x
    if normalization != "l2":
        raise FeatureGateError(f"normalization {normalization!r}; expected one of {list(NORMALIZATIONS)}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]
    return (x / np.where(norms > 0.0, norms, 1.0)).astype(np.float32)


def ledoit_wolf(features: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Mean, Ledoit-Wolf shrunk covariance and the shrinkage weight of ``features`` (N, C).

    The shrinkage target is the scaled identity ``mu * I`` with ``mu`` the mean variance; the weight
    is the Ledoit-Wolf (2004) estimate of the optimal one, clipped to [0, 1].
    """
    x = np.asarray(features, dtype=np.float64)
    count, dim = x.shape
    if count < 2:
        raise FeatureGateError(f"{count} training image(s); the gate needs at least 2 to fit")
    mean = x.mean(axis=0)
    centred = x - mean
    sample = centred.T @ centred / count
    mu = float(np.trace(sample) / dim)
    delta = float(((sample - mu * np.eye(dim)) ** 2).sum() / dim)
    squares = centred**2
    beta_sum = float((squares.T @ squares).sum() / count - (sample**2).sum())
    beta = min(max(beta_sum / (dim * count), 0.0), delta)
    shrinkage = 0.0 if delta == 0 else beta / delta
    covariance = shrinkage * mu * np.eye(dim) + (1.0 - shrinkage) * sample
    return mean, covariance, shrinkage


def _row_dots(matrix: NDArray[np.float32], vector: NDArray[np.float32]) -> NDArray[np.float32]:
    """``matrix @ vector`` as one dot product per row: ``np.vecdot`` (numpy 2), whose single-threaded
    BLAS dot of 1,024 values took 0.17 ms right after a LiteRT inference against 0.25 ms for
    ``np.einsum``'s loop (0.06 against 0.10 ms warm), or that loop on numpy 1."""
    vecdot = getattr(np, "vecdot", None)
    if vecdot is not None:
        return np.asarray(vecdot(matrix, vector), dtype=np.float32)
    return np.einsum("rc,c->r", matrix, vector)


@dataclass(frozen=True)
class LowRankPrecision:
    """A precision matrix as ``bulk * I + basis.T @ diag(weights) @ basis``: the same quadratic form in
    fewer operations.

    A Ledoit-Wolf covariance fitted on ``N`` images of ``C > N`` channels is a scaled identity plus a
    sample covariance of rank at most ``N - 1``, so its inverse is one repeated eigenvalue (the
    *bulk*) except along those ``N - 1`` directions. The demo's 442 training images give 441 of
    1,024: one image's distance reads a 441 x 1,024 matrix instead of 1,024 x 1,024. That product
    follows the model on the critical path, and the model's run has just evicted the matrix from
    the cache: with the stored 4 MB a distance took 0.46-0.62 ms there against 0.25 ms in a warm
    loop, with this form 0.26-0.38 ms, and its projection alone 0.25 ms through ``np.einsum`` and
    0.17 ms through ``np.vecdot`` (docs/input-gate.md, "Gate cost"). Eigenvalues within
    :data:`BULK_TOLERANCE` of the bulk are taken as equal to it; what that leaves out is below
    float32 rounding. The form subtracts the projection from the bulk term, so float32 rounding
    weighs more: on the demo's features the distances differ from float64 arithmetic by up to
    2.6e-5 of their value through ``np.vecdot`` (BLAS's dot keeps several partial sums) and 7.1e-5
    through ``np.einsum``'s single running sum, against 3e-6 for the full float32 product
    (:data:`FLOOR_MARGIN` covers all three). A float64 basis would remove that and read as many
    bytes as the full float32 matrix, which is what this form saves.
    """

    bulk: float
    #: ``(r, C)``: the eigenvectors whose eigenvalue differs from the bulk, one per row.
    basis: NDArray[np.float32]
    #: ``(r,)``: each one's eigenvalue less the bulk.
    weights: NDArray[np.float64]

    @classmethod
    def of(cls, precision: NDArray[np.floating]) -> LowRankPrecision | None:
        """The low-rank form of a symmetric ``precision``, or None where it would save too little
        (more than :data:`LOW_RANK_MAX_SHARE` of its eigenvalues differ from the most common one)."""
        values, vectors = np.linalg.eigh(np.asarray(precision, dtype=np.float64))
        bulk = float(np.median(values))
        distinct = np.abs(values - bulk) > BULK_TOLERANCE * float(np.abs(values).max(initial=0.0))
        if distinct.sum() > LOW_RANK_MAX_SHARE * values.size:
            return None
        basis = np.ascontiguousarray(vectors[:, distinct].T, dtype=np.float32)
        return cls(bulk, basis, values[distinct] - bulk)

    @property
    def rank(self) -> int:
        return int(self.weights.size)

    def quadratic(self, row: NDArray[np.float32]) -> float:
        """``row @ precision @ row`` of one centred feature vector ``(C,)``: the projection is one dot
        product per basis row (:func:`_row_dots`), never the BLAS thread pool."""
        projected = _row_dots(self.basis, row).astype(np.float64)
        wide = row.astype(np.float64)
        length = float(np.dot(wide, wide))
        return self.bulk * length + float(np.dot(self.weights, projected * projected))


@dataclass(frozen=True)
class TriangularPrecision:
    """A symmetric precision matrix as block rows of its upper triangle: the same quadratic form,
    reading a little over half of the matrix.

    ``x @ P @ x`` is the sum over the diagonal blocks ``x_i @ P_ii @ x_i`` and, once for each pair
    ``i < j``, ``x_i @ (P_ij + P_ji.T) @ x_j``. Block row ``i`` keeps ``[P_ii, P_ij + P_ji.T, ...]``
    (``j > i``), so one dot product per row of that block with ``x[start_i:]``, then one with ``x_i``,
    gives its share. It serves a gate fitted on about as many training images as it has channels or
    more (every real-data bundle: the export's 1,000 gate images against DenseNet-121's 1,024
    channels would give a low-rank form of 999 rows, which saves nothing, so none is taken), where
    each single image read the whole 4 MB matrix through einsum's loop right after the model had
    evicted it from the cache: 125 us against 72 us for this form (1,024 channels, the matrix
    evicted before each call), and its float64 sums of the block products come closer to float64
    arithmetic than einsum's float32 running sum (2e-9 against 9e-8 of the quadratic form there).
    The diagonal blocks are symmetrised too: a stored matrix may be symmetric only to rounding.
    """

    #: First row (and column) of each block row.
    starts: tuple[int, ...]
    #: ``(rows, C - start)`` for each block row: its diagonal block, then the symmetric sums.
    blocks: tuple[NDArray[np.float32], ...]

    @classmethod
    def of(
        cls, precision: NDArray[np.floating], block_rows: int = TRIANGLE_BLOCK_ROWS
    ) -> TriangularPrecision:
        matrix = np.asarray(precision, dtype=np.float64)
        size = matrix.shape[0]
        if matrix.shape != (size, size) or block_rows < 1:
            raise FeatureGateError(
                f"precision of shape {matrix.shape} in blocks of {block_rows} rows; "
                "expected a square matrix and at least one row per block"
            )
        starts: list[int] = []
        blocks: list[NDArray[np.float32]] = []
        for start in range(0, size, block_rows):
            stop = min(start + block_rows, size)
            block = matrix[start:stop, start:].copy()
            block[:, : stop - start] = (block[:, : stop - start] + block[:, : stop - start].T) / 2.0
            block[:, stop - start :] += matrix[stop:, start:stop].T
            starts.append(start)
            blocks.append(np.ascontiguousarray(block, dtype=np.float32))
        return cls(tuple(starts), tuple(blocks))

    @property
    def values(self) -> int:
        """How many matrix values one distance reads."""
        return sum(block.size for block in self.blocks)

    def quadratic(self, row: NDArray[np.float32]) -> float:
        """``row @ precision @ row`` of one centred feature vector ``(C,)``, without BLAS's thread pool."""
        total = 0.0
        for start, block in zip(self.starts, self.blocks, strict=True):
            partial = _row_dots(block, row[start:]).astype(np.float64)
            total += float(np.dot(partial, row[start : start + block.shape[0]].astype(np.float64)))
        return total


@dataclass(frozen=True)
class FeatureGate:
    """Mean and precision (inverse shrunk covariance) of the training features, how the feature map
    is pooled and how the pooled vectors are scaled (:func:`normalized`)."""

    mean: NDArray[np.float32]
    precision: NDArray[np.float32]
    pooling: str
    shrinkage: float
    normalization: str = "none"
    #: The precision's low-rank form for single images (not stored in the bundle): None until
    #: :meth:`derive_low_rank` has run, and where it would save too little (see ``triangle``).
    low_rank: LowRankPrecision | None = field(default=None, init=False, repr=False, compare=False)
    #: Its packed upper triangle, used where there is no low-rank form or it would read more values;
    #: set first by :meth:`derive_low_rank`, dropped when the low-rank form replaces it.
    triangle: TriangularPrecision | None = field(default=None, init=False, repr=False, compare=False)

    def derive_low_rank(self, train_images: int | None = None) -> LowRankPrecision | None:
        """Derive and keep the single-image form that reads fewer values: the low-rank form (an
        eigendecomposition: 0.23-0.35 s for 1,024 channels on this round's development machine,
        several times that on a Raspberry Pi) or else the packed upper triangle. Returns the
        low-rank form when that is the one kept.

        ``train_images``, the number of images the gate was fitted on (the manifest records it),
        bounds the low-rank form's rows by ``train_images - 1``; when even that many rows would read
        as many values as the triangle, the eigendecomposition is skipped: it could not pay, and on
        a device it would only share the cores with the first predictions."""
        # The triangle first (a few milliseconds): single images use it while the eigendecomposition
        # runs. Each form is published by one reference assignment, so a reader sees None or a whole
        # form; it binds what it read before using it (see ``distances``).
        triangle = TriangularPrecision.of(self.precision)
        object.__setattr__(self, "triangle", triangle)
        if train_images is not None and (train_images - 1) * self.mean.size >= triangle.values:
            return None
        form = LowRankPrecision.of(self.precision)
        if form is not None and form.basis.size < triangle.values:
            object.__setattr__(self, "low_rank", form)
            object.__setattr__(self, "triangle", None)  # 2.6 MB at 1,024 channels, no longer read
            return form
        return None

    @classmethod
    def fit(
        cls, train_features: NDArray[np.floating], pooling: str, normalization: str = DEFAULT_NORMALIZATION
    ) -> FeatureGate:
        """Fit on the training images' pooled features ``(N, C)`` (:func:`pooled_features`)."""
        features = normalized(train_features, normalization)
        mean, covariance, shrinkage = ledoit_wolf(np.asarray(features, dtype=np.float64))
        precision = np.linalg.pinv(covariance, hermitian=True)
        return cls(mean.astype(np.float32), precision.astype(np.float32), pooling, shrinkage, normalization)

    def distances(self, features: NDArray[np.floating]) -> NDArray[np.float64]:
        """Mahalanobis distance of each row of pooled ``features`` (N, C), scaled as at fitting, to the
        training mean."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise FeatureGateError(
                f"features of shape {x.shape}; expected (N, {self.mean.shape[0]}) like the training features"
            )
        x = normalized(x, self.normalization)
        centred = x - self.mean
        if len(centred) > SINGLE_THREAD_ROWS:  # export and studies: many rows, where BLAS is faster
            squared = ((centred @ self.precision) * centred).sum(axis=1, dtype=np.float64)
        elif (form := self.low_rank or self.triangle) is not None:
            # A few images (the device's batch of one): one short dot product per basis row, never
            # BLAS's threaded matrix product. Multi-threaded OpenBLAS waits for the cores the
            # inference threads hold: 8 ms median per image instead of 0.1 ms, measured beside ONNX
            # Runtime on 2 cores. ``form`` is bound once: the preparing thread may swap the forms.
            squared = np.array([form.quadratic(row) for row in centred])
        else:
            projected = np.stack([np.einsum("j,jk->k", row, self.precision) for row in centred])
            squared = (projected * centred).sum(axis=1, dtype=np.float64)
        return np.sqrt(np.maximum(squared, 0.0))

    def score(self, feature_map: NDArray[np.floating]) -> float:
        """The distance of one image from its feature map ``(C, h, w)``."""
        return float(self.distances(pooled_features(feature_map, self.pooling))[0])

    def arrays(self) -> dict[str, NDArray[np.float32]]:
        """What the bundle's gate file stores."""
        return {"mean": self.mean, "precision": self.precision}

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, NDArray[np.floating]],
        pooling: str,
        shrinkage: float,
        normalization: str = "none",
    ) -> FeatureGate:
        mean = np.asarray(arrays["mean"], dtype=np.float32)
        precision = np.asarray(arrays["precision"], dtype=np.float32)
        if mean.ndim != 1 or precision.shape != (mean.size, mean.size):
            raise FeatureGateError(
                f"gate arrays mean {mean.shape} and precision {precision.shape}; expected (C,) and (C, C)"
            )
        if not (np.isfinite(mean).all() and np.isfinite(precision).all()):
            raise FeatureGateError("gate arrays hold NaN or infinite values")
        if normalization not in NORMALIZATIONS:
            raise FeatureGateError(f"normalization {normalization!r}; expected one of {list(NORMALIZATIONS)}")
        return cls(mean, precision, pooling, shrinkage, normalization)


#: Fewer held-out validation images than this cannot set a threshold: the bundle gets no learned gate.
MIN_VALIDATION_IMAGES = 10


#: Relative margin above the conformal floor: float rounding between batch and single-image runs
#: (the same INT8 file at batch 1 and in a batch: up to 6e-5 seen; a single image's distance through
#: the low-rank form against the export's batched product: up to 6.5e-5, see LowRankPrecision).
FLOOR_MARGIN = 3e-4


#: Confidence of the tolerance bound a threshold is set at: with this probability, at least the
#: acceptance share of in-distribution images falls inside it (under the log-normal fit).
TOLERANCE_CONFIDENCE = 0.95


def tolerance_factor(count: int, acceptance: float, confidence: float = TOLERANCE_CONFIDENCE) -> float:
    """One-sided normal tolerance factor ``k``: ``mean + k * sd`` of ``count`` samples bounds the
    ``acceptance`` quantile from above with probability ``confidence`` (Natrella's approximation,
    within 1% of the exact factor from 10 samples on). It tends to the plain quantile ``z`` as the
    sample grows: 3.52 for 31 samples, 3.24 for 61, 3.03 for 150, against z = 2.71 at 99.67%."""
    z_p = NormalDist().inv_cdf(acceptance)
    z_g = NormalDist().inv_cdf(confidence)
    a = 1.0 - z_g**2 / (2.0 * (count - 1))
    b = z_p**2 - z_g**2 / count
    return (z_p + math.sqrt(z_p**2 - a * b)) / a


def threshold_at(
    distances: NDArray[np.floating],
    acceptance: float = DEFAULT_ACCEPTANCE,
    confidence: float = TOLERANCE_CONFIDENCE,
) -> float:
    """The distance below which ``acceptance`` of in-distribution images are expected to fall.

    A 99.7% point cannot be read off a few dozen validation images: the empirical quantile of 31
    images is their maximum, and the plain quantile of a fit to them is as uncertain as their
    spread. On the demo bundle (31 held-out images), with thresholds at the fitted quantile, the
    whole gate refused 3.4-3.6% of 500 fresh in-distribution phantoms, and resampling them put the
    feature distance's own share at 1.1-1.9% against its 0.33% budget. So the log-distances are
    fitted with a normal distribution and the threshold is the upper ``confidence`` (default
    :data:`TOLERANCE_CONFIDENCE`) tolerance bound of its ``acceptance`` quantile
    (:func:`tolerance_factor`; a confidence of 0.5 gives the fitted quantile itself) -- or the
    empirical (conformal) quantile, the ``ceil((n + 1) * acceptance)``-th smallest distance (the
    largest when there are too few images for that rank), when it is larger. Resampling the 500
    fresh phantoms as validation sets of 31-150 put the feature distance's own refusals at
    0.3-0.7% with the 95% bound (docs/input-gate.md, "How many images set a threshold").
    Needs at least :data:`MIN_VALIDATION_IMAGES` distances.
    """
    values = np.sort(np.asarray(distances, dtype=np.float64))
    if values.size < MIN_VALIDATION_IMAGES or not np.isfinite(values).all() or (values <= 0).any():
        raise FeatureGateError(
            f"{values.size} validation distance(s) (finite and positive ones needed, at least "
            f"{MIN_VALIDATION_IMAGES}); cannot set a threshold"
        )
    if not 0.5 <= acceptance < 1.0:
        raise FeatureGateError(f"acceptance={acceptance!r}; expected a share in [0.5, 1)")
    logs = np.log(values)
    spread = float(logs.std(ddof=1))
    if not 0.5 <= confidence < 1.0:
        raise FeatureGateError(f"confidence={confidence!r}; expected a probability in [0.5, 1)")
    fitted = float(np.exp(logs.mean() + tolerance_factor(values.size, acceptance, confidence) * spread))
    # With fewer than 1 / (1 - acceptance) - 1 images the conformal rank is past the largest
    # distance: the largest is then the floor (every validation image is accepted). The floor gets
    # a float-rounding margin: the same image through the same file at batch 1 on a device (the
    # floor was measured in batches) came out 2e-7 above it and was refused (cxr-export's
    # validation check, quantize/gate_check.py); see FLOOR_MARGIN for the differences seen.
    rank = min(values.size, math.ceil((values.size + 1) * acceptance))
    return max(fitted, float(values[rank - 1]) * (1.0 + FLOOR_MARGIN))


class FeatureGateSignal:
    """The feature-space distance as a gate signal (:class:`cxr_core.gate_signals.OutputSignal`)."""

    name = SIGNAL

    def __init__(
        self, gate: FeatureGate, threshold: float, acceptance: float, train_images: int | None = None
    ) -> None:
        self.gate = gate
        self.threshold = float(threshold)
        self.acceptance = float(acceptance)
        self.train_images = train_images  # what the gate was fitted on (None: unknown)
        # The low-rank form is derived on a thread of its own, so that opening a bundle does not wait
        # for the eigendecomposition; the first images use the packed triangle (the same distances).
        # Not a daemon: the interpreter waits for it at exit. A process that ended while a daemon
        # thread was still inside LAPACK's eigendecomposition had OpenBLAS shut its worker threads
        # down under that call: `cxr-predict` on six images then hung for good in OpenBLAS's exit
        # handler in 6 of 30 runs (docs/input-gate.md, "The learned feature gate").
        self._deriving = threading.Thread(target=self._derive, name="cxr-gate-low-rank", daemon=False)
        self._deriving.start()

    def _derive(self) -> None:
        try:
            self.gate.derive_low_rank(self.train_images)
        except (np.linalg.LinAlgError, ValueError, MemoryError) as exc:
            logger.warning(
                "the feature gate has no low-rank form (%s); single images read its packed triangle, "
                "or the full matrix where that could not be built either",
                exc,
            )

    def wait_until_prepared(self, timeout: float | None = None) -> bool:
        """Wait for the low-rank form to be derived (or given up); True when it is done."""
        self._deriving.join(timeout)
        return not self._deriving.is_alive()

    @classmethod
    def from_bundle(cls, bundle: Bundle, model_name: str) -> FeatureGateSignal | None:
        """The bundle's feature gate with ``model_name``'s own threshold, or None without a gate."""
        from cxr_core.bundle import load_feature_gate

        info = bundle.manifest.gate
        gate = load_feature_gate(bundle, model_name)
        if gate is None or info is None:
            return None
        threshold = info.thresholds.get(model_name)
        if threshold is None:
            threshold = max(info.thresholds.values())
            logger.warning(
                "the gate records no threshold for model %r; using the largest (%.3f)", model_name, threshold
            )
        return cls(gate, threshold, info.acceptance, info.train_images)

    def evaluate(self, outputs: Mapping[str, NDArray[Any]]) -> list[SignalDecision]:
        from cxr_core.gate_signals import SignalDecision

        distance = self.gate.score(outputs["feature_map"][0])
        reason = (
            f"unlike the images this model was trained on: feature distance {distance:.1f} above the "
            f"threshold {self.threshold:.1f}, which accepts {self.acceptance:.1%} of its validation "
            "images; the model cannot vouch for this image"
        )
        return [SignalDecision.measure(self.name, distance, self.threshold, reason=reason)]
