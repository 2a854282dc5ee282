"""Which findings each synthetic image has: prevalence presets, co-occurrence and patients' follow-ups.

The label model is a small generative story. Every finding ``k`` appears on its own with a rate
``q_k``; on top of that a few *syndromes* switch on groups of findings together (heart failure:
Cardiomegaly + Effusion + Edema; infection: Pneumonia + Consolidation + Infiltration; malignancy:
Mass + Nodule + Effusion; COPD: Emphysema + Pneumothorax; chronic pleuro-parenchymal disease:
Fibrosis + Pleural_Thickening; post-operative/ICU: Atelectasis + Effusion + Infiltration). The
rates ``q_k`` are solved so that each finding's marginal prevalence is exactly the preset's.

Presets (per-image prevalence):

* ``realistic``: as in ChestX-ray14 (Wang et al. 2017): Infiltration 17.7 %, Effusion 11.9 %,
  Atelectasis 10.3 %, Nodule 5.6 %, Mass 5.2 %, Pneumothorax 4.7 %, Consolidation 4.2 %,
  Pleural_Thickening 3.0 %, Cardiomegaly 2.5 %, Emphysema 2.2 %, Edema 2.1 %, Fibrosis 1.5 %,
  Pneumonia 1.3 %, Hernia 0.2 %; about half the images have no finding.
* ``balanced`` (default): the same ranking but every finding at >= 8 %, so that a validation split
  of 1/8 of 2,000 images still holds about 20 positives of the rarest finding and its AUC means
  something (with ``realistic``, 2,000 images hold about 4 hernias). About a quarter of the images
  have no finding.

A patient's follow-ups are correlated: each follow-up keeps the previous image's findings with
probability :data:`PERSISTENCE`, otherwise draws afresh, which leaves the marginals unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cxr_core.errors import CxrEdgeError
from cxr_core.labels import CHESTXRAY14_LABELS


class SyntheticOptionError(CxrEdgeError, ValueError):
    """An option of the synthetic phantom set (count, size, workers, prevalence, view) is out of range."""


#: Probability that a follow-up image repeats the previous image's findings.
PERSISTENCE = 0.5

PREVALENCE_PRESETS: dict[str, dict[str, float]] = {
    "realistic": {
        "Atelectasis": 0.103,
        "Cardiomegaly": 0.025,
        "Effusion": 0.119,
        "Infiltration": 0.177,
        "Mass": 0.052,
        "Nodule": 0.056,
        "Pneumonia": 0.013,
        "Pneumothorax": 0.047,
        "Consolidation": 0.042,
        "Edema": 0.021,
        "Emphysema": 0.022,
        "Fibrosis": 0.015,
        "Pleural_Thickening": 0.030,
        "Hernia": 0.002,
    },
    "balanced": {
        "Atelectasis": 0.13,
        "Cardiomegaly": 0.09,
        "Effusion": 0.15,
        "Infiltration": 0.20,
        "Mass": 0.09,
        "Nodule": 0.09,
        "Pneumonia": 0.08,
        "Pneumothorax": 0.09,
        "Consolidation": 0.09,
        "Edema": 0.08,
        "Emphysema": 0.08,
        "Fibrosis": 0.08,
        "Pleural_Thickening": 0.08,
        "Hernia": 0.08,
    },
}

#: Syndromes: (name, {preset: probability}, {finding: probability given the syndrome}).
SYNDROMES: tuple[tuple[str, dict[str, float], dict[str, float]], ...] = (
    (
        "heart failure",
        {"realistic": 0.015, "balanced": 0.06},
        {"Cardiomegaly": 0.6, "Effusion": 0.7, "Edema": 0.6},
    ),
    (
        "infection",
        {"realistic": 0.012, "balanced": 0.07},
        {"Pneumonia": 0.6, "Consolidation": 0.5, "Infiltration": 0.6},
    ),
    ("malignancy", {"realistic": 0.02, "balanced": 0.06}, {"Mass": 0.6, "Nodule": 0.5, "Effusion": 0.3}),
    ("copd", {"realistic": 0.012, "balanced": 0.05}, {"Emphysema": 0.7, "Pneumothorax": 0.3}),
    (
        "chronic pleuro-parenchymal",
        {"realistic": 0.01, "balanced": 0.05},
        {"Fibrosis": 0.6, "Pleural_Thickening": 0.6},
    ),
    (
        "post-operative",
        {"realistic": 0.03, "balanced": 0.07},
        {"Atelectasis": 0.6, "Effusion": 0.5, "Infiltration": 0.3},
    ),
)

#: CheXpert-only signs drawn on top (support devices, rib fracture, widened mediastinum): {preset: rate}.
CHEXPERT_EXTRAS: dict[str, dict[str, float]] = {
    "Support Devices": {"realistic": 0.45, "balanced": 0.25},
    "Fracture": {"realistic": 0.04, "balanced": 0.08},
    "Enlarged Cardiomediastinum": {"realistic": 0.05, "balanced": 0.08},
}


def check_prevalence(prevalence: str) -> str:
    """Return ``prevalence`` if it names a preset, else raise ``ValueError`` with the choices."""
    if prevalence not in PREVALENCE_PRESETS:
        hint = difflib.get_close_matches(str(prevalence), list(PREVALENCE_PRESETS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise SyntheticOptionError(
            f"prevalence={prevalence!r}; expected one of {list(PREVALENCE_PRESETS)}{extra}"
        )
    return prevalence


@dataclass(frozen=True)
class LabelModel:
    """Independent rates plus syndromes; :meth:`sample` draws one image's ChestX-ray14 findings."""

    target: np.ndarray  # (14,) marginal prevalence, CHESTXRAY14_LABELS order
    base: np.ndarray  # (14,) independent rate q_k
    syndrome_rates: np.ndarray  # (S,)
    members: np.ndarray  # (S, 14) P(finding | syndrome)

    def sample(self, rng: np.random.Generator) -> tuple[str, ...]:
        """One image's findings, in ChestX-ray14 label order (empty: No Finding)."""
        positive = rng.random(self.base.size) < self.base
        active = rng.random(self.syndrome_rates.size) < self.syndrome_rates
        joined = rng.random(self.members.shape) < self.members
        positive |= (joined & active[:, None]).any(axis=0)
        return tuple(label for label, p in zip(CHESTXRAY14_LABELS, positive, strict=True) if p)


def label_model(prevalence: str = "balanced") -> LabelModel:
    """The label model of a preset, with each finding's independent rate solved from its target."""
    check_prevalence(prevalence)
    target = np.array([PREVALENCE_PRESETS[prevalence][k] for k in CHESTXRAY14_LABELS])
    rates = np.array([rates[prevalence] for _, rates, _ in SYNDROMES])
    members = np.array([[m.get(k, 0.0) for k in CHESTXRAY14_LABELS] for _, _, m in SYNDROMES])
    none_from_syndromes = np.prod(1.0 - rates[:, None] * members, axis=0)
    base = 1.0 - (1.0 - target) / none_from_syndromes
    if (base < 0).any():  # a design error in the tables above, not user input
        bad = [k for k, b in zip(CHESTXRAY14_LABELS, base, strict=True) if b < 0]
        raise SyntheticOptionError(
            f"syndromes alone exceed the {prevalence} prevalence of {bad}; expected every base rate >= 0 "
            "(the SYNDROMES table does not fit this preset)"
        )
    return LabelModel(target, base, rates, members)


@dataclass(frozen=True)
class PlannedImage:
    """One image to draw: who, which follow-up/study and view, and which findings it shows."""

    index: int  # position in the data set; also picks the image's random stream
    patient_id: int
    follow_up: int  # ChestX-ray14 follow-up number, or CheXpert study number - 1
    findings: tuple[str, ...]  # ChestX-ray14 names, label order
    extras: tuple[str, ...]  # CheXpert-only signs (Support Devices, Fracture, Enlarged Cardiomediastinum)
    age: int
    female: bool
    view: str  # "PA", "AP" or "LATERAL"


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """The independent random stream ``key`` of ``seed``: ``SeedSequence(seed, spawn_key=key)``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _patients(
    rng: np.random.Generator, plan: list[PlannedImage], n_images: int
) -> Iterator[tuple[int, int, bool]]:
    """``(patient id, age, female)`` of patient 1, 2, ... while ``plan`` (filled by the caller) is short."""
    patient = 0
    while len(plan) < n_images:
        patient += 1
        age, female = _patient_ages(rng)
        yield patient, age, female


def _follow_up_count(rng: np.random.Generator, mean_extra: float) -> int:
    return 1 + min(int(rng.geometric(1.0 / (1.0 + mean_extra))) - 1, 30)


def _patient_ages(rng: np.random.Generator) -> tuple[int, bool]:
    return int(np.clip(round(rng.normal(47.0, 17.0)), 1, 94)), bool(rng.random() < 0.44)


def _next_findings(
    rng: np.random.Generator, model: LabelModel, previous: tuple[str, ...] | None
) -> tuple[str, ...]:
    if previous is not None and rng.random() < PERSISTENCE:
        return previous
    return model.sample(rng)


def plan_chestxray14(n_images: int, *, seed: int = 0, prevalence: str = "balanced") -> list[PlannedImage]:
    """Patients, follow-ups, views, ages and findings of ``n_images`` images, without drawing any.

    Patients get 1 + Geometric follow-ups (about 3 images each, as in ChestX-ray14); the first
    image is PA with probability 0.75, later ones with 0.5 (inpatients are filmed AP).
    """
    model = label_model(prevalence)
    rng = random_stream(seed, 0)
    plan: list[PlannedImage] = []
    for patient, age, female in _patients(rng, plan, n_images):
        findings: tuple[str, ...] | None = None
        for follow_up in range(min(_follow_up_count(rng, 2.0), n_images - len(plan))):
            findings = _next_findings(rng, model, findings)
            view = "PA" if rng.random() < (0.75 if follow_up == 0 else 0.5) else "AP"
            plan.append(
                PlannedImage(
                    len(plan), patient, follow_up, findings, (), min(age + follow_up // 3, 95), female, view
                )
            )
    return plan


def choose_test_patients(patient_ids: list[int], *, seed: int, fraction: float = 0.22) -> set[int]:
    """The patients of the test split: ``fraction`` of them (at least one if there are two or more)."""
    unique = sorted(set(patient_ids))
    if len(unique) < 2:
        return set()
    rng = random_stream(seed, 9)
    n_test = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    return {int(p) for p in rng.choice(unique, size=n_test, replace=False)}


def plan_chexpert(n_images: int, *, seed: int = 0, prevalence: str = "balanced") -> list[PlannedImage]:
    """Patients, studies and views (a frontal per study, a lateral in 30 %) of a CheXpert-layout set.

    ``follow_up`` is the study number - 1; a study's frontal and lateral share its findings.
    """
    model = label_model(prevalence)
    rates = {name: r[prevalence] for name, r in CHEXPERT_EXTRAS.items()}
    rng = random_stream(seed, 5)
    plan: list[PlannedImage] = []
    for patient, age, female in _patients(rng, plan, n_images):
        findings: tuple[str, ...] | None = None
        extras: tuple[str, ...] = ()
        for study in range(_follow_up_count(rng, 1.0)):
            if len(plan) >= n_images:
                break
            findings = _next_findings(rng, model, findings)
            if study == 0 or rng.random() >= PERSISTENCE:
                extras = tuple(name for name, rate in rates.items() if rng.random() < rate)
            views = ["AP" if rng.random() < 0.75 else "PA"] + (["LATERAL"] if rng.random() < 0.3 else [])
            for view in views[: n_images - len(plan)]:
                plan.append(
                    PlannedImage(
                        len(plan), patient, study, findings, extras, min(age + study, 95), female, view
                    )
                )
    return plan
