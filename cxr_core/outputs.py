"""The typed ``predictions.json`` document that ``cxr-predict --json`` writes.

The document is built from these dataclasses and serialised with their ``to_dict``; its JSON Schema
(``docs/schemas/predictions.schema.json``) is generated from the same classes
(:mod:`cxr_core.json_schema`), so the file and its schema cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from cxr_core.capture_common import FILE_INPUT, input_record
from cxr_core.imaging import ImageProvenance
from cxr_core.predictor import FindingResult, Prediction


@dataclass(frozen=True)
class HeatmapRef:
    """The heat-map PNG written for an image, and the finding it shows."""

    finding: str
    file: str


@dataclass(frozen=True)
class GateSignalRecord:
    """One learned-gate signal's verdict (:class:`cxr_core.gate_signals.SignalDecision`).

    ``score`` is null when it was not a finite number (such an image is refused). With
    ``refuse_above`` a score above ``threshold`` refuses, otherwise one below it does.
    """

    signal: str
    score: float | None
    threshold: float
    refuse_above: bool
    accepted: bool
    reason: str | None
    fix: str | None
    learned: bool


@dataclass(frozen=True)
class BundleRevisionRecord:
    """The site revision (``cxr-calibrate``) whose operating points scored the image.

    ``description`` is how every output names it (``rev 2 (Clinic A, 2026-05-01)``); ``model``,
    ``model_file`` and ``runtime`` say which model of the bundle set the points (null: not recorded).
    """

    number: int
    site: str
    created_at: str
    description: str
    model: str | None
    model_file: str | None
    runtime: str | None


def revision_record(revision: Any) -> BundleRevisionRecord | None:
    """The record of a :class:`cxr_core.bundle.RevisionInfo` (None: an exported bundle)."""
    if revision is None:
        return None
    return BundleRevisionRecord(
        number=revision.number,
        site=revision.site,
        created_at=revision.created_at,
        description=revision.describe(),
        model=revision.model,
        model_file=revision.model_file,
        runtime=revision.runtime,
    )


@dataclass(frozen=True)
class InputRecord:
    """What was scored: an image ``file``, or a ``photo`` of a film (``cxr-predict --photo``).

    For a photo: the film's ``corners`` in the photo's pixels (top-left, top-right, bottom-right,
    bottom-left), whether they were ``detected`` (False: given by the user), the ``quality`` figures
    (docs/photos.md) and the ``photo_size`` (width, height). All null for a file.
    """

    kind: Literal["file", "photo"]
    corners: list[list[float]] | None
    detected: bool | None
    quality: dict[str, float] | None
    photo_size: list[int] | None


@dataclass(frozen=True)
class PredictionRecord:
    """One scored image: every finding in output order, warnings, timings and what the file was."""

    source: str
    bundle: str
    model: str
    runtime: str
    findings: list[FindingResult]
    warnings: list[str]
    timings_ms: dict[str, float]
    provenance: ImageProvenance
    notices: list[str] = field(default_factory=list)
    gate_signals: list[GateSignalRecord] = field(default_factory=list)
    gate_override: list[str] = field(default_factory=list)
    heatmap: HeatmapRef | None = None
    input: InputRecord = field(default_factory=lambda: InputRecord(**FILE_INPUT))  # type: ignore[arg-type]
    #: The bundle's site revision (null: an exported bundle, operating points from its validation).
    bundle_revision: BundleRevisionRecord | None = None

    @classmethod
    def from_prediction(cls, prediction: Prediction, heatmap: HeatmapRef | None = None) -> PredictionRecord:
        return cls(
            source=prediction.source,
            bundle=prediction.bundle_name,
            model=prediction.model_name,
            runtime=prediction.runtime,
            findings=list(prediction.findings),
            warnings=list(prediction.warnings),
            timings_ms={k: round(v, 3) for k, v in prediction.timings_ms.items()},
            provenance=prediction.image.provenance,
            notices=list(prediction.notices),
            gate_signals=[GateSignalRecord(**d.to_dict()) for d in prediction.gate_signals],
            gate_override=list(prediction.gate_override),
            heatmap=heatmap,
            input=InputRecord(**input_record(prediction.photo)),  # type: ignore[arg-type]
            bundle_revision=revision_record(prediction.revision),
        )

    def to_dict(self) -> dict[str, Any]:
        provenance = dataclasses.asdict(self.provenance)
        provenance["notes"] = list(provenance["notes"])
        return {
            "source": self.source,
            "bundle": self.bundle,
            "model": self.model,
            "runtime": self.runtime,
            "findings": [f.to_dict() for f in self.findings],
            "warnings": list(self.warnings),
            "timings_ms": dict(self.timings_ms),
            "provenance": provenance,
            "notices": list(self.notices),
            "gate_signals": [dataclasses.asdict(s) for s in self.gate_signals],
            "gate_override": list(self.gate_override),
            "heatmap": None if self.heatmap is None else dataclasses.asdict(self.heatmap),
            "input": dataclasses.asdict(self.input),
            "bundle_revision": None
            if self.bundle_revision is None
            else dataclasses.asdict(self.bundle_revision),
        }


@dataclass(frozen=True)
class FailureRecord:
    """A file that was not scored: the error type and every reason."""

    file: str
    error: str
    reasons: list[str]
    #: Every learned-gate signal's verdict when the learned gate refused the file (else empty).
    gate_signals: list[GateSignalRecord] = field(default_factory=list)
    #: What to do about it, when the refusal has a fix (a photo: "hold the phone parallel to the film").
    fix: str | None = None
    #: The quality figures of a refused photo (docs/photos.md); null for anything else.
    photo_quality: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "error": self.error,
            "reasons": list(self.reasons),
            "gate_signals": [dataclasses.asdict(s) for s in self.gate_signals],
            "fix": self.fix,
            "photo_quality": None if self.photo_quality is None else dict(self.photo_quality),
        }


@dataclass(frozen=True)
class Summary:
    """How many files were scored and how many were not."""

    scored: int
    failed: int


@dataclass(frozen=True)
class BundleTrust:
    """Whether the bundle's manifest was signed by a trusted key (docs/bundle-format.md).

    ``state`` is ``trusted``, or (loaded only with ``--allow-untrusted``) ``unsigned``,
    ``untrusted`` (a valid signature by a key not in the trusted list) or ``invalid``.
    """

    state: str
    key_id: str | None
    description: str


def bundle_trust(status: Any) -> BundleTrust | None:
    """The document's record of a :class:`cxr_core.bundle.signing.TrustStatus` (None: not checked)."""
    if status is None:
        return None
    return BundleTrust(state=status.state, key_id=status.key_id, description=status.describe())


@dataclass(frozen=True)
class PredictionsDocument:
    """What ``cxr-predict --json`` writes: the run, one record per scored image, one per failure."""

    tool: str
    version: str
    disclaimer: str
    score_definition: str
    synthetic_training_data: bool
    notices: list[str]
    bundle: str
    architecture: str
    model: str
    runtime: str
    threads: int | None
    load_ms: float
    labels: list[str]
    clinical: dict[str, Any]
    results: list[PredictionRecord] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    summary: Summary = field(default_factory=lambda: Summary(0, 0))
    bundle_trust: BundleTrust | None = None
    #: The bundle's site revision (null: an exported bundle); each result carries it too.
    bundle_revision: BundleRevisionRecord | None = field(default=None, metadata={"json": "optional"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "version": self.version,
            "disclaimer": self.disclaimer,
            "score_definition": self.score_definition,
            "synthetic_training_data": self.synthetic_training_data,
            "notices": list(self.notices),
            "bundle": self.bundle,
            "architecture": self.architecture,
            "model": self.model,
            "runtime": self.runtime,
            "threads": self.threads,
            "load_ms": self.load_ms,
            "labels": list(self.labels),
            "clinical": dict(self.clinical),
            "results": [r.to_dict() for r in self.results],
            "failures": [f.to_dict() for f in self.failures],
            "summary": dataclasses.asdict(self.summary),
            "bundle_trust": None if self.bundle_trust is None else dataclasses.asdict(self.bundle_trust),
            "bundle_revision": None
            if self.bundle_revision is None
            else dataclasses.asdict(self.bundle_revision),
        }
