"""The finding labels of the supported datasets, in model output order. One source for the whole project."""

from __future__ import annotations

from dataclasses import dataclass

from cxr_core.errors import CxrEdgeError


class UnknownLabelError(CxrEdgeError, KeyError):
    """A label, or a label set, that is not known; the message lists the known ones."""


#: The 14 ChestX-ray14 findings in the official order (Wang et al. 2017; CheXNet's output order).
#: Spelled as in ``Data_Entry_2017.csv`` (note ``Pleural_Thickening``).
CHESTXRAY14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

#: The label ChestX-ray14 uses for an image without any of the 14 findings.
CHESTXRAY14_NO_FINDING = "No Finding"

#: The 14 CheXpert observations in the column order of ``train.csv`` (Irvin et al. 2019).
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five CheXpert competition tasks.
CHEXPERT_COMPETITION_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)


@dataclass(frozen=True)
class LabelSet:
    """A named, ordered set of labels; the order is the model's output order."""

    name: str
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        """Position of ``label``; raises ``KeyError`` naming the known labels if absent."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise UnknownLabelError(
                f"unknown label {label!r} for label set {self.name!r}; expected one of {list(self.labels)}"
            ) from None


CHESTXRAY14 = LabelSet("chestxray14", CHESTXRAY14_LABELS)
CHEXPERT = LabelSet("chexpert", CHEXPERT_LABELS)

LABEL_SETS: dict[str, LabelSet] = {CHESTXRAY14.name: CHESTXRAY14, CHEXPERT.name: CHEXPERT}


def display_name(label: str) -> str:
    """Human-readable form of a label (``Pleural_Thickening`` -> ``Pleural Thickening``)."""
    return label.replace("_", " ")


def get_label_set(name: str) -> LabelSet:
    """Look up a label set by name, with the valid names in the error."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise UnknownLabelError(f"unknown label set {name!r}; expected one of {sorted(LABEL_SETS)}") from None
