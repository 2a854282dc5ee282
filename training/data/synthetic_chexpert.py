"""CheXpert-layout rows for the synthetic phantoms: observation mapping, uncertainty and paths.

The phantoms draw ChestX-ray14 findings plus three CheXpert-only signs; this module maps them to
the 14 CheXpert observations and writes each observation's cell as the CheXpert labeler would:
``1.0`` positive, ``-1.0`` uncertain, ``0.0`` explicitly negative, blank not mentioned. As in the
real data, ``valid.csv`` (radiologist consensus) holds only ``1.0``/``0.0``. A study's frontal
and lateral images share one row of labels.
"""

from __future__ import annotations

import numpy as np

from cxr_core.labels import CHEXPERT_LABELS

CHEXPERT_DIR = "CheXpert-v1.0-small"
CHEXPERT_HEADER: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)

#: Drawn sign -> CheXpert observations it makes positive (Emphysema and Hernia have none).
SIGN_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis", "Lung Opacity"),
    "Cardiomegaly": ("Cardiomegaly",),
    "Effusion": ("Pleural Effusion",),
    "Infiltration": ("Lung Opacity",),
    "Mass": ("Lung Lesion",),
    "Nodule": ("Lung Lesion",),
    "Pneumonia": ("Pneumonia", "Lung Opacity"),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation", "Lung Opacity"),
    "Edema": ("Edema", "Lung Opacity"),
    "Emphysema": (),
    "Fibrosis": ("Lung Opacity",),
    "Pleural_Thickening": ("Pleural Other",),
    "Hernia": (),
    "Support Devices": ("Support Devices",),
    "Fracture": ("Fracture",),
    "Enlarged Cardiomediastinum": ("Enlarged Cardiomediastinum",),
}

#: P(a present observation is reported as uncertain, -1.0) in train.csv; hedged ones are higher.
UNCERTAIN_RATE: dict[str, float] = {
    "Enlarged Cardiomediastinum": 0.25,
    "Cardiomegaly": 0.1,
    "Lung Opacity": 0.05,
    "Lung Lesion": 0.1,
    "Edema": 0.2,
    "Consolidation": 0.3,
    "Pneumonia": 0.35,
    "Atelectasis": 0.3,
    "Pneumothorax": 0.05,
    "Pleural Effusion": 0.1,
    "Pleural Other": 0.2,
    "Fracture": 0.1,
    "Support Devices": 0.02,
}
#: P(an absent observation is nevertheless mentioned as uncertain) in train.csv (labeler noise).
FALSE_UNCERTAIN_RATE = 0.02
#: P(an absent observation is explicitly negated, 0.0, rather than left blank) in train.csv.
NEGATION_RATE: dict[str, float] = {
    "Enlarged Cardiomediastinum": 0.1,
    "Cardiomegaly": 0.08,
    "Lung Opacity": 0.05,
    "Lung Lesion": 0.02,
    "Edema": 0.15,
    "Consolidation": 0.15,
    "Pneumonia": 0.05,
    "Atelectasis": 0.02,
    "Pneumothorax": 0.35,
    "Pleural Effusion": 0.25,
    "Pleural Other": 0.01,
    "Fracture": 0.02,
    "Support Devices": 0.03,
}


def observations(signs: tuple[str, ...]) -> set[str]:
    """CheXpert observations shown by the drawn ``signs`` (ChestX-ray14 names and CheXpert extras)."""
    return {obs for sign in signs for obs in SIGN_TO_OBSERVATIONS[sign]}


def label_cells(present: set[str], rng: np.random.Generator, *, valid: bool) -> list[str]:
    """The 14 label cells of one study, in ``CHEXPERT_LABELS`` order."""
    cells: dict[str, str] = {}
    for name in CHEXPERT_LABELS[1:]:
        if valid:
            cells[name] = "1.0" if name in present else "0.0"
        elif name in present:
            cells[name] = "-1.0" if rng.random() < UNCERTAIN_RATE[name] else "1.0"
        else:
            draw = rng.random()
            cells[name] = (
                "-1.0"
                if draw < FALSE_UNCERTAIN_RATE
                else ("0.0" if draw < FALSE_UNCERTAIN_RATE + NEGATION_RATE[name] else "")
            )
    abnormal = any(cells[n] in ("1.0", "-1.0") for n in CHEXPERT_LABELS[1:] if n != "Support Devices")
    if valid:
        cells["No Finding"] = "0.0" if abnormal else "1.0"
    else:
        cells["No Finding"] = "" if abnormal else "1.0"
    return [cells[name] for name in CHEXPERT_LABELS]


def image_path(split: str, patient: int, study: int, frontal: bool, view_number: int) -> str:
    """Path relative to the data root, as in CheXpert: ``CheXpert-v1.0-small/train/patient00001/...``."""
    kind = "frontal" if frontal else "lateral"
    return f"{CHEXPERT_DIR}/{split}/patient{patient:05d}/study{study}/view{view_number}_{kind}.jpg"
