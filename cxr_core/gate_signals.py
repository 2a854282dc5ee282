"""The learned input gate's signals, one contract for all of them, and the decision they make together.

A bundle can carry several complementary signals that ask "can the model vouch for this image?"
(docs/input-gate.md): image-quality checks and an autoencoder, which look at the image before
inference (:class:`ImageSignal`), and the feature-space distance, which reads the classifier's own
outputs after it (:class:`OutputSignal`). Each returns :class:`SignalDecision` rows: its score, the
threshold set on in-distribution data, whether it accepts, and in plain words why not and what the
user can do about it. :class:`LearnedGate` runs a bundle's signals for one model file and refuses
the image (:class:`GateRefusedError`, carrying every decision) unless the user explicitly asked to
score it anyway, in which case the override travels with the result.

The rule-based checks on the file (:mod:`cxr_core.input_gate`: DICOM modality, size, colour) come
first and cannot be overridden.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from cxr_core.input_gate import ImageRefusedError

if TYPE_CHECKING:
    from cxr_core.bundle import Bundle
    from cxr_core.imaging import DecodedImage

logger = logging.getLogger(__name__)

#: With every prediction of a bundle exported without a learned gate (older, or from a folder of images).
NO_LEARNED_GATE_WARNING = (
    "this bundle has no learned out-of-distribution gate: an image unlike the training data is not "
    "detected (re-export it from its training data with this cxr-edge)"
)
#: Added to a learned signal's refusal when the bundle was trained on synthetic phantoms.
SYNTHETIC_REFUSAL_NOTE = "(it was trained on synthetic phantoms, so real radiographs are refused)"


def share_acceptance(acceptance: float, parts: int) -> float:
    """The acceptance each of ``parts`` independent signals gets so that together they refuse at most
    ``1 - acceptance`` of in-distribution images (a union bound): 99% over three parts -> 99.67% each.
    """
    return 1.0 - (1.0 - acceptance) / parts


@dataclass(frozen=True)
class SignalDecision:
    """One signal's verdict on one image.

    ``score`` against ``threshold``: with ``refuse_above`` a score above the threshold refuses (a
    distance), otherwise a score below it does (a similarity such as SSIM). ``reason`` says in plain
    words why the image was refused (None when accepted); ``fix`` what the user can do, when something
    can be done ("rotate the image"). ``learned`` is False for the image-quality checks, which say
    what is wrong with the picture rather than that it is unlike the training data.
    """

    signal: str
    score: float
    threshold: float
    refuse_above: bool
    accepted: bool
    reason: str | None = None
    fix: str | None = None
    learned: bool = True

    @classmethod
    def measure(
        cls,
        signal: str,
        score: float,
        threshold: float,
        *,
        refuse_above: bool = True,
        reason: str = "",
        fix: str | None = None,
        learned: bool = True,
    ) -> SignalDecision:
        """Compare ``score`` with ``threshold`` (a non-finite score never passes); ``reason`` applies
        only when the image is refused."""
        score = float(score)
        if not math.isfinite(score):
            accepted = False
        else:
            accepted = score <= threshold if refuse_above else score >= threshold
        return cls(
            signal=signal,
            score=score,
            threshold=float(threshold),
            refuse_above=refuse_above,
            accepted=bool(accepted),
            reason=None if accepted else (reason or f"{signal}: score {score:.3g} beyond {threshold:.3g}"),
            fix=None if accepted else fix,
            learned=learned,
        )

    def message(self) -> str:
        """The refusal in words, with the fix when there is one (empty for an accepted image)."""
        if self.accepted:
            return ""
        text = self.reason or self.signal
        return f"{text}: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "score": round(self.score, 4) if math.isfinite(self.score) else None,
            "threshold": round(self.threshold, 4),
            "refuse_above": self.refuse_above,
            "accepted": self.accepted,
            "reason": self.reason,
            "fix": self.fix,
            "learned": self.learned,
        }


@runtime_checkable
class ImageSignal(Protocol):
    """A signal that looks at the image before inference (quality checks, autoencoder).

    A signal may set ``needs_model_input = False`` (the quality checks): it reads only the decoded
    image, so the Predictor can start it before the image is preprocessed (:func:`needs_model_input`).
    """

    name: str

    def evaluate(self, image: DecodedImage, model_input: NDArray[np.float32]) -> list[SignalDecision]:
        """``image`` as decoded; ``model_input`` the preprocessed (1, C, H, W) batch the model gets."""
        ...


def needs_model_input(signal: ImageSignal) -> bool:
    """Whether ``signal`` reads the preprocessed model input (True unless it says otherwise)."""
    return bool(getattr(signal, "needs_model_input", True))


@runtime_checkable
class OutputSignal(Protocol):
    """A signal that reads the classifier's outputs (the feature-space distance)."""

    name: str

    def evaluate(self, outputs: Mapping[str, NDArray[Any]]) -> list[SignalDecision]:
        """``outputs`` by role (``probabilities``, ``feature_map``, ...), batch of one."""
        ...


class GateRefusedError(ImageRefusedError):
    """The learned gate refused an image; ``decisions`` holds every signal's verdict, accepted or not."""

    def __init__(
        self, path: str | Path, decisions: Sequence[SignalDecision], reasons: Sequence[str] | None = None
    ) -> None:
        self.decisions = tuple(decisions)
        if reasons is None:
            reasons = [d.message() for d in self.decisions if not d.accepted]
        super().__init__(path, reasons)


def refusal_reasons(decisions: Sequence[SignalDecision], synthetic: bool) -> list[str]:
    """The refusal messages of ``decisions``; a learned signal's says so when the model saw only phantoms."""
    reasons = []
    for decision in decisions:
        if decision.accepted:
            continue
        text = decision.message()
        if synthetic and decision.learned:
            text = f"{text} {SYNTHETIC_REFUSAL_NOTE}"
        reasons.append(text)
    return reasons


class LearnedGate:
    """A bundle's learned signals for one model file, run around its inference.

    ``image_signals`` run on the decoded image and the model input, ``output_signals`` on the
    model's outputs; :meth:`decide` refuses the image when any signal refuses, unless ``override``.
    """

    def __init__(
        self,
        image_signals: Sequence[ImageSignal] = (),
        output_signals: Sequence[OutputSignal] = (),
        *,
        synthetic: bool = False,
        warnings: Sequence[str] = (),
    ) -> None:
        self.image_signals = tuple(image_signals)
        self.output_signals = tuple(output_signals)
        self.synthetic = synthetic
        #: Shown with every prediction (e.g. that the bundle has no learned gate).
        self.warnings = tuple(warnings)

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(s.name for s in (*self.image_signals, *self.output_signals))

    @property
    def has_image_only_signals(self) -> bool:
        """Whether a signal reads the decoded image alone (see :meth:`image_only`)."""
        return any(not needs_model_input(s) for s in self.image_signals)

    def image_only(self, image: DecodedImage) -> list[SignalDecision]:
        """The image signals that read only the decoded image (the quality checks), in their order."""
        decisions: list[SignalDecision] = []
        for signal in self.image_signals:
            if not needs_model_input(signal):
                decisions.extend(signal.evaluate(image, None))  # type: ignore[arg-type]
        return decisions

    def before_inference(
        self, image: DecodedImage, model_input: NDArray[np.float32], *, image_only_done: bool = False
    ) -> list[SignalDecision]:
        """Every image signal, in order; with ``image_only_done`` only those that read the model input
        (the caller ran :meth:`image_only` already and puts its decisions first)."""
        decisions: list[SignalDecision] = []
        for signal in self.image_signals:
            if image_only_done and not needs_model_input(signal):
                continue
            decisions.extend(signal.evaluate(image, model_input))
        return decisions

    def after_inference(self, outputs: Mapping[str, NDArray[Any]]) -> list[SignalDecision]:
        decisions: list[SignalDecision] = []
        for signal in self.output_signals:
            decisions.extend(signal.evaluate(outputs))
        return decisions

    def wait_until_prepared(self, timeout: float | None = None) -> bool:
        """Wait for what the signals prepare in the background after a bundle opens (the feature
        gate's low-rank form); True when all of it is done. Predictions never need to wait: until
        then they take a slower path to the same scores. Benchmarks wait, to time the steady state."""
        done = True
        for signal in (*self.image_signals, *self.output_signals):
            prepared = getattr(signal, "wait_until_prepared", None)
            if callable(prepared):
                done = bool(prepared(timeout)) and done
        return done

    def close(self) -> None:
        """Release what the signals hold open (e.g. the autoencoder's runtime session)."""
        for signal in (*self.image_signals, *self.output_signals):
            close = getattr(signal, "close", None)
            if callable(close):
                close()

    def decide(self, decisions: Sequence[SignalDecision], source: str, override: bool) -> tuple[str, ...]:
        """Raise :class:`GateRefusedError` when a signal refuses and ``override`` is False; with
        ``override`` return the refusal reasons the result must carry (empty when all accepted)."""
        reasons = refusal_reasons(decisions, self.synthetic)
        if not reasons:
            return ()
        if not override:
            raise GateRefusedError(source, decisions, reasons)
        logger.warning("%s: scored at the user's request although the gate refused it", source)
        return tuple(reasons)


def learned_gate_for(bundle: Bundle, model_name: str) -> LearnedGate:
    """Every learned signal ``bundle`` carries, set up for its model file ``model_name``."""
    from cxr_core.autoencoder_gate import AutoencoderSignal, missing_autoencoder_warning
    from cxr_core.feature_gate import FeatureGateSignal
    from cxr_core.image_quality import QualityChecks

    image_signals: list[ImageSignal] = []
    output_signals: list[OutputSignal] = []
    warnings: list[str] = []
    feature = FeatureGateSignal.from_bundle(bundle, model_name)
    if feature is not None:
        output_signals.append(feature)
    quality = QualityChecks.from_bundle(bundle, model_name)
    if quality is not None:
        image_signals.append(quality)
    autoencoder = AutoencoderSignal.from_bundle(bundle, model_name)
    if autoencoder is not None:
        image_signals.append(autoencoder)
    elif (missing := missing_autoencoder_warning(bundle, model_name)) is not None:
        warnings.append(missing)
    if not any(getattr(s, "learned", True) for s in (*output_signals, *image_signals)):
        warnings.append(NO_LEARNED_GATE_WARNING)
    return LearnedGate(image_signals, output_signals, synthetic=bundle.synthetic, warnings=warnings)
