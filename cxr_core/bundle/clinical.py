"""What a bundle says about itself to a clinician: intended use, training data, measured performance.

Part of the typed manifest (:class:`~cxr_core.bundle.schema.Manifest`, key ``clinical``). The export
writes it from the checkpoint's data set and the held-out labelled validation images; every screen,
report and output that shows a result reads it from here:

* :attr:`ClinicalInfo.synthetic` -- trained on the synthetic phantom set: the permanent
  :data:`SYNTHETIC_MARK` is shown with every result, and no setting can hide it;
* per finding, the operating point's reliability: a threshold that is a fallback (no validation
  positives) or rests on fewer than :data:`MIN_RELIABLE_POSITIVES` positives is marked
  "threshold unreliable" with the count, in every output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxr_core.bundle.errors import BundleError

if TYPE_CHECKING:  # schema imports this module
    from cxr_core.bundle.schema import RevisionInfo

#: Shown with every result of a bundle trained on synthetic data, in the app header, the report,
#: every heat-map PNG, cxr-predict's table and JSON. Not a setting.
SYNTHETIC_MARK = "Synthetic training data: not for patients"
#: A finding's operating point resting on fewer validation positives than this is "unreliable".
MIN_RELIABLE_POSITIVES = 10
DEFAULT_INTENDED_USE = (
    "Decision support for trained clinicians reading frontal chest radiographs of adults: ranks 14 "
    "radiographic findings to help prioritise reading. Not a diagnosis; not for use without a clinician; "
    "not validated on children, lateral views, other body parts or photographs of films."
)
#: Where each data set's labels come from (shown as the bundle's label source).
LABEL_SOURCES = {
    "chestxray14": (
        "NLP-mined from radiology reports (ChestX-ray14, Wang et al. 2017); not radiologist-verified"
    ),
    "chexpert": "CheXpert labeler on radiology reports (Irvin et al. 2019), with uncertain labels",
    "synthetic": "rendered by cxr-edge's phantom generator: exact by construction, not radiographs",
}


def _where(where: str, key: str) -> str:
    return f"{where}.{key}"


def _float_or_none(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BundleError(f"{where}: got {value!r}; expected a number or null")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise BundleError(f"{where}: got {value!r}; expected a finite number or null")
    return number


def _interval(value: Any, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise BundleError(f"{where}: got {value!r}; expected [low, high] or null")
    low, high = (_float_or_none(v, where) for v in value)
    if low is None or high is None or low > high:
        raise BundleError(f"{where}: got {value!r}; expected [low, high] with low <= high")
    return (low, high)


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BundleError(f"{where}: got {value!r}; expected a count >= 0 or null")
    return int(value)


def _origin(revision: RevisionInfo | None) -> str:
    """`` in rev 2 (Clinic A, 2026-05-01), scored with onnx-int8 (...)``, or empty without a revision."""
    if revision is None:
        return ""
    model = revision.scored_with()
    return f" in {revision.describe()}" + (f", scored with {model}" if model else "")


@dataclass(frozen=True)
class FindingPerformance:
    """One finding on the held-out validation images, and how its operating point was set."""

    label: str
    positives: int
    negatives: int
    auc: float | None
    auc_ci: tuple[float, float] | None
    sensitivity: float | None
    sensitivity_ci: tuple[float, float] | None
    specificity: float | None
    specificity_ci: tuple[float, float] | None
    operating_point: float
    threshold_positives: int | None
    threshold_source: str

    @property
    def threshold_reliable(self) -> bool:
        return (
            self.threshold_source != "fallback"
            and self.threshold_positives is not None
            and self.threshold_positives >= MIN_RELIABLE_POSITIVES
        )

    def threshold_note(self, revision: RevisionInfo | None = None) -> str | None:
        """``None`` for a reliable threshold, else the words every output shows.

        A threshold set on site images (``cxr-calibrate``) says so, with the bundle's ``revision``
        (site, date, and the model that scored the images) when given.
        """
        if self.threshold_reliable:
            return None
        if self.threshold_source == "fallback":
            return "threshold unreliable: fallback 0.5 (no validation positives to set it)"
        count = "unknown" if self.threshold_positives is None else str(self.threshold_positives)
        if self.threshold_source == "site":
            origin = _origin(revision)
            return f"threshold unreliable: set on {count} site positives (< {MIN_RELIABLE_POSITIVES}){origin}"
        return f"threshold unreliable: set on {count} validation positives (< {MIN_RELIABLE_POSITIVES})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> FindingPerformance:
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: got {data!r:.60}; expected a JSON object")
        try:
            label = data["label"]
            point = data["operating_point"]
        except KeyError as exc:
            raise BundleError(f"{where}: missing key {exc.args[0]!r}") from exc
        if not isinstance(label, str) or not label:
            raise BundleError(f"{where}.label: got {label!r}; expected a finding name")
        op = _float_or_none(point, _where(where, "operating_point"))
        if op is None or not 0.0 <= op <= 1.0:
            raise BundleError(f"{where}.operating_point: got {point!r}; expected a number in [0, 1]")
        source = data.get("threshold_source", "youden")
        if source not in ("youden", "fallback", "site"):
            raise BundleError(f"{where}.threshold_source: got {source!r}; expected youden, fallback or site")
        return cls(
            label=label,
            positives=_count(data.get("positives", 0), _where(where, "positives")) or 0,
            negatives=_count(data.get("negatives", 0), _where(where, "negatives")) or 0,
            auc=_float_or_none(data.get("auc"), _where(where, "auc")),
            auc_ci=_interval(data.get("auc_ci"), _where(where, "auc_ci")),
            sensitivity=_float_or_none(data.get("sensitivity"), _where(where, "sensitivity")),
            sensitivity_ci=_interval(data.get("sensitivity_ci"), _where(where, "sensitivity_ci")),
            specificity=_float_or_none(data.get("specificity"), _where(where, "specificity")),
            specificity_ci=_interval(data.get("specificity_ci"), _where(where, "specificity_ci")),
            operating_point=op,
            threshold_positives=_count(data.get("threshold_positives"), _where(where, "threshold_positives")),
            threshold_source=str(source),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "positives": self.positives,
            "negatives": self.negatives,
            "auc": self.auc,
            "auc_ci": None if self.auc_ci is None else list(self.auc_ci),
            "sensitivity": self.sensitivity,
            "sensitivity_ci": None if self.sensitivity_ci is None else list(self.sensitivity_ci),
            "specificity": self.specificity,
            "specificity_ci": None if self.specificity_ci is None else list(self.specificity_ci),
            "operating_point": self.operating_point,
            "threshold_positives": self.threshold_positives,
            "threshold_source": self.threshold_source,
        }


@dataclass(frozen=True)
class Validation:
    """Where and how the performance figures were measured, and the figures."""

    source: str
    images: int
    mean_auc: float | None
    mean_auc_ci: tuple[float, float] | None
    bootstrap_resamples: int
    findings: tuple[FindingPerformance, ...]
    note: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Validation:
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: got {data!r:.60}; expected a JSON object")
        findings = data.get("findings") or []
        if not isinstance(findings, list):
            raise BundleError(f"{where}.findings: got {findings!r:.60}; expected a list")
        return cls(
            source=str(data.get("source") or ""),
            images=_count(data.get("images", 0), _where(where, "images")) or 0,
            mean_auc=_float_or_none(data.get("mean_auc"), _where(where, "mean_auc")),
            mean_auc_ci=_interval(data.get("mean_auc_ci"), _where(where, "mean_auc_ci")),
            bootstrap_resamples=_count(
                data.get("bootstrap_resamples", 0), _where(where, "bootstrap_resamples")
            )
            or 0,
            findings=tuple(
                FindingPerformance.from_dict(f, f"{where}.findings[{i}]") for i, f in enumerate(findings)
            ),
            note=None if data.get("note") is None else str(data["note"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "images": self.images,
            "mean_auc": self.mean_auc,
            "mean_auc_ci": None if self.mean_auc_ci is None else list(self.mean_auc_ci),
            "bootstrap_resamples": self.bootstrap_resamples,
            "findings": [f.to_dict() for f in self.findings],
            "note": self.note,
        }


@dataclass(frozen=True)
class TrainingData:
    """The data set the model learned from."""

    dataset: str
    label_source: str
    uncertainty_policy: str | None = None
    frontal_only: bool | None = None
    images: dict[str, int] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TrainingData:
        if not isinstance(data, Mapping) or not isinstance(data.get("dataset"), str):
            raise BundleError(f"{where}: got {data!r:.80}; expected an object with a 'dataset' name")
        counts = {}
        for key in ("images", "patients"):
            raw = data.get(key) or {}
            if not isinstance(raw, Mapping):
                raise BundleError(f"{where}.{key}: got {raw!r:.60}; expected split -> count")
            counts[key] = {str(k): _count(v, f"{where}.{key}.{k}") or 0 for k, v in raw.items()}
        frontal = data.get("frontal_only")
        return cls(
            dataset=data["dataset"],
            label_source=str(data.get("label_source") or "unknown"),
            uncertainty_policy=None
            if data.get("uncertainty_policy") is None
            else str(data["uncertainty_policy"]),
            frontal_only=None if frontal is None else bool(frontal),
            images=counts["images"],
            patients=counts["patients"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "label_source": self.label_source,
            "uncertainty_policy": self.uncertainty_policy,
            "frontal_only": self.frontal_only,
            "images": dict(self.images),
            "patients": dict(self.patients),
        }


@dataclass(frozen=True)
class ClinicalInfo:
    """Intended use, training data and validation figures of a bundle."""

    intended_use: str
    synthetic: bool
    training_data: TrainingData
    validation: Validation | None = None

    @property
    def notice(self) -> str | None:
        """The mark every result of this bundle carries, or None."""
        return SYNTHETIC_MARK if self.synthetic else None

    def summary(self) -> list[str]:
        """Plain-language lines for a screen or a report: training data, validation, thresholds."""
        data = self.training_data
        images = sum(data.images.values())
        patients = sum(data.patients.values())
        counts = f"{images} images, {patients} patients" if images else "image counts not recorded"
        lines = [f"Trained on: {data.dataset} ({counts}); labels: {data.label_source}"]
        if self.synthetic:
            lines.insert(0, SYNTHETIC_MARK)
        validation = self.validation
        if validation is None or validation.mean_auc is None:
            lines.append("Validation: no figures in this bundle")
            return lines
        ci = validation.mean_auc_ci
        interval = f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
        lines.append(f"Validation mean AUC {validation.mean_auc:.2f}{interval} on {validation.images} images")
        unreliable = [f.label for f in validation.findings if not f.threshold_reliable]
        if unreliable:
            lines.append(f"Threshold unreliable for {len(unreliable)} of {len(validation.findings)} findings")
        return lines

    def finding(self, label: str) -> FindingPerformance | None:
        if self.validation is None:
            return None
        return next((f for f in self.validation.findings if f.label == label), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ClinicalInfo:
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: got {data!r:.60}; expected a JSON object")
        training = TrainingData.from_dict(data.get("training_data") or {}, f"{where}.training_data")
        synthetic = data.get("synthetic")
        if not isinstance(synthetic, bool):
            raise BundleError(f"{where}.synthetic: got {synthetic!r}; expected true or false")
        if training.dataset == "synthetic" and not synthetic:
            raise BundleError(
                f"{where}.synthetic: false, but the training data set is 'synthetic'; the synthetic mark "
                "cannot be switched off"
            )
        validation = data.get("validation")
        return cls(
            intended_use=str(data.get("intended_use") or DEFAULT_INTENDED_USE),
            synthetic=synthetic,
            training_data=training,
            validation=None
            if validation is None
            else Validation.from_dict(validation, f"{where}.validation"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "intended_use": self.intended_use,
            "synthetic": self.synthetic,
            "training_data": self.training_data.to_dict(),
            "validation": None if self.validation is None else self.validation.to_dict(),
        }


def legacy_clinical(training_dataset: str | None) -> ClinicalInfo:
    """What can be said of a bundle exported before ``clinical`` existed: its data set, nothing measured."""
    dataset = training_dataset or "unknown"
    return ClinicalInfo(
        intended_use=DEFAULT_INTENDED_USE,
        synthetic=dataset == "synthetic",
        training_data=TrainingData(dataset=dataset, label_source=LABEL_SOURCES.get(dataset, "unknown")),
        validation=None,
    )
