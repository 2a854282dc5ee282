"""On-device prediction: a file in, calibrated findings, warnings and heat maps out. No torch.

:class:`Predictor` ties the device path together::

    decode (imaging) -> gate (input_gate) -> preprocess (the bundle's spec) -> infer (a runtime Backend)
    -> calibrate (operating points -> 0.5, outside the graph) -> CAM (on demand, per finding)

and returns a :class:`Prediction`: per finding the model's output, the operating-point score (0-100,
50 = the finding's operating point; not a probability), the operating point, whether the image is
above it and whether that threshold is reliable; the bundle's notices (the synthetic-data mark);
warnings from the gate; timings per stage (``time.perf_counter_ns``); and, when asked, heat maps at
the original image resolution and colour overlays whose strength follows the score.

Decisions, and why:

* **Verify once, cache.** Hashing every file of a bundle costs as much as loading it (tens of MB),
  so :func:`load_verified_bundle` verifies a bundle once and caches it per resolved path, keyed by
  the manifest's and every listed file's (mtime, size, inode): a re-export, an edited manifest or a
  replaced model file is verified again, a second ``Predictor.load`` in the same process is not.
* **Calibration outside the graph** with :func:`cxr_core.calibrate.calibrate`: the same model file
  serves any operating points, and "calibrated >= 0.5" is exactly "raw >= operating point". A
  bundle without operating points is run with 0.5 for every finding (calibrated = raw) and every
  prediction carries a warning saying so.
* **CAM on demand.** The feature map of the image is kept (a few hundred KB); a heat map is computed
  only when asked for and then cached, so scoring a batch costs nothing extra.
* **An injected backend works.** ``Predictor(bundle, backend)`` takes anything with ``runtime``,
  ``model_name`` and ``__call__(batch) -> {"probabilities", "feature_map"}`` (the Android app passes a
  LiteRT backend driven through pyjnius).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core import cam
from cxr_core.bundle import (
    MANIFEST_NAME,
    SYNTHETIC_MARK,
    Bundle,
    BundleError,
    RevisionInfo,
    load_bundle,
    load_cam_weights,
)
from cxr_core.calibrate import DEFAULT_OPERATING_POINT, calibrate
from cxr_core.capture_common import PhotoInput, input_record
from cxr_core.errors import CxrEdgeError
from cxr_core.gate_signals import (
    NO_LEARNED_GATE_WARNING,  # noqa: F401  (re-exported: callers that warn about older bundles)
    LearnedGate,
    SignalDecision,
    learned_gate_for,
)
from cxr_core.imaging import DecodedImage, decode_image
from cxr_core.input_gate import InputGate
from cxr_core.preprocess import PreprocessGeometry, compute_geometry, preprocess

logger = logging.getLogger(__name__)

DISCLAIMER = (
    "Decision support, not a diagnosis: these are a model's scores for one image, to be read by a "
    "qualified clinician together with the patient's history and other findings."
)


class UnknownFindingError(CxrEdgeError, ValueError):
    """A finding name that is not one of the bundle's labels."""


class PredictionError(CxrEdgeError, RuntimeError):
    """The model returned something unusable (wrong shape, NaN) for an image."""


class BackendLike(Protocol):
    """What the predictor needs from a backend (:class:`cxr_core.runtime.Backend` satisfies it)."""

    runtime: str
    model_name: str

    def __call__(self, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]: ...


# ----------------------------------------------------------------------------- bundle cache


@dataclass(frozen=True)
class _Verified:
    bundle: Bundle
    manifest_stat: tuple[int, int, int] | None
    file_stats: tuple[tuple[str, tuple[int, int, int] | None], ...]


_CACHE: dict[str, _Verified] = {}
_CACHE_LOCK = threading.Lock()


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _file_stats(bundle: Bundle) -> tuple[tuple[str, tuple[int, int, int] | None], ...]:
    return tuple((name, _stat(bundle.path(name))) for name in sorted(bundle.manifest.files))


def load_verified_bundle(root: str | Path, allow_untrusted: bool = False) -> Bundle:
    """Load the bundle at ``root``, check its signature and every file's sha256, once per unchanged bundle.

    The signature is checked on every call (one small file and one Ed25519 verification), so a
    bundle cached as trusted is refused once its manifest changes or its key is removed from the
    trusted list; the file hashes are cached (see the module's "Verify once, cache").
    """
    from cxr_core.bundle.signing import check_signature, enforce_trust

    resolved = Path(root).expanduser().resolve()
    key = str(resolved)
    manifest_stat = _stat(resolved / MANIFEST_NAME)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None and manifest_stat is not None and cached.manifest_stat == manifest_stat:
        if cached.file_stats == _file_stats(cached.bundle):
            data = (resolved / MANIFEST_NAME).read_bytes()
            trust = enforce_trust(resolved, check_signature(resolved, data), allow_untrusted)
            logger.debug("bundle %s: verified earlier in this process, unchanged", resolved)
            if trust == cached.bundle.trust:
                return cached.bundle
            return dataclasses.replace(cached.bundle, trust=trust)
    start = time.perf_counter_ns()
    bundle = load_bundle(resolved, verify=True, allow_untrusted=allow_untrusted)
    logger.info("bundle %s verified in %.0f ms", resolved, (time.perf_counter_ns() - start) / 1e6)
    with _CACHE_LOCK:
        _CACHE[key] = _Verified(bundle, manifest_stat, _file_stats(bundle))
    return bundle


def clear_bundle_cache() -> None:
    """Forget every verified bundle (the next load verifies again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ----------------------------------------------------------------------------- results


#: From this many decoded pixels on, the gate's image-only signals (the quality checks) start on the
#: gate thread while the image is preprocessed, not beside the model: their working copy is a box
#: reduction of the whole image (2.2 ms of a 2,048 px radiograph's), and beside the INT8 model it
#: added 2.3-2.6 ms there; started early it hides behind the preprocessing (0.6-1.6 ms added in
#: all). At 1,024 px the two orders were within 0.3 ms either way, and below it both threads run
#: short numpy calls and contend for the GIL (docs/input-gate.md, "Gate cost").
EARLY_IMAGE_SIGNAL_PIXELS = 1024 * 1024

#: Opens the warning a result carries when the user chose to score an image the gate refused.
OVERRIDE_WARNING = "scored at the user's request although the input gate refused it"

#: What the score means, shown beside it wherever it is printed or drawn.
SCORE_DEFINITION = (
    "Operating-point score 0-100: 50 is the finding's operating point (chosen on validation data), "
    "higher is further above it. It ranks and flags findings; it is not a probability."
)


@dataclass(frozen=True)
class FindingResult:
    """One finding of one image.

    ``model_output`` is the network's sigmoid output, and ``score`` maps it piecewise-linearly so that
    the finding's operating point is 50 (``[0, t] -> [0, 50]``, ``[t, 1] -> [50, 100]``): neither is a
    calibrated probability, so neither is ever shown as a percentage. ``threshold_note`` says when the
    operating point is unreliable (a fallback, or set on fewer than 10 validation positives).
    """

    label: str
    model_output: float
    score: float
    operating_point: float
    above_operating_point: bool
    threshold_note: str | None = None

    @property
    def threshold_reliable(self) -> bool:
        return self.threshold_note is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Prediction:
    """The result for one image. Heat maps are computed on demand from the kept feature map."""

    source: str
    image: DecodedImage
    findings: tuple[FindingResult, ...]
    warnings: tuple[str, ...]
    timings_ms: dict[str, float]
    model_name: str
    runtime: str
    bundle_name: str
    feature_map: NDArray[np.float32] = field(repr=False)  # (C, h, w), this image's
    cam_weight: NDArray[np.float32] = field(repr=False)  # (L, C)
    geometry: PreprocessGeometry = field(repr=False)
    notices: tuple[str, ...] = ()  # e.g. the synthetic-data mark; shown with the result, never hidden
    model_information: tuple[str, ...] = ()  # the bundle's ClinicalInfo.summary(), for reports
    #: Every learned-gate signal's verdict on this image (empty: the bundle has no learned gate).
    gate_signals: tuple[SignalDecision, ...] = ()
    #: The refusal reasons the user overrode with "score anyway" (empty: the gate accepted the image).
    gate_override: tuple[str, ...] = ()
    #: The photo the film was taken from (:meth:`Predictor.predict_photo`); None for an image file.
    photo: PhotoInput | None = None
    #: The bundle's site revision (``cxr-calibrate``: number, site, date, the model that set the
    #: operating points); None for an exported bundle.
    revision: RevisionInfo | None = None
    _heatmaps: dict[tuple[str, tuple[int, int] | None], NDArray[np.float32]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f.label for f in self.findings)

    def ranked(self) -> list[FindingResult]:
        """Findings by score, highest first (ties keep label order)."""
        return sorted(self.findings, key=lambda f: -f.score)

    def positives(self) -> list[FindingResult]:
        """The findings above their operating point, ranked."""
        return [f for f in self.ranked() if f.above_operating_point]

    def index(self, label: str) -> int:
        """Position of ``label`` in the model's output order; a did-you-mean for a wrong name."""
        labels = self.labels
        if label in labels:
            return labels.index(label)
        hint = difflib.get_close_matches(str(label), labels, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UnknownFindingError(
            f"finding {label!r} is not one of this model's labels{did_you_mean}; "
            f"expected one of {list(labels)}"
        )

    def finding(self, label: str) -> FindingResult:
        return self.findings[self.index(label)]

    def class_activation(self, label: str) -> NDArray[np.float32]:
        """The raw CAM ``sum_k W[c, k] F[k]`` of ``label`` at model resolution ``(h, w)``."""
        return cam.class_activation_map(self.feature_map, self.cam_weight, self.index(label))

    def heatmap(self, label: str, size: tuple[int, int] | None = None) -> NDArray[np.float32]:
        """The heat map of ``label``: (H, W) float32 in [0, 1] at the original image resolution.

        ``size`` = (height, width) samples it on another grid over the whole image (e.g. a screen):
        a 3000 x 2500 detector image costs ~7 ms at full size. Computed once per (label, size) and
        cached (read-only); ``timings_ms["cam"]`` holds the time of the last one computed (CAM,
        normalisation and upsampling).
        """
        index = self.index(label)
        shape = None if size is None else (int(size[0]), int(size[1]))
        key = (label, None if shape == self.image.pixels.shape else shape)
        cached = self._heatmaps.get(key)
        if cached is None:
            start = time.perf_counter_ns()
            cached = cam.heatmap(self.feature_map, self.cam_weight, index, self.geometry, key[1])
            self.timings_ms["cam"] = _ms(start)
            cached.setflags(write=False)
            self._heatmaps[key] = cached
        return cached

    def heatmaps(self, labels: Iterable[str] | None = None) -> dict[str, NDArray[np.float32]]:
        """Heat maps of ``labels`` (default: every finding), by label."""
        return {label: self.heatmap(label) for label in (self.labels if labels is None else labels)}

    def overlay(
        self, label: str, alpha: float = 0.45, size: tuple[int, int] | None = None, by_score: bool = True
    ) -> NDArray[np.uint8]:
        """``label``'s heat map coloured onto the grey image: (H, W, 3) RGB uint8 (or ``size``).

        The heat map is min-max scaled within the image (where the model looked), so on its own a
        finding scoring 2 would look as hot as one scoring 95. With ``by_score`` (the default, and what
        every screen and file shows) its colour strength is multiplied by ``score / 100``
        (:func:`cxr_core.cam.score_strength`): the hottest pixel of a finding at its operating point is
        half as strong as that of a finding scoring 100, and a finding scoring 2 is barely tinted.
        """
        grey = self.image.pixels
        if size is not None and tuple(size) != grey.shape:
            height, width = int(size[0]), int(size[1])
            resized = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
            grey = np.asarray(resized, dtype=np.float32)
        heat = self.heatmap(label, size)
        if by_score:
            heat = heat * np.float32(cam.score_strength(self.finding(label).score))
        return cam.overlay(grey, heat, alpha)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays)."""
        provenance = dataclasses.asdict(self.image.provenance)
        provenance["notes"] = list(provenance["notes"])
        return {
            "source": self.source,
            "bundle": self.bundle_name,
            "model": self.model_name,
            "runtime": self.runtime,
            "findings": [f.to_dict() for f in self.findings],
            "warnings": list(self.warnings),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "provenance": provenance,
            "notices": list(self.notices),
            "score_definition": SCORE_DEFINITION,
            "gate_signals": [d.to_dict() for d in self.gate_signals],
            "gate_override": list(self.gate_override),
            "input": input_record(self.photo),
        }


# ----------------------------------------------------------------------------- predictor


def _revision_model_warning(revision: RevisionInfo | None, model_name: str) -> tuple[str, ...]:
    """A warning when a site revision's operating points were set with another model file than this one."""
    if revision is None or revision.model is None or revision.model == model_name:
        return ()
    return (
        f"the operating points of {revision.describe()} were set on {revision.scored_with()}, not on "
        f"{model_name}: another model file gives other outputs on the same image, so its calls at these "
        f"points differ (choose the model {revision.model}, or recalibrate with this one)",
    )


class Predictor:
    """A bundle and an opened backend: ``predict_file(path)`` -> :class:`Prediction`."""

    def __init__(
        self,
        bundle: Bundle | str | Path,
        backend: BackendLike,
        *,
        gate: InputGate | None = None,
        allow_untrusted: bool = False,
    ) -> None:
        start = time.perf_counter_ns()
        self.bundle = bundle if isinstance(bundle, Bundle) else load_verified_bundle(bundle, allow_untrusted)
        self.backend = backend
        self.gate = gate if gate is not None else InputGate()
        self.labels: tuple[str, ...] = self.bundle.labels
        self._spec = dataclasses.replace(self.bundle.spec, layout="NCHW")  # the Backend's canonical layout
        weight, _bias = load_cam_weights(self.bundle)  # one row per label: the loader checks it
        self._weight = np.ascontiguousarray(weight, dtype=np.float32)
        self._weight.setflags(write=False)
        points = self.bundle.operating_points
        self._bundle_warnings: tuple[str, ...] = ()
        clinical = self.bundle.clinical
        #: The site revision the operating points come from (None: an exported bundle).
        self.revision: RevisionInfo | None = self.bundle.manifest.revision
        notes = [
            None if clinical.finding(label) is None else clinical.finding(label).threshold_note(self.revision)
            for label in self.labels
        ]
        if points is None:
            points = (DEFAULT_OPERATING_POINT,) * len(self.labels)
            self._bundle_warnings = (
                "the bundle has no operating points: every finding's operating point is "
                f"{DEFAULT_OPERATING_POINT}",
            )
            notes = ["threshold unreliable: the bundle has no operating points (fallback 0.5)"] * len(
                self.labels
            )
        trust = self.bundle.trust
        if trust is not None and not trust.trusted:  # loaded only because the caller opted in
            self._bundle_warnings = (f"bundle trust: {trust.describe()}", *self._bundle_warnings)
        self.operating_points: tuple[float, ...] = tuple(float(p) for p in points)
        #: Per finding, None or why its operating point is unreliable (shown with every result).
        self.threshold_notes: tuple[str | None, ...] = tuple(notes)
        #: Shown with every result and cannot be hidden: the synthetic-data mark, when it applies.
        self.notices: tuple[str, ...] = (SYNTHETIC_MARK,) if clinical.synthetic else ()
        #: The bundle's learned signals (feature distance, ...) for this model file (docs/input-gate.md).
        self.learned_gate: LearnedGate = learned_gate_for(self.bundle, self.model_name)
        self._bundle_warnings += self.learned_gate.warnings
        self._bundle_warnings += _revision_model_warning(self.revision, self.model_name)
        # The signals that need only the image (quality checks, autoencoder) run on this thread beside
        # the model: numpy and both runtimes release the GIL, so on two or more cores most of their
        # time hides behind the inference. One worker: predictions' gate work never interleaves.
        self._gate_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxr-gate")
        #: What the bundle says of itself (training data, validation AUC, thresholds), for reports.
        self.model_information: tuple[str, ...] = tuple(clinical.summary())
        size = getattr(backend, "input_size", None)
        if size is not None and size != self._spec.input_size:
            raise BundleError(
                f"backend {self.model_name!r} takes {size} px inputs but the bundle's "
                f"preprocessing makes {self._spec.input_size} px; expected them to match"
            )
        self.load_ms: float = _ms(start)

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        model: str | None = None,
        runtime: str | None = None,
        threads: int | None = None,
        *,
        gate: InputGate | None = None,
        allow_untrusted: bool = False,
    ) -> Predictor:
        """Verify (once per process, cached) and open ``bundle_dir``; ``model``/``runtime`` override the
        automatic choice (docs/runtime.md); ``threads`` None = physical cores, at most 4.
        ``allow_untrusted`` loads an unsigned or untrusted bundle, marked in every prediction's warnings."""
        from cxr_core.runtime import open_backend

        start = time.perf_counter_ns()
        bundle = load_verified_bundle(bundle_dir, allow_untrusted)
        backend = open_backend(bundle, model=model, runtime=runtime, threads=threads)
        try:
            predictor = cls(bundle, backend, gate=gate)
        except BaseException:
            _close(backend)
            raise
        predictor.load_ms = _ms(start)
        logger.info(
            "loaded %s (%s on %s) in %.0f ms",
            bundle.root,
            predictor.model_name,
            predictor.runtime,
            predictor.load_ms,
        )
        return predictor

    @property
    def model_name(self) -> str:
        return str(self.backend.model_name)

    @property
    def runtime(self) -> str:
        return str(self.backend.runtime)

    @property
    def bundle_name(self) -> str:
        return self.bundle.root.name

    def predict_file(self, path: str | Path, *, override_gate: bool = False) -> Prediction:
        """Decode, gate, preprocess, infer and calibrate the image at ``path``.

        Raises :class:`~cxr_core.errors.ImageDecodeError` for a file that is not a readable image and
        :class:`~cxr_core.input_gate.ImageRefusedError` for one the gate refuses
        (:class:`~cxr_core.gate_signals.GateRefusedError`, with every signal's verdict, when a learned
        signal refuses it). ``override_gate`` scores an image the learned signals refuse ("score
        anyway"): the result then carries the overridden reasons. The rules on the file (DICOM
        modality, size, colour) cannot be overridden.
        """
        start = time.perf_counter_ns()
        decoded = decode_image(path)
        decode_ms = _ms(start)
        return self._predict(decoded, str(path), {"decode": decode_ms}, override_gate)

    def predict_photo(
        self, path: str | Path, *, corners: object = None, override_gate: bool = False
    ) -> Prediction:
        """Score a phone photo of a film: :func:`cxr_core.capture.capture_film` finds the film (or takes
        ``corners``, TL, TR, BR, BL in photo pixels), checks the photo and rectifies it; the grey film
        then goes through the same input gate, preprocessing and learned gate as any file.

        Raises :class:`~cxr_core.capture.PhotoRefusedError` (reason, fix, quality figures) for an
        unusable photo, besides everything :meth:`predict_file` raises. The result's ``photo`` holds the
        corners, whether they were found or given, and the quality figures.
        """
        from cxr_core.capture import capture_film

        start = time.perf_counter_ns()
        captured = capture_film(path, corners=corners)
        timings = {"capture": _ms(start)}
        prediction = self._predict(captured.image, str(path), timings, override_gate)
        return dataclasses.replace(prediction, photo=captured.photo_input())

    def predict_image(self, decoded: DecodedImage, source: str, *, override_gate: bool = False) -> Prediction:
        """Gate, preprocess, infer and calibrate an image decoded by the caller (e.g. from bytes)."""
        return self._predict(decoded, source, {}, override_gate)

    def _predict(
        self, decoded: DecodedImage, source: str, timings: dict[str, float], override_gate: bool = False
    ) -> Prediction:
        start = time.perf_counter_ns()
        warnings = self.gate.enforce(decoded, source)
        timings["gate"] = _ms(start)

        # Every signal runs, so a refusal reports each one's verdict (the study and the JSON need them).
        # The image signals run on the gate thread beside the model (a large image's quality checks
        # from before preprocessing); a refused image's scores are computed and dropped.
        gate = self.learned_gate
        early = None
        if decoded.pixels.size >= EARLY_IMAGE_SIGNAL_PIXELS and gate.has_image_only_signals:
            early = self._gate_thread.submit(gate.image_only, decoded)
        try:
            start = time.perf_counter_ns()
            height, width = decoded.pixels.shape
            geometry = compute_geometry(height, width, self._spec)
            batch = preprocess(decoded.pixels, self._spec)[None]
            timings["preprocess"] = _ms(start)

            before = self._gate_thread.submit(
                gate.before_inference, decoded, batch, image_only_done=early is not None
            )
            start = time.perf_counter_ns()
            try:
                outputs = self.backend(batch)
            finally:
                timings["inference"] = _ms(start)
                wait([before])  # never leave the gate running past this call, even when the model failed
        finally:
            if early is not None:
                wait([early])  # nor when preprocessing failed

        # learned_gate: the gate's wall time after the model returns (the wait for the image signals,
        # then the output signals). What running beside the model costs it shows in the model's own
        # time: benchmarks.gate_study and edge-bench compare with the same prediction without the gate.
        start = time.perf_counter_ns()
        decisions = (early.result() if early is not None else []) + before.result()
        probabilities, feature_map = self._check_outputs(outputs, source)
        decisions += gate.after_inference({**outputs, "feature_map": feature_map[None]})
        overridden = gate.decide(decisions, source, override_gate)
        timings["learned_gate"] = _ms(start)
        if overridden:
            warnings = (*warnings, f"{OVERRIDE_WARNING}: {'; '.join(overridden)}")

        start = time.perf_counter_ns()
        calibrated = calibrate(probabilities, self.operating_points)
        rows = zip(
            self.labels, probabilities, calibrated, self.operating_points, self.threshold_notes, strict=True
        )
        findings = tuple(
            FindingResult(label, float(p), round(float(c) * 100.0, 1), t, bool(p >= t), note)
            for label, p, c, t, note in rows
        )
        timings["calibrate"] = _ms(start)
        return Prediction(
            source=source,
            image=decoded,
            findings=findings,
            warnings=self._bundle_warnings + tuple(warnings),
            notices=self.notices,
            model_information=self.model_information,
            gate_signals=tuple(decisions),
            gate_override=overridden,
            timings_ms=timings,
            model_name=self.model_name,
            runtime=self.runtime,
            bundle_name=self.bundle_name,
            revision=self.revision,
            feature_map=feature_map,
            cam_weight=self._weight,
            geometry=geometry,
        )

    def _check_outputs(
        self, outputs: Mapping[str, NDArray[Any]], source: str
    ) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        missing = [role for role in ("probabilities", "feature_map") if role not in outputs]
        if missing:
            raise PredictionError(
                f"{source}: model {self.model_name!r} returned {sorted(outputs)}; missing {missing}"
            )
        probs = np.asarray(outputs["probabilities"], dtype=np.float64)
        fmap = np.asarray(outputs["feature_map"], dtype=np.float32)
        labels, channels = len(self.labels), self._weight.shape[1]
        if probs.shape != (1, labels):
            raise PredictionError(
                f"{source}: model {self.model_name!r} returned probabilities of shape "
                f"{probs.shape}; expected (1, {labels}) for the bundle's labels"
            )
        if fmap.ndim != 4 or fmap.shape[:2] != (1, channels):
            raise PredictionError(
                f"{source}: model {self.model_name!r} returned a feature map of shape "
                f"{fmap.shape}; expected (1, {channels}, h, w) for the CAM weights"
            )
        if not (np.isfinite(probs).all() and np.isfinite(fmap).all()):
            raise PredictionError(f"{source}: model {self.model_name!r} returned NaN or infinite values")
        # Dequantized outputs may sit a rounding step outside [0, 1].
        return np.clip(probs[0], 0.0, 1.0), np.ascontiguousarray(fmap[0])

    def wait_until_prepared(self, timeout: float | None = None) -> bool:
        """Wait for the learned gate's background preparation (:meth:`LearnedGate.wait_until_prepared`)."""
        return self.learned_gate.wait_until_prepared(timeout)

    def close(self) -> None:
        """Release the backend and the learned gate's own models (its autoencoder session)."""
        self._gate_thread.shutdown(wait=True)
        _close(self.backend)
        self.learned_gate.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Predictor(bundle={str(self.bundle.root)!r}, model={self.model_name!r}, "
            f"runtime={self.runtime!r})"
        )


def _close(backend: object) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()
