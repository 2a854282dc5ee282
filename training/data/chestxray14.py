"""ChestX-ray14 (NIH) from its real download layout.

::

    ROOT/
      Data_Entry_2017.csv          (or Data_Entry_2017_v2020.csv)
      train_val_list.txt           official train/val images, one file name per line
      test_list.txt                official test images
      images_001/images/*.png ... images_012/images/*.png   (or ROOT/images/*.png)

The official test split is ``test_list.txt``; ``train_val_list.txt`` is split into train and
validation by patient (a seeded fraction of the patients goes to validation). Every problem
(missing columns, unknown finding names, missing image files, list/CSV mismatches) is collected
and raised as one :class:`~cxr_core.errors.DatasetError` at load time. The synthetic phantom set
written by ``cxr-synth`` uses this layout and is read by this loader.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cxr_core.errors import DatasetError
from cxr_core.imaging_common import IMAGE_SUFFIXES
from cxr_core.labels import CHESTXRAY14, CHESTXRAY14_LABELS, CHESTXRAY14_NO_FINDING
from training.data.checks import ProblemReport, check_patient_overlap
from training.data.csvtable import CsvTable, cell, parse_age, parse_sex, read_csv_table
from training.data.records import NEGATIVE, POSITIVE, DatasetSplits, ImageRecord
from training.data.splitting import check_fraction, split_by_patient

logger = logging.getLogger(__name__)

CSV_GLOB = "Data_Entry_2017*.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
DEFAULT_VAL_FRACTION = 1 / 8

COL_IMAGE, COL_LABELS, COL_PATIENT = "Image Index", "Finding Labels", "Patient ID"
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {COL_IMAGE: (), COL_LABELS: (), COL_PATIENT: ()}
AGE_COLUMNS = ("Patient Age",)
SEX_COLUMNS = ("Patient Gender", "Patient Sex")
VIEW_COLUMNS = ("View Position",)

_LABEL_INDEX = {name: i for i, name in enumerate(CHESTXRAY14_LABELS)}
_CSV_VERSION = re.compile(r"_v(\d+)", re.IGNORECASE)


def find_data_entry_csv(root: Path) -> Path:
    """The ``Data_Entry_2017*.csv`` of ``root``; with several, the newest revision (highest ``_vNNNN``)."""
    found = sorted(p for p in root.glob(CSV_GLOB) if p.is_file())
    if not found:
        raise DatasetError(
            f"{root}: no {CSV_GLOB} found; expected the NIH ChestX-ray14 metadata file Data_Entry_2017.csv "
            "(or Data_Entry_2017_v2020.csv) directly in the data root"
        )

    def revision(path: Path) -> int:
        match = _CSV_VERSION.search(path.stem)
        return int(match.group(1)) if match else 0

    chosen = max(found, key=lambda p: (revision(p), p.name))
    if len(found) > 1:
        logger.info(
            "several ChestX-ray14 CSVs in %s (%s); using the newest, %s",
            root,
            [p.name for p in found],
            chosen.name,
        )
    else:
        logger.info("ChestX-ray14 metadata: %s", chosen)
    return chosen


@dataclass
class ImageIndex:
    """Image files found under a ChestX-ray14 root, by file name."""

    files: dict[str, Path] = field(default_factory=dict)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    searched: list[Path] = field(default_factory=list)


def _scan(folder: Path, index: ImageIndex) -> None:
    index.searched.append(folder)
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                path = Path(entry.path)
                if entry.name in index.files:
                    index.duplicates.setdefault(entry.name, [index.files[entry.name]]).append(path)
                else:
                    index.files[entry.name] = path


def index_images(root: Path) -> ImageIndex:
    """Index the images in ``ROOT/images*/`` and ``ROOT/images*/images/`` by file name (one scandir each)."""
    index = ImageIndex()
    folders = sorted(e.path for e in os.scandir(root) if e.name.startswith("images") and e.is_dir())
    for folder in map(Path, folders):
        _scan(folder, index)
        if (folder / "images").is_dir():
            _scan(folder / "images", index)
    return index


def read_file_list(path: Path) -> list[str]:
    """File names listed one per line in ``path`` (blank lines skipped, order kept, repeats dropped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc}); expected one image file name per line") from exc
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _parse_findings(text: str) -> tuple[tuple[float, ...] | None, list[str]]:
    """Label values of a ``Finding Labels`` cell, or None plus the unknown names."""
    names = [name.strip() for name in text.split("|")]
    if names == [CHESTXRAY14_NO_FINDING]:
        return (NEGATIVE,) * len(CHESTXRAY14_LABELS), []
    unknown = [name for name in names if name not in _LABEL_INDEX]
    if unknown:
        return None, unknown
    values = [NEGATIVE] * len(CHESTXRAY14_LABELS)
    for name in names:
        values[_LABEL_INDEX[name]] = POSITIVE
    return tuple(values), []


def parse_data_entry(table: CsvTable, images: ImageIndex, report: ProblemReport) -> dict[str, ImageRecord]:
    """One record per CSV row, keyed by image file name; problems go to ``report``.

    Images not found in ``images`` get the path ``ROOT/images/<name>`` (missing files are
    reported by the caller, which knows which images the splits use).
    """
    i_image, i_labels, i_patient = (table.column(c) for c in REQUIRED_COLUMNS)
    i_age, i_sex, i_view = table.column(*AGE_COLUMNS), table.column(*SEX_COLUMNS), table.column(*VIEW_COLUMNS)
    fallback_dir = table.path.parent / "images"
    records: dict[str, ImageRecord] = {}
    unknown: list[str] = []
    unknown_names: Counter[str] = Counter()
    incomplete: list[str] = []
    repeated: list[str] = []
    for line, row in table.numbered():
        name, findings, patient = cell(row, i_image), cell(row, i_labels), cell(row, i_patient)
        if not (name and findings and patient):
            incomplete.append(f"line {line}: {row[:4]}")
            continue
        labels, bad = _parse_findings(findings)
        if labels is None:
            unknown.append(f"line {line} ({name}): {findings!r}")
            unknown_names.update(bad)
            continue
        if name in records:
            repeated.append(f"line {line}: {name}")
            continue
        records[name] = ImageRecord(
            path=images.files.get(name) or fallback_dir / name,
            labels=labels,
            patient_id=patient,
            study_id=Path(name).stem,
            view=cell(row, i_view).upper(),
            frontal=True,
            age=parse_age(cell(row, i_age)),
            sex=parse_sex(cell(row, i_sex)),
        )
    csv_name = table.path.name
    if incomplete:
        report.add(f"{csv_name}: rows without an image name, finding labels or patient id", incomplete)
    if unknown:
        hints = []
        for bad_name in sorted(unknown_names):
            close = difflib.get_close_matches(bad_name, (*CHESTXRAY14_LABELS, CHESTXRAY14_NO_FINDING), n=1)
            hints.append(repr(bad_name) + (f" (did you mean {close[0]!r}?)" if close else ""))
        report.add(
            f"{csv_name}: unknown finding label(s) {', '.join(hints)}; expected '|'-joined names from "
            f"{list(CHESTXRAY14_LABELS)} or {CHESTXRAY14_NO_FINDING!r} alone; rows",
            unknown,
        )
    if repeated:
        report.add(
            f"{csv_name}: image names listed more than once (only one row per image is expected)", repeated
        )
    return records


def _read_official_lists(
    root: Path, csv_names: set[str] | None, report: ProblemReport
) -> tuple[list[str], list[str]] | None:
    """(train_val names, test names) from the official lists; problems go to ``report``."""
    lists: dict[str, list[str]] = {}
    for file_name in (TRAIN_VAL_LIST, TEST_LIST):
        path = root / file_name
        if path.is_file():
            lists[file_name] = read_file_list(path)
        else:
            report.add(
                f"{path} is missing; expected the official split lists {TRAIN_VAL_LIST} and {TEST_LIST} "
                "from the NIH download (or load with official_split=False for a seeded patient-level "
                "test split)"
            )
    if len(lists) < 2:
        return None
    train_val, test = lists[TRAIN_VAL_LIST], lists[TEST_LIST]
    in_both = sorted(set(train_val) & set(test))
    if in_both:
        report.add(f"images listed in both {TRAIN_VAL_LIST} and {TEST_LIST}", in_both)
    if csv_names is not None:
        for file_name, names in lists.items():
            absent = [name for name in names if name not in csv_names]
            if absent:
                report.add(
                    f"images listed in {file_name} but absent from the metadata CSV",
                    absent,
                )
    return train_val, test


def load_chestxray14(
    root: str | Path,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    allow_missing_images: bool = False,
    official_split: bool = True,
    test_fraction: float = 0.2,
    name: str = "chestxray14",
) -> DatasetSplits:
    """Load ChestX-ray14 from ``root`` (the folder holding ``Data_Entry_2017*.csv``).

    ``val_fraction`` of the train/val *patients* (chosen with ``seed``) become the validation
    split. With ``official_split=False`` the lists are not read and ``test_fraction`` of all
    patients become the test split. ``allow_missing_images=True`` drops rows whose image file
    is absent (e.g. only some of the 12 archives were extracted) instead of refusing them.
    Raises one :class:`DatasetError` listing every problem found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"ChestX-ray14 data root {root} is not a folder; expected the folder holding {CSV_GLOB}"
        )
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction)
    table = read_csv_table(find_data_entry_csv(root))
    report = ProblemReport(f"ChestX-ray14 at {root}")
    missing_columns = table.missing(REQUIRED_COLUMNS)
    if missing_columns:
        report.add(
            f"{table.path.name} lacks required column(s) {', '.join(missing_columns)}; "
            f"its header is {[h for h in table.header if h.strip()]}"
        )
    images = _checked_image_index(root, report)
    records = {} if missing_columns else parse_data_entry(table, images, report)
    i_image = table.column(COL_IMAGE)
    csv_names = None if missing_columns else {cell(row, i_image) for row in table.rows}
    lists = _read_official_lists(root, csv_names, report) if official_split else None
    wanted = [n for n in (lists[0] + lists[1] if lists else records) if n in records]
    missing = [n for n in wanted if n not in images.files]
    if missing and not allow_missing_images:
        report.add(
            f"{len(missing)} of {len(wanted)} image file(s) named in {table.path.name} are not on disk "
            f"(searched {len(images.searched)} folder(s): {root}/images*/ and {root}/images*/images/); "
            "pass allow_missing_images=True to drop them",
            missing,
        )
    report.raise_if_any()
    if missing:
        logger.warning(
            "dropping %d of %d ChestX-ray14 rows whose image file is missing", len(missing), len(wanted)
        )
        absent = set(missing)
        records = {n: r for n, r in records.items() if n not in absent}
    return _make_splits(name, records, lists, val_fraction, test_fraction, seed)


def _checked_image_index(root: Path, report: ProblemReport) -> ImageIndex:
    """The image index of ``root``; no images at all, or a name in two folders, go to ``report``."""
    images = index_images(root)
    if not images.files:
        report.add(
            f"no image files in {root}/images*/images/ or {root}/images*/; expected the extracted PNGs"
        )
    if images.duplicates:
        report.add(
            "image file names found in more than one folder",
            [f"{n} in {[str(p.parent) for p in ps]}" for n, ps in sorted(images.duplicates.items())],
        )
    return images


def _make_splits(
    name: str,
    records: dict[str, ImageRecord],
    lists: tuple[list[str], list[str]] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> DatasetSplits:
    """Official (lists) or patient-level test split, patient-level val split, overlap-checked."""
    if lists is not None:
        train_val = tuple(records[n] for n in lists[0] if n in records)
        test = tuple(records[n] for n in lists[1] if n in records)
    else:
        train_val, test = split_by_patient(tuple(records.values()), test_fraction, seed)
    train, val = split_by_patient(train_val, val_fraction, seed)
    splits = DatasetSplits(name=name, label_set=CHESTXRAY14, train=train, val=val, test=test)
    check_patient_overlap(splits)
    kind = "official" if lists is not None else "patient-level"
    logger.info(
        "%s: %d train / %d val / %d test images (%s test split)", name, *map(len, (train, val, test)), kind
    )
    return splits
