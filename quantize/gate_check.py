"""Refuse to publish a bundle whose learned gate refuses too many of its own validation images.

After the bundle's gate parts are fitted and every threshold is set, the *whole* learned gate (every
signal the staged bundle carries, :func:`cxr_core.gate_signals.learned_gate_for`) runs through each
model file exactly as on the device (the :class:`~cxr_core.predictor.Predictor`, minus the rules on
the file, which judge DICOM tags, size and colour rather than the model's training data) over the
held-out validation images. Each signal's threshold accepts 99% of them on its own; together they
refuse more. A bundle whose combined false refusal rate exceeds :data:`MAX_VALIDATION_FRR` (2%) on
any format would turn away too many genuine radiographs: ``cxr-export`` refuses to publish it
(:class:`GateRefusalRateError`, nothing written), unless the user overrides it
(``ExportRequest.enforce_refusal_rate=False``, ``cxr-export --allow-high-refusal-rate``). The rates
are recorded in the manifest (``gate_validation``) and printed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cxr_core.bundle import GateValidation, GateValidationModel, Manifest, load_bundle
from cxr_core.bundle.writer import write_manifest
from cxr_core.errors import CxrEdgeError
from cxr_core.input_gate import InputGate
from cxr_core.predictor import Predictor
from cxr_core.runtime import open_backend

logger = logging.getLogger(__name__)

#: The largest share of validation images the whole learned gate may refuse (issue 12: 2%).
MAX_VALIDATION_FRR = 0.02


class GateRefusalRateError(CxrEdgeError, RuntimeError):
    """The learned gate refuses more validation images than allowed; the bundle is not published."""

    def __init__(self, message: str, validation: GateValidation) -> None:
        super().__init__(message)
        self.validation = validation


def measure_model(bundle_dir: Path, model_name: str, images: Sequence[Path]) -> GateValidationModel | None:
    """The learned gate of ``model_name`` over ``images``; None when the bundle has no learned signal."""
    bundle = load_bundle(bundle_dir, verify=False)  # the staged folder this export just wrote and hashed
    backend = open_backend(bundle, model=model_name, threads=None)
    # No rules on the file: the validation images are the training data's own (small phantoms may be
    # under the size rule's 256 px); only the learned signals are measured.
    with Predictor(bundle, backend, gate=InputGate(checks=())) as predictor:
        if not predictor.learned_gate.signals:
            return None
        refused = 0
        by_signal = dict.fromkeys(predictor.learned_gate.signals, 0)
        for path in images:
            # override: every signal's verdict comes back with the result instead of an exception
            decisions = predictor.predict_file(path, override_gate=True).gate_signals
            rejecting = [d.signal for d in decisions if not d.accepted]
            refused += bool(rejecting)
            for signal in set(rejecting):
                by_signal[signal] = by_signal.get(signal, 0) + 1
    count = len(images)
    return GateValidationModel(
        images=count,
        refused=refused,
        false_refusal_rate=round(refused / count, 4) if count else 0.0,
        refused_by_signal=by_signal,
    )


def measure_validation(
    bundle_dir: Path,
    model_names: Sequence[str],
    images: Sequence[Path],
    description: str,
    limit: float = MAX_VALIDATION_FRR,
    enforced: bool = True,
) -> GateValidation | None:
    """Every model's learned gate over the validation ``images``; None without a learned gate."""
    if not images:
        return None
    rows = {}
    for name in model_names:
        row = measure_model(bundle_dir, name, images)
        if row is not None:
            rows[name] = row
            logger.info(
                "learned gate on %s: %d of %d validation images refused (%.1f%%; limit %.0f%%)",
                name,
                row.refused,
                row.images,
                100 * row.false_refusal_rate,
                100 * limit,
            )
    if not rows:
        return None
    return GateValidation(images=description, max_false_refusal_rate=limit, enforced=enforced, models=rows)


def check_refusal_rate(validation: GateValidation) -> None:
    """Raise :class:`GateRefusalRateError` naming each format whose rate exceeds the limit."""
    limit = validation.max_false_refusal_rate
    over = {name: row for name, row in validation.models.items() if row.false_refusal_rate > limit}
    if not over:
        return
    detail = "; ".join(
        f"{name}: {row.refused} of {row.images} ({row.false_refusal_rate:.1%}, by "
        + ", ".join(f"{signal} {n}" for signal, n in row.refused_by_signal.items() if n)
        + ")"
        for name, row in over.items()
    )
    raise GateRefusalRateError(
        f"the learned input gate refuses more than {limit:.0%} of the validation images ({detail}), so "
        "the bundle would turn away too many genuine images; nothing was written. Use more training and "
        "validation images or a higher ExportRequest.gate_acceptance, or publish anyway with "
        "--allow-high-refusal-rate",
        validation,
    )


def describe(validation: GateValidation) -> list[str]:
    """One line per model for the export's printout."""
    return [
        f"learned gate on {name}: refused {row.refused} of {row.images} validation images "
        f"({row.false_refusal_rate:.1%}; limit {validation.max_false_refusal_rate:.0%})"
        for name, row in validation.models.items()
    ]


def validate_staged(
    folder: Path, manifest: Manifest, images: Sequence[Path], enforce: bool = True
) -> Manifest:
    """Measure the staged bundle's learned gate on ``images``; return ``manifest`` with the rates.

    Writes an unsigned manifest into the staging ``folder`` so the bundle can be read as a device
    reads it; raises :class:`GateRefusalRateError` (the caller's staging removes the folder) when
    ``enforce`` and a format refuses more than :data:`MAX_VALIDATION_FRR` of them.
    """
    write_manifest(folder, manifest, sign=False)
    names = [entry.name for entry in manifest.models]
    description = f"{len(images)} held-out validation images (the images the thresholds were set on)"
    validation = measure_validation(folder, names, images, description, enforced=enforce)
    if validation is None:
        return manifest
    if enforce:
        check_refusal_rate(validation)
    return replace(manifest, gate_validation=validation)
