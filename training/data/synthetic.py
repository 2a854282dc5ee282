"""Write a synthetic chest X-ray data set of drawn phantoms in the ChestX-ray14 or CheXpert layout.

No patient data and nothing downloaded: :func:`generate_chestxray14` writes
``Data_Entry_2017.csv``, ``train_val_list.txt``, ``test_list.txt`` and PNGs under
``images_001/images/`` ... exactly as the NIH download is laid out, so the real loader reads it;
:func:`generate_chexpert` writes ``CheXpert-v1.0-small/{train,valid}.csv`` and JPEGs. Findings,
patients and follow-ups come from :mod:`training.data.synthetic_labels`, pixels from
:func:`training.data.phantom.render_phantom`.

Deterministic: image ``i`` is drawn from the stream ``SeedSequence(seed, spawn_key=(layout, i))``,
so the same seed gives byte-identical files whatever the number of worker processes.
Safe: every image is written to a temporary name and renamed; the CSV and list files are
written last, atomically, so an interrupted run never leaves a CSV naming a missing image. A
non-empty directory is refused unless it holds a previous phantom set (``cxr_synth.json``) or
``overwrite=True``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxr_core.errors import CxrEdgeError
from cxr_core.labels import CHESTXRAY14_LABELS, CHESTXRAY14_NO_FINDING, CHEXPERT_LABELS
from training.data import synthetic_chexpert as chx
from training.data.phantom import DRAWABLE_FINDINGS, render_phantom
from training.data.synthetic_labels import (
    PlannedImage,
    SyntheticOptionError,
    check_prevalence,
    choose_test_patients,
    plan_chestxray14,
    plan_chexpert,
    random_stream,
)

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("chestxray14", "chexpert")
MARKER = "cxr_synth.json"
DATA_ENTRY_CSV = "Data_Entry_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
PHOTO_CORNERS_CSV = "photo_corners.csv"
DIGITAL_DIR = "digital"  # a photo set keeps the same films as digital PNGs here
#: The header of the real Data_Entry_2017.csv, trailing comma included.
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
IMAGES_PER_FOLDER = 10_000
PNG_COMPRESS_LEVEL = 3
JPEG_QUALITY = 90
VALID_FRACTION = 0.1  # CheXpert: share of patients in valid.csv
_STREAM = {"chestxray14": 1, "chexpert": 2}


class SyntheticOutputError(CxrEdgeError, ValueError):
    """The output directory cannot take a phantom set (not empty and not ours, or not a directory)."""


@dataclass(frozen=True)
class SyntheticSummary:
    """What a generator wrote: where, how many images and patients, and per-label counts."""

    root: Path
    layout: str
    n_images: int
    n_patients: int
    image_size: int
    seed: int
    prevalence: str
    label_counts: dict[str, int]  # images positive (1.0) for each label, "No Finding" included
    split_counts: dict[str, int]  # images per split file
    files: tuple[Path, ...]  # the CSV and list files
    seconds: float
    uncertain_counts: dict[str, int] = field(default_factory=dict)  # CheXpert train.csv -1.0 cells


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    findings: tuple[str, ...]
    view: str
    female: bool
    age: int
    size: int
    seed: int
    stream: int


def _job(p: PlannedImage, path: Path, image_size: int, seed: int, layout: str) -> _Job:
    """The drawing job of planned image ``p`` (its findings and CheXpert extras) written to ``path``."""
    return _Job(
        p.index, str(path), p.findings + p.extras, p.view, p.female, p.age, image_size, seed, _STREAM[layout]
    )


def _temp_beside(path: Path) -> Path:
    """The name ``path`` is written under before ``os.replace``; per process, so workers never collide."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _save_image_atomic(image: Image.Image, path: Path, **save_options: Any) -> None:
    """Save ``image`` to a temporary name beside ``path`` (folders created), then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    image.save(tmp, **save_options)
    os.replace(tmp, path)


def _render_job(job: _Job) -> int:
    """Draw one phantom and write it atomically (PNG or JPEG by suffix). Runs in a worker process."""
    seed = np.random.SeedSequence(job.seed, spawn_key=(job.stream, job.index))
    phantom = render_phantom(
        job.findings, seed=seed, size=job.size, view=job.view, female=job.female, age=job.age
    )
    path = Path(job.path)
    image = Image.fromarray(phantom.image)
    if path.suffix == ".png":
        _save_image_atomic(image, path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        _save_image_atomic(image, path, format="JPEG", quality=JPEG_QUALITY)
    return job.index


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = _temp_beside(path)
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _csv_text(header: str | list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    if isinstance(header, str):
        buffer.write(header + "\n")
    else:
        rows = [list(header), *rows]
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


# -- output directory ---------------------------------------------------------------------------
def _generated_entries(root: Path) -> Iterator[Path]:
    """What a phantom set consists of: CSV and list files first, then the image folders."""
    for name in (DATA_ENTRY_CSV, TRAIN_VAL_LIST, TEST_LIST):
        yield root / name
    for name in ("train.csv", "valid.csv"):
        yield root / chx.CHEXPERT_DIR / name
    yield root / chx.CHEXPERT_DIR
    yield root / PHOTO_CORNERS_CSV  # a photo set (training.data.synthetic_photos)
    yield root / DIGITAL_DIR
    yield from sorted(p for p in root.glob("images_*") if re.fullmatch(r"images_\d{3}", p.name))


def prepare_output_dir(root: Path, *, overwrite: bool = False) -> None:
    """Make ``root`` ready: create it, clear a previous phantom set, or refuse a foreign directory.

    The index files of a previous set are removed before anything else, so no CSV ever names an
    image that is missing. ``overwrite`` writes into a foreign non-empty directory:
    its files are kept, except those with the names a phantom set writes (the CSV and list files
    are removed first, images of the same name are replaced).
    """
    if root.exists() and not root.is_dir():
        raise SyntheticOutputError(f"output path {root} exists and is not a directory; expected a directory")
    if root.is_dir() and any(root.iterdir()):
        if (root / MARKER).is_file():
            logger.info("replacing the previous phantom set in %s", root)
            for entry in _generated_entries(root):
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.exists():
                    entry.unlink()
        elif not overwrite:
            raise SyntheticOutputError(
                f"output directory {root} is not empty and is not a phantom set written by cxr-synth "
                f"(it has no {MARKER}); expected an empty or new directory, or pass --overwrite "
                f"(overwrite=True) to write into it anyway"
            )
        else:
            logger.warning("writing a phantom set into the non-empty directory %s (overwrite)", root)
            for entry in _generated_entries(root):
                if entry.is_file():
                    entry.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _begin_set(
    root: str | Path, layout: str, n_images: int, image_size: int, seed: int, prevalence: str, overwrite: bool
) -> tuple[Path, dict[str, Any]]:
    """Make ``root`` ready and mark it as an incomplete phantom set; returns it and the marker settings."""
    path = Path(root).expanduser()
    prepare_output_dir(path, overwrite=overwrite)
    settings = {
        "layout": layout,
        "seed": seed,
        "n_images": n_images,
        "image_size": image_size,
        "prevalence": prevalence,
    }
    _write_marker(path, settings, complete=False)
    return path, settings


def _write_marker(root: Path, settings: dict, complete: bool, counts: dict[str, int] | None = None) -> None:
    record = {
        "generator": "cxr-synth (cxr-edge synthetic chest X-ray phantoms)",
        "format": 1,
        **settings,
        "complete": complete,
    }
    if counts is not None:
        record["label_counts"] = counts
    _write_text_atomic(root / MARKER, json.dumps(record, indent=2) + "\n")


# -- drawing ------------------------------------------------------------------------------------
def _check_args(n_images: int, image_size: int, workers: int | None, prevalence: str) -> int:
    if n_images < 1:
        raise SyntheticOptionError(f"n_images={n_images}; expected at least 1")
    if not 32 <= image_size <= 4096:
        raise SyntheticOptionError(f"image_size={image_size}; expected 32 to 4096 pixels")
    check_prevalence(prevalence)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise SyntheticOptionError(f"workers={workers}; expected at least 1")
    return min(workers, n_images)


def _run_jobs(
    jobs: list[Any], workers: int, progress: bool, what: str, work: Callable[[Any], Any] | None = None
) -> list[Any]:
    """``work`` (default: draw a phantom) each of ``jobs`` in ``workers`` processes (in this one for 1).

    A progress bar if asked. Returns the results in the order they finished (each carries its
    job's index where that matters).
    """
    work = _render_job if work is None else work
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:  # the bar is cosmetic; the [train] extra provides it
            logger.info("tqdm is not installed; no progress bar")
        else:
            bar = tqdm(total=len(jobs), desc=what, unit="img")
    results: list[Any] = []
    try:
        if workers == 1:
            for job in jobs:
                results.append(work(job))
                if bar is not None:
                    bar.update()
            return results
        chunk = max(1, min(16, len(jobs) // (workers * 8)))
        with multiprocessing.get_context().Pool(workers) as pool:
            for result in pool.imap_unordered(work, jobs, chunksize=chunk):
                results.append(result)
                if bar is not None:
                    bar.update()
        return results
    finally:
        if bar is not None:
            bar.close()


def _folder(index: int, per_folder: int) -> str:
    return f"images_{index // per_folder + 1:03d}/images"


def image_name(planned: PlannedImage) -> str:
    """ChestX-ray14 file name: 8-digit patient id and 3-digit follow-up number."""
    return f"{planned.patient_id:08d}_{planned.follow_up:03d}.png"


def generate_chestxray14(
    root: str | Path,
    *,
    n_images: int = 2000,
    image_size: int = 512,
    seed: int = 0,
    prevalence: str = "balanced",
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    images_per_folder: int = IMAGES_PER_FOLDER,
) -> SyntheticSummary:
    """Write ``n_images`` phantoms in the ChestX-ray14 layout under ``root``; see the module docstring."""
    start = time.perf_counter()
    workers = _check_args(n_images, image_size, workers, prevalence)
    if images_per_folder < 1:
        raise SyntheticOptionError(f"images_per_folder={images_per_folder}; expected at least 1")
    root, settings = _begin_set(root, "chestxray14", n_images, image_size, seed, prevalence, overwrite)
    plan = plan_chestxray14(n_images, seed=seed, prevalence=prevalence)
    jobs = [
        _job(p, root / _folder(p.index, images_per_folder) / image_name(p), image_size, seed, "chestxray14")
        for p in plan
    ]
    _run_jobs(jobs, workers, progress, "phantoms")
    spacing = f"{400.0 / image_size:.3f}"
    rows = [
        [
            image_name(p),
            "|".join(p.findings) or CHESTXRAY14_NO_FINDING,
            str(p.follow_up),
            str(p.patient_id),
            str(p.age),
            "F" if p.female else "M",
            p.view,
            str(image_size),
            str(image_size),
            spacing,
            spacing,
            "",
        ]
        for p in plan
    ]
    test_ids = choose_test_patients([p.patient_id for p in plan], seed=seed)
    test = [image_name(p) for p in plan if p.patient_id in test_ids]
    train_val = [image_name(p) for p in plan if p.patient_id not in test_ids]
    files = (root / DATA_ENTRY_CSV, root / TRAIN_VAL_LIST, root / TEST_LIST)
    _write_text_atomic(files[1], "".join(f"{n}\n" for n in train_val))
    _write_text_atomic(files[2], "".join(f"{n}\n" for n in test))
    _write_text_atomic(files[0], _csv_text(DATA_ENTRY_HEADER, rows))
    counts = Counter(f for p in plan for f in p.findings)
    label_counts = {k: counts.get(k, 0) for k in CHESTXRAY14_LABELS}
    label_counts[CHESTXRAY14_NO_FINDING] = sum(1 for p in plan if not p.findings)
    _write_marker(root, settings, complete=True, counts=label_counts)
    return SyntheticSummary(
        root,
        "chestxray14",
        n_images,
        len({p.patient_id for p in plan}),
        image_size,
        seed,
        prevalence,
        label_counts,
        {"train_val": len(train_val), "test": len(test)},
        files,
        time.perf_counter() - start,
    )


def generate_chexpert(
    root: str | Path,
    *,
    n_images: int = 2000,
    image_size: int = 320,
    seed: int = 0,
    prevalence: str = "balanced",
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> SyntheticSummary:
    """Write ``n_images`` phantoms (frontal and some lateral) in the CheXpert-v1.0-small layout."""
    start = time.perf_counter()
    workers = _check_args(n_images, image_size, workers, prevalence)
    root, settings = _begin_set(root, "chexpert", n_images, image_size, seed, prevalence, overwrite)
    plan = plan_chexpert(n_images, seed=seed, prevalence=prevalence)
    patients = sorted({p.patient_id for p in plan})
    n_valid = (
        min(len(patients) - 1, max(1, round(VALID_FRACTION * len(patients)))) if len(patients) > 1 else 0
    )
    valid_ids = set(patients[len(patients) - n_valid :])
    rows: dict[str, list[list[str]]] = {"train": [], "valid": []}
    jobs, study_cells = [], {}
    for p in plan:
        split = "valid" if p.patient_id in valid_ids else "train"
        frontal = p.view != "LATERAL"
        rel = chx.image_path(split, p.patient_id, p.follow_up + 1, frontal, 1 if frontal else 2)
        key = (p.patient_id, p.follow_up)
        if key not in study_cells:
            rng = random_stream(seed, 6, *key)
            study_cells[key] = chx.label_cells(
                chx.observations(p.findings + p.extras), rng, valid=split == "valid"
            )
        rows[split].append(
            [
                rel,
                "Female" if p.female else "Male",
                str(p.age),
                "Frontal" if frontal else "Lateral",
                p.view if frontal else "",
                *study_cells[key],
            ]
        )
        jobs.append(_job(p, root / rel, image_size, seed, "chexpert"))
    _run_jobs(jobs, workers, progress, "phantoms")
    folder = root / chx.CHEXPERT_DIR
    files = (folder / "train.csv", folder / "valid.csv")
    _write_text_atomic(files[1], _csv_text(chx.CHEXPERT_HEADER, rows["valid"]))
    _write_text_atomic(files[0], _csv_text(chx.CHEXPERT_HEADER, rows["train"]))
    all_rows = rows["train"] + rows["valid"]
    label_counts = {k: sum(r[5 + i] == "1.0" for r in all_rows) for i, k in enumerate(CHEXPERT_LABELS)}
    uncertain = {k: sum(r[5 + i] == "-1.0" for r in all_rows) for i, k in enumerate(CHEXPERT_LABELS)}
    _write_marker(root, settings, complete=True, counts=label_counts)
    return SyntheticSummary(
        root,
        "chexpert",
        n_images,
        len(patients),
        image_size,
        seed,
        prevalence,
        label_counts,
        {"train": len(rows["train"]), "valid": len(rows["valid"])},
        files,
        time.perf_counter() - start,
        uncertain,
    )


def write_contact_sheet(path: str | Path, *, tile: int = 192, seed: int = 7, columns: int = 5) -> Path:
    """Write a labelled grid of phantoms: normal PA, AP and lateral, then one tile per finding.

    Each finding tile is the same patient as the normal PA tile with only that finding's sign
    added, so the sheet shows exactly what each sign looks like. Tiles are drawn at twice
    ``tile`` pixels and halved, which keeps the PNG small.
    """
    entries = [("No Finding (PA)", (), "PA"), ("No Finding (AP)", (), "AP"), ("Lateral", (), "LATERAL")]
    short = {"Enlarged Cardiomediastinum": "Enl. Cardiomediastinum"}
    entries += [(short.get(name, name.replace("_", " ")), (name,), "PA") for name in DRAWABLE_FINDINGS]
    rows = -(-len(entries) // columns)
    sheet = Image.new("L", (columns * tile, rows * tile), 0)
    font = ImageFont.load_default(size=max(10, tile // 13))
    for i, (title, findings, view) in enumerate(entries):
        image = Image.fromarray(render_phantom(findings, seed=seed, size=2 * tile, view=view).image)
        image = image.resize((tile, tile), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, tile, tile // 10 + 4), fill=0)
        draw.text((3, 1), title, fill=255, font=font)
        sheet.paste(image, ((i % columns) * tile, (i // columns) * tile))
    path = Path(path)
    _save_image_atomic(sheet, path, format="PNG", optimize=True)
    return path
