"""The input gate: refuse, with a reason, what is not a chest radiograph the model can vouch for.

A classifier scores anything it is given; a photo of a cat gets 14 probabilities like any chest
film. The gate runs after decoding and before preprocessing, on the decoded image and its
provenance, and either refuses (:class:`ImageRefusedError`, naming the file and every reason) or
lets the image through with warnings. It never scores silently what it has reasons to doubt.

The gate is a list of checks, each a small object satisfying :class:`ImageCheck` (a ``name`` and
``__call__(image) -> list[GateIssue]``). The default checks read only provenance and the image
size; a learned out-of-distribution detector plugs in later as one more check
(``InputGate([*default_checks(), MyOodCheck(...)])``) without touching the rest.

Default checks and their thresholds, with the reasons:

* **Modality** (DICOM only): ``CR`` and ``DX`` are the DICOM modalities of projection radiographs
  (PS3.3 C.7.3.1.1.1). ``DR`` is not a DICOM defined term but some vendors write it for digital
  radiography; it is accepted with a warning rather than refused. Anything else (CT, MR, US, MG,
  XA, OT, SC, ...) is refused: a CT slice or a secondary capture is not what the model learned. A
  DICOM with no Modality at all is accepted with a warning (it is a malformed file, not evidence
  of another modality).
* **BodyPartExamined** (DICOM, optional element): a value naming the chest (CHEST, THORAX, LUNG
  and common non-English spellings) passes; a value naming another part (ABDOMEN, SKULL, KNEE, ...)
  is refused; a value recognised as neither (``PORTABLE``, a vendor code) passes with a warning.
* **Size**: the shorter side must be at least :data:`DEFAULT_MIN_SIDE` = 256 pixels. Detectors
  give 2000-3000 px; the public training sets are 1024 px (ChestX-ray14) and about 320 x 390 px
  (CheXpert-small); below 256 px a 35 cm chest is sampled at more than 1.4 mm per pixel, so a
  10 mm nodule covers 7 pixels, and the model's 256-px resize would be enlarging a thumbnail.
* **Colour**: a colour photograph (or a screenshot of a web page) is refused when the file's mean
  chroma (``provenance.colourfulness``) is at least :data:`DEFAULT_MAX_COLOURFULNESS` = 0.08.
  Measured here (docs/runtime.md): greyscale radiographs stored as RGB PNG or JPEG 0.000, a
  radiograph with red annotations over 3% of it 0.046, a +-5% colour cast 0.068; real colour
  photographs 0.112 (sklearn's china.jpg, the least colourful one found), 0.201, 0.282. Casts of
  +-10% (0.13) and sepia toning (0.10-0.24) are refused: the reason says to save the image as
  greyscale if it really is a radiograph.
* **View** (DICOM ViewPosition): lateral views are warned about, not refused (the models were
  trained on frontal PA/AP films; a lateral is still a chest radiograph). Other non-frontal views
  (oblique, decubitus) get the same kind of warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from cxr_core.errors import CxrEdgeError
from cxr_core.imaging import DecodedImage

logger = logging.getLogger(__name__)

#: Shorter side below this (pixels) is a thumbnail, not a radiograph (see the module docstring).
DEFAULT_MIN_SIDE = 256
#: Mean chroma at or above this is a colour image, not a greyscale radiograph.
DEFAULT_MAX_COLOURFULNESS = 0.08
#: DICOM modalities of projection radiography.
RADIOGRAPHY_MODALITIES = ("CR", "DX")
#: Non-standard modality values accepted with a warning, and what they stand for.
MODALITY_SYNONYMS = {"DR": "DX (digital radiography)"}
#: Words (after splitting on non-letters) that say "chest" in BodyPartExamined.
CHEST_WORDS = (
    "CHEST",
    "THORAX",
    "THORACIC",
    "LUNG",
    "LUNGS",
    "TORAX",
    "TORACE",
    "POUMON",
    "POUMONS",
    "BORST",
    "BRUST",
    "BRUSTKORB",
)
#: Chest words also recognised inside compounds (CHESTABDOMEN, THORAXPA).
CHEST_STEMS = ("CHEST", "THORAX", "TORAX")
#: Words that name a body part other than the chest.
NON_CHEST_WORDS = (
    "HEAD",
    "SKULL",
    "BRAIN",
    "FACE",
    "SINUS",
    "SINUSES",
    "JAW",
    "MANDIBLE",
    "TMJ",
    "ORBIT",
    "NECK",
    "SPINE",
    "CSPINE",
    "TSPINE",
    "LSPINE",
    "SSPINE",
    "SACRUM",
    "COCCYX",
    "ABDOMEN",
    "ABD",
    "PELVIS",
    "HIP",
    "HIPS",
    "FEMUR",
    "KNEE",
    "LEG",
    "TIBIA",
    "FIBULA",
    "ANKLE",
    "FOOT",
    "TOE",
    "HEEL",
    "CALCANEUS",
    "SHOULDER",
    "HUMERUS",
    "ARM",
    "ELBOW",
    "FOREARM",
    "WRIST",
    "HAND",
    "FINGER",
    "THUMB",
    "EXTREMITY",
    "BREAST",
    "MAMMA",
    "KIDNEY",
    "BLADDER",
    "DENTAL",
    "TEETH",
    "TOOTH",
)
#: ViewPosition values of frontal chest films.
FRONTAL_VIEWS = ("PA", "AP", "POSTERO_ANTERIOR", "ANTERO_POSTERIOR", "AP SUPINE", "AP ERECT", "PA ERECT")
#: ViewPosition values of lateral films (DICOM LL/RL, CheXpert "Lateral").
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL", "LLAT", "RLAT")

Severity = Literal["refuse", "warn"]


class ImageRefusedError(CxrEdgeError, ValueError):
    """The input gate refused an image: ``path`` names the file, ``reasons`` says why (one per check)."""

    def __init__(self, path: str | Path, reasons: Sequence[str]) -> None:
        from cxr_core.text import printable

        self.path = str(path)
        self.reasons = tuple(reasons)
        super().__init__(f"{printable(self.path)}: refused, not scored: {'; '.join(self.reasons)}")


class GateCheckError(CxrEdgeError, TypeError):
    """An object handed to :class:`InputGate` as a check is not an :class:`ImageCheck`."""


@dataclass(frozen=True)
class GateIssue:
    """One thing a check found: ``refuse`` stops scoring, ``warn`` travels with the prediction."""

    check: str
    severity: Severity
    message: str


@runtime_checkable
class ImageCheck(Protocol):
    """One check of the gate. Stateless or read-only; must not modify the image."""

    name: str

    def __call__(self, image: DecodedImage) -> list[GateIssue]: ...


@dataclass(frozen=True)
class GateResult:
    """What the gate found for one image."""

    refusals: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return not self.refusals


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[^A-Z]+", value.upper()) if w]


@dataclass(frozen=True)
class ModalityCheck:
    """DICOM Modality must be a projection radiograph (CR, DX); PNG/JPEG carry none and pass."""

    accepted: tuple[str, ...] = RADIOGRAPHY_MODALITIES
    synonyms: tuple[tuple[str, str], ...] = tuple(MODALITY_SYNONYMS.items())
    name: str = "modality"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        prov = image.provenance
        if prov.format != "dicom":
            return []
        modality = (prov.modality or "").strip().upper()
        if not modality:
            return [
                GateIssue(
                    self.name,
                    "warn",
                    "DICOM has no Modality element; cannot confirm it is a "
                    f"radiograph ({'/'.join(self.accepted)})",
                )
            ]
        if modality in self.accepted:
            return []
        synonyms = dict(self.synonyms)
        if modality in synonyms:
            return [
                GateIssue(
                    self.name,
                    "warn",
                    f"DICOM Modality {modality!r} is not a DICOM defined term; read as {synonyms[modality]}",
                )
            ]
        return [
            GateIssue(
                self.name,
                "refuse",
                f"DICOM Modality is {modality!r}; expected a chest radiograph ({' or '.join(self.accepted)})",
            )
        ]


@dataclass(frozen=True)
class BodyPartCheck:
    """DICOM BodyPartExamined, when present, must not name a part other than the chest."""

    chest_words: tuple[str, ...] = CHEST_WORDS
    chest_stems: tuple[str, ...] = CHEST_STEMS
    other_words: tuple[str, ...] = NON_CHEST_WORDS
    name: str = "body_part"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        value = (image.provenance.body_part_examined or "").strip()
        if not value:
            return []
        words = _words(value)
        if any(w in self.chest_words for w in words) or any(s in value.upper() for s in self.chest_stems):
            return []
        others = [w for w in words if w in self.other_words]
        if others:
            return [
                GateIssue(
                    self.name, "refuse", f"DICOM BodyPartExamined is {value!r}, not the chest; expected CHEST"
                )
            ]
        return [
            GateIssue(
                self.name,
                "warn",
                f"DICOM BodyPartExamined {value!r} is not recognised as the "
                "chest; check that this is a chest radiograph",
            )
        ]


@dataclass(frozen=True)
class SizeCheck:
    """The shorter side must be at least ``min_side`` pixels."""

    min_side: int = DEFAULT_MIN_SIDE
    name: str = "size"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        height, width = image.pixels.shape[:2]
        if min(height, width) >= self.min_side:
            return []
        return [
            GateIssue(
                self.name,
                "refuse",
                f"image is only {width}x{height} pixels, too small to be a "
                f"radiograph; expected at least {self.min_side} pixels on the shorter side",
            )
        ]


@dataclass(frozen=True)
class ColourCheck:
    """A colourful image (mean chroma >= ``max_colourfulness``) is a photograph, not a radiograph."""

    max_colourfulness: float = DEFAULT_MAX_COLOURFULNESS
    name: str = "colour"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        colour = float(image.provenance.colourfulness)
        if colour < self.max_colourfulness:
            return []
        return [
            GateIssue(
                self.name,
                "refuse",
                f"image is in colour (mean chroma {colour:.3f}, limit "
                f"{self.max_colourfulness:.3f}): it looks like a photograph, not a greyscale "
                "radiograph; if it is a tinted radiograph, save it as greyscale",
            )
        ]


@dataclass(frozen=True)
class ViewCheck:
    """Warn (never refuse) when DICOM ViewPosition says the film is not frontal (PA/AP)."""

    frontal: tuple[str, ...] = FRONTAL_VIEWS
    lateral: tuple[str, ...] = LATERAL_VIEWS
    name: str = "view"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        view = (image.provenance.view_position or "").strip().upper()
        if not view or view in self.frontal:
            return []
        if view in self.lateral:
            kind = "a lateral view"
        else:
            kind = f"view position {view!r}, not a frontal (PA/AP) view"
        return [
            GateIssue(
                self.name,
                "warn",
                f"{kind}: the model was trained on frontal chest radiographs, "
                "so its output on this view is less reliable",
            )
        ]


def default_checks(
    min_side: int = DEFAULT_MIN_SIDE, max_colourfulness: float = DEFAULT_MAX_COLOURFULNESS
) -> list[ImageCheck]:
    """The built-in checks, in the order their reasons are reported."""
    return [
        ModalityCheck(),
        BodyPartCheck(),
        SizeCheck(min_side),
        ColourCheck(max_colourfulness),
        ViewCheck(),
    ]


class InputGate:
    """Runs every check and collects all refusals and warnings (not just the first)."""

    def __init__(self, checks: Iterable[ImageCheck] | None = None) -> None:
        self.checks: tuple[ImageCheck, ...] = tuple(default_checks() if checks is None else checks)
        for check in self.checks:
            if not isinstance(check, ImageCheck):
                raise GateCheckError(
                    f"gate check {check!r} has no 'name' or is not callable; expected an ImageCheck"
                )

    def evaluate(self, image: DecodedImage) -> GateResult:
        """The refusals and warnings of every check for ``image``."""
        refusals: list[str] = []
        warnings: list[str] = []
        for check in self.checks:
            for issue in check(image):
                (refusals if issue.severity == "refuse" else warnings).append(issue.message)
        return GateResult(tuple(refusals), tuple(warnings))

    def enforce(self, image: DecodedImage, source: str | Path) -> tuple[str, ...]:
        """Raise :class:`ImageRefusedError` for ``source`` if any check refuses; else return the warnings."""
        result = self.evaluate(image)
        if not result.accepted:
            logger.info("refused %s: %s", source, "; ".join(result.refusals))
            raise ImageRefusedError(source, result.refusals)
        for warning in result.warnings:
            logger.info("%s: %s", source, warning)
        return result.warnings
