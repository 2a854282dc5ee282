"""On-site recalibration: a site's own labelled images set new operating points in a new bundle revision.

WHO guidance for computer-aided chest X-ray reading asks each site to set thresholds on its own
population; a model also meets other scanners, exposures and prevalences than it was trained on.
:func:`recalibrate_bundle` (``cxr-calibrate``) runs the bundle on a local labelled set through the
same :class:`~cxr_core.predictor.Predictor` a device uses (decode, input gate, preprocessing,
runtime), then per finding:

* with at least ``min_positives`` local positive *and* negative images: a new operating point, the
  Youden-J threshold on the local scores (:func:`cxr_core.calibrate.youden_operating_point`) --
  which also moves that finding's operating-point score, since the score puts the operating point at 50;
* with fewer: the old operating point is kept, and the revision says so (``kept``), with the count.

It then measures AUC (bootstrap intervals), sensitivity and specificity at the new points (Wilson
intervals) on the same images, and writes a **new bundle folder** -- the revision -- atomically:
model files linked or copied byte for byte from the parent, a manifest with the new points,
the figures, and a ``revision`` block (site, date, image count, the previous operating points,
the parent's manifest hash, the model file and runtime that scored the images). The parent bundle
is never modified, so switching back is choosing it again. The revision folder must be new: one
that exists (an earlier revision, any folder or file), or is, holds or lies inside the bundle, the
data folder or the labels file, is refused before any image is scored, and nothing is ever
replaced or deleted. Figures measured on the images that set the thresholds are optimistic; the revision
says so. Torch-free: this runs on a Pi or a laptop.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core.bundle import (
    MANIFEST_NAME,
    Bundle,
    RevisionInfo,
    load_bundle,
    sha256_file,
)
from cxr_core.bundle.writer import staging, write_manifest
from cxr_core.calibrate import youden_operating_point
from cxr_core.clinical_stats import DEFAULT_RESAMPLES, validation_figures
from cxr_core.errors import CxrEdgeError
from cxr_core.local_labels import LocalLabels, read_local_labels

logger = logging.getLogger(__name__)

#: A finding needs this many local positive and negative images before its threshold is replaced.
DEFAULT_MIN_POSITIVES = 10


class RecalibrationError(CxrEdgeError, ValueError):
    """The local data cannot recalibrate the bundle (no image scored, a bad option)."""


@dataclass(frozen=True)
class FindingChange:
    """What happened to one finding's operating point."""

    label: str
    positives: int
    negatives: int
    old_operating_point: float
    new_operating_point: float
    updated: bool
    reason: str


@dataclass
class RecalibrationResult:
    """The new revision's folder and manifest, one change per finding, and the images not scored."""

    path: Path
    revision: int
    changes: list[FindingChange]
    scored: int
    refused: list[tuple[str, str]] = field(default_factory=list)
    manifest: Any = None
    trust: str = ""  # the revision's signature as this machine sees it (empty: signed by a trusted key)


@dataclass(frozen=True)
class ScoredImages:
    """The images the device path scored (their indices, outputs ``(K, L)``), the refused, and the model."""

    kept: list[int]
    outputs: np.ndarray
    refused: list[tuple[str, str]]
    model: str
    model_file: str
    runtime: str


def score_images(
    bundle_dir: Path,
    local: LocalLabels,
    model: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> ScoredImages:
    """Model outputs ``(K, L)`` of the images the device path scores, their indices, the refused,
    and which model of the bundle (name, file, runtime) scored them.

    Every image goes through the Predictor (decode, input gate, learned gate); one that is refused
    or unreadable is left out and listed with its reason.
    """
    from cxr_core.predictor import Predictor

    kept: list[int] = []
    outputs: list[list[float]] = []
    refused: list[tuple[str, str]] = []
    with Predictor.load(bundle_dir, model=model, runtime=runtime, threads=threads) as predictor:
        for index, path in enumerate(local.files):
            try:
                prediction = predictor.predict_file(path)
            except CxrEdgeError as exc:  # refused or unreadable: left out, counted
                refused.append((str(path), f"{type(exc).__name__}: {exc}"))
            else:
                kept.append(index)
                outputs.append([f.model_output for f in prediction.findings])
            if on_image is not None:
                on_image(index + 1, len(local.files))
        entry = predictor.bundle.model(predictor.model_name)
        used = (predictor.model_name, entry.file, predictor.runtime)
    return ScoredImages(kept, np.asarray(outputs, dtype=np.float64), refused, *used)


def next_revision_path(bundle: Bundle, number: int) -> Path:
    """``<bundle>-rev<N>`` beside the bundle (the parent's ``-revK`` suffix replaced)."""
    stem = bundle.root.name
    if bundle.manifest.revision is not None and stem.endswith(f"-rev{bundle.manifest.revision.number}"):
        stem = stem[: -len(f"-rev{bundle.manifest.revision.number}")]
    return bundle.root.parent / f"{stem}-rev{number}"


def _relation(target: Path, other: Path) -> str | None:
    """How resolved ``target`` stands to resolved ``other``: ``is``, ``contains``, ``lies inside`` or None."""
    if target == other:
        return "is"
    if other.is_relative_to(target):
        return "contains"
    if target.is_relative_to(other):
        return "lies inside"
    return None


def check_revision_target(target: Path, protected: dict[str, Path]) -> None:
    """Refuse a revision folder that exists, or is, contains or lies inside a ``protected`` path.

    ``protected`` names what must never be written over (the parent bundle, the data folder, the
    labels file). Called before any image is scored; the rename refuses an existing folder again.
    """
    resolved = target.resolve()
    for what, path in protected.items():
        relation = _relation(resolved, path.resolve())
        if relation is not None:
            raise RecalibrationError(
                f"--out {target} {relation} {what} {path}; expected a new folder outside the bundle, "
                "the data folder and the labels file (e.g. the default BUNDLE-rev<N> beside the bundle)"
            )
    if os.path.lexists(target):
        raise RecalibrationError(
            f"the revision folder {target} already exists; a revision is written to a new folder and "
            "never replaces anything: choose another folder with --out, or remove it yourself if it is no "
            "longer needed"
        )


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: a byte-for-byte copy
        shutil.copy2(source, target)


def recalibrate_bundle(
    bundle_dir: str | Path,
    data: str | Path,
    site: str,
    out: str | Path | None = None,
    csv_file: str | Path | None = None,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    model: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    on_image: Callable[[int, int], None] | None = None,
) -> RecalibrationResult:
    """Recalibrate ``bundle_dir`` on the labelled images in ``data`` (see the module docstring)."""
    if not site.strip():
        raise RecalibrationError(f"site={site!r}; expected a site label such as 'Clinic A, 2026-12'")
    if min_positives < 1:
        raise RecalibrationError(f"min_positives={min_positives}; expected at least 1")
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    labels = bundle.labels
    number = (bundle.manifest.revision.number if bundle.manifest.revision else 1) + 1
    target = Path(out) if out is not None else next_revision_path(bundle, number)
    protected = {"the bundle": bundle.root, "the data folder": Path(data)}
    if csv_file is not None:
        protected["the labels file"] = Path(csv_file)
    check_revision_target(target, protected)
    local = read_local_labels(data, labels, csv_file)
    scored_with = score_images(bundle_dir, local, model, runtime, threads, on_image)
    kept, scores, refused = scored_with.kept, scored_with.outputs, scored_with.refused
    if not kept:
        raise RecalibrationError(
            f"none of the {len(local.files)} images in {data} could be scored ({len(refused)} refused or "
            "unreadable); nothing to recalibrate on"
        )
    scored = local.subset(kept)
    old_points = list(bundle.operating_points or (0.5,) * len(labels))
    parent_clinical = bundle.clinical
    new_points, sources, threshold_positives, changes = [], [], [], []
    for i, label in enumerate(labels):
        used = scored.mask[:, i] > 0
        truth = scored.truth[used, i]
        positives, negatives = int((truth > 0.5).sum()), int((truth <= 0.5).sum())
        parent = parent_clinical.finding(label)
        if positives >= min_positives and negatives >= min_positives:
            point = youden_operating_point(truth, scores[used, i])
            assert point is not None  # both classes present
            new_points.append(float(point))
            sources.append("site")
            threshold_positives.append(positives)
            reason = f"set on {positives} local positives and {negatives} negatives"
            updated = True
        else:
            new_points.append(float(old_points[i]))
            sources.append(parent.threshold_source if parent else "youden")
            threshold_positives.append(parent.threshold_positives if parent else None)
            reason = (
                f"kept: {positives} local positives and {negatives} negatives (< {min_positives} of either)"
            )
            updated = False
        changes.append(
            FindingChange(label, positives, negatives, old_points[i], new_points[-1], updated, reason)
        )
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    validation = validation_figures(
        labels,
        scored.truth,
        scored.mask,
        scores,
        new_points,
        threshold_positives,
        sources,
        source=f"site '{site}': {local.source}, {len(kept)} scored, {len(refused)} refused",
        resamples=resamples,
        note=(
            "Measured on the same site images that set the new operating points: sensitivity and "
            "specificity are optimistic for the points set here. Findings listed under revision.kept "
            "keep the previous operating point."
        ),
    )
    clinical = dataclasses.replace(parent_clinical, validation=validation)
    revision = RevisionInfo(
        number=number,
        site=site.strip(),
        created_at=created,
        images=len(kept),
        refused=len(refused),
        parent=str(bundle.root.resolve()),
        parent_manifest_sha256=sha256_file(bundle.root / MANIFEST_NAME),
        previous_operating_points=tuple(old_points),
        kept=tuple(c.label for c in changes if not c.updated),
        tool="cxr-calibrate",
        model=scored_with.model,
        model_file=scored_with.model_file,
        runtime=scored_with.runtime,
    )
    manifest = dataclasses.replace(
        bundle.manifest,
        operating_points=tuple(new_points),
        operating_points_source=f"site recalibration (revision {number}, {site.strip()}, {created[:10]})",
        clinical=clinical,
        revision=revision,
    )
    with staging(target, replace=False) as folder:
        for name in manifest.files:
            _link_or_copy(bundle.path(name), folder / name)
        written = write_manifest(folder, manifest)
    logger.info("revision %d of %s written to %s", number, bundle.root, target)
    # The revision is signed with this machine's key (cxr-keys): check its hashes and signature here;
    # devices load it once they trust that key.
    status = load_bundle(target, allow_untrusted=True).trust
    result = RecalibrationResult(target, number, changes, len(kept), refused, written)
    if status is not None and not status.trusted:
        result.trust = (
            f"signed by key {status.key_id}, which this machine does not trust yet: a device loads this "
            "revision once it trusts that key (cxr-keys show here, then cxr-keys trust KEY.pub there)"
        )
    elif status is not None:
        result.trust = status.describe()
    return result
