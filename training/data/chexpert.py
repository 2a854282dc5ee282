"""CheXpert (Stanford) from its real download layout, full (``CheXpert-v1.0``) or small (``-small``).

::

    CheXpert-v1.0-small/
      train.csv    Path,Sex,Age,Frontal/Lateral,AP/PA,<14 observations>
      valid.csv    same columns; 200 studies labelled by a radiologist consensus
      train/patient00001/study1/view1_frontal.jpg ...
      valid/patient64541/study1/view1_frontal.jpg ...

``Path`` is written relative to the folder *containing* the dataset folder
(``CheXpert-v1.0-small/train/...``); it is resolved against the dataset folder whatever that
folder is called, so a renamed copy still loads.

Splits: the official test set is hidden, so by default ``valid.csv`` is the test split and a
seeded fraction of the ``train.csv`` patients is held out as validation (``val_source="holdout"``);
``val_source="valid_csv"`` uses ``valid.csv`` as validation and leaves the test split empty.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cxr_core.errors import DatasetError
from cxr_core.labels import CHEXPERT, CHEXPERT_LABELS
from training.data.checks import ProblemReport, check_patient_overlap, find_missing_files
from training.data.csvtable import CsvTable, cell, parse_age, parse_sex, read_csv_table
from training.data.records import (
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
    DatasetOptionError,
    DatasetSplits,
    ImageRecord,
)
from training.data.splitting import check_fraction, split_by_patient

logger = logging.getLogger(__name__)

DATASET_DIR_NAMES = ("CheXpert-v1.0-small", "CheXpert-v1.0")
TRAIN_CSV, VALID_CSV = "train.csv", "valid.csv"
SPLIT_FOLDERS = ("train", "valid", "test")
VAL_SOURCES = ("holdout", "valid_csv")
DEFAULT_VAL_FRACTION = 1 / 8

COL_PATH, COL_VIEW_KIND, COL_AP_PA = "Path", "Frontal/Lateral", "AP/PA"
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    COL_PATH: (),
    COL_VIEW_KIND: (),
    **{label: () for label in CHEXPERT_LABELS},
}

_VALUES = {
    "1.0": POSITIVE,
    "1": POSITIVE,
    "0.0": NEGATIVE,
    "0": NEGATIVE,
    "-1.0": UNCERTAIN,
    "-1": UNCERTAIN,
    "": NOT_MENTIONED,
}
_PATIENT_STUDY = re.compile(r"(?:^|/)(patient\d+)/(study\d+)/")


def find_chexpert_dir(root: Path) -> Path:
    """The dataset folder: ``root`` itself if it holds ``train.csv``, else its one CheXpert child folder."""
    if (root / TRAIN_CSV).is_file():
        return root
    candidates = sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and child.name.lower().startswith("chexpert") and (child / TRAIN_CSV).is_file()
    )
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise DatasetError(
            f"{root} holds several CheXpert folders {[c.name for c in candidates]}; "
            "pass the one to use as the data root"
        )
    raise DatasetError(
        f"{root}: no {TRAIN_CSV} found; expected the CheXpert folder ({' or '.join(DATASET_DIR_NAMES)}) "
        "holding train.csv and valid.csv, or the folder that contains it"
    )


def resolve_image_path(dataset_dir: Path, text: str) -> Path:
    """File of a ``Path`` cell: ``CheXpert-v1.0-small/train/...`` or ``train/...`` under ``dataset_dir``.

    The leading dataset-folder component, whatever its name, is replaced by ``dataset_dir``;
    absolute paths are kept; backslashes are read as separators.
    """
    rel = text.strip().replace("\\", "/")
    if rel.startswith("/"):
        return Path(rel)
    first, _, rest = rel.partition("/")
    if first not in SPLIT_FOLDERS:
        rel = rest
    return Path(os.path.join(dataset_dir, rel))


def _label_value(text: str) -> float | None:
    """Raw value of a label cell (blank -> NaN), or None if it is not 1, 0, -1 or blank."""
    value = _VALUES.get(text)
    if value is None:
        try:
            number = float(text)
        except ValueError:
            return None
        value = number if number in (POSITIVE, NEGATIVE, UNCERTAIN) else None
    return value


def parse_chexpert_csv(
    table: CsvTable, dataset_dir: Path, report: ProblemReport, *, frontal_only: bool = False
) -> list[ImageRecord]:
    """One record per row of a CheXpert CSV (frontal rows only if ``frontal_only``).

    Problem rows are skipped and described in ``report``.
    """
    i_path, i_kind, i_ap_pa = table.column(COL_PATH), table.column(COL_VIEW_KIND), table.column(COL_AP_PA)
    i_sex, i_age = table.column("Sex"), table.column("Age")
    i_labels = [table.column(label) for label in CHEXPERT_LABELS]
    records: list[ImageRecord] = []
    bad_values: list[str] = []
    bad_paths: list[str] = []
    bad_kind: list[str] = []
    for line, row in table.numbered():
        kind = cell(row, i_kind).lower()
        if kind not in ("frontal", "lateral"):
            bad_kind.append(f"line {line}: {cell(row, i_kind)!r}")
            continue
        frontal = kind == "frontal"
        if frontal_only and not frontal:
            continue
        path_text = cell(row, i_path)
        match = _PATIENT_STUDY.search(path_text.replace("\\", "/"))
        if not match:
            bad_paths.append(f"line {line}: {path_text!r}")
            continue
        values = [_label_value(cell(row, i)) for i in i_labels]
        if None in values:
            labelled = zip(CHEXPERT_LABELS, i_labels, values, strict=True)
            bad_values.append(f"line {line}: { {lab: cell(row, i) for lab, i, v in labelled if v is None} }")
            continue
        patient, study = match.group(1), match.group(2)
        records.append(
            ImageRecord(
                path=resolve_image_path(dataset_dir, path_text),
                labels=tuple(values),  # type: ignore[arg-type]  # None excluded above
                patient_id=patient,
                study_id=f"{patient}/{study}",
                view=cell(row, i_ap_pa).upper() or ("" if frontal else "LATERAL"),
                frontal=frontal,
                age=parse_age(cell(row, i_age)),
                sex=parse_sex(cell(row, i_sex)),
            )
        )
    name = table.path.name
    if bad_paths:
        report.add(
            f"{name}: paths without .../patientNNNNN/studyN/... (cannot tell patient and study)", bad_paths
        )
    if bad_kind:
        report.add(f"{name}: {COL_VIEW_KIND} values other than 'Frontal' or 'Lateral'", bad_kind)
    if bad_values:
        report.add(f"{name}: label values other than 1.0, 0.0, -1.0 or blank", bad_values)
    return records


def _read_split_csv(
    dataset_dir: Path, file_name: str, report: ProblemReport, frontal_only: bool
) -> list[ImageRecord]:
    path = dataset_dir / file_name
    if not path.is_file():
        report.add(f"{path} is missing; expected CheXpert's {TRAIN_CSV} and {VALID_CSV} in {dataset_dir}")
        return []
    table = read_csv_table(path)
    missing_columns = table.missing(REQUIRED_COLUMNS)
    if missing_columns:
        header = [h for h in table.header if h.strip()]
        report.add(
            f"{file_name} lacks required column(s) {', '.join(missing_columns)}; its header is {header}"
        )
        return []
    return parse_chexpert_csv(table, dataset_dir, report, frontal_only=frontal_only)


def load_chexpert(
    root: str | Path,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    frontal_only: bool = True,
    val_source: str = "holdout",
    allow_missing_images: bool = False,
    name: str = "chexpert",
) -> DatasetSplits:
    """Load CheXpert from ``root`` (the ``CheXpert-v1.0[-small]`` folder or the folder containing it).

    ``val_source="holdout"`` (default): train = train.csv minus ``val_fraction`` of its patients
    (chosen with ``seed``), val = those patients, test = valid.csv. ``val_source="valid_csv"``:
    train = all of train.csv, val = valid.csv, test empty. ``frontal_only`` keeps only frontal
    images in every split. Raises one :class:`DatasetError` listing every problem found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"CheXpert data root {root} is not a folder; expected {' or '.join(DATASET_DIR_NAMES)}"
        )
    if val_source not in VAL_SOURCES:
        raise DatasetOptionError(f"val_source={val_source!r}; expected one of {list(VAL_SOURCES)}")
    val_fraction = check_fraction("val_fraction", val_fraction)
    dataset_dir = find_chexpert_dir(root)
    report = ProblemReport(f"CheXpert at {dataset_dir}")
    train_rows = _read_split_csv(dataset_dir, TRAIN_CSV, report, frontal_only)
    valid_rows = _read_split_csv(dataset_dir, VALID_CSV, report, frontal_only)
    missing = find_missing_files([*train_rows, *valid_rows])
    if missing and not allow_missing_images:
        report.add(
            f"{len(missing)} of {len(train_rows) + len(valid_rows)} image file(s) named in the CSVs are "
            "not on disk; pass allow_missing_images=True to drop them",
            missing,
        )
    report.raise_if_any()
    if missing:
        absent = set(missing)
        logger.warning("dropping %d CheXpert rows whose image file is missing", len(absent))
        train_rows = [r for r in train_rows if r.path not in absent]
        valid_rows = [r for r in valid_rows if r.path not in absent]
    if val_source == "holdout":
        train, val = split_by_patient(train_rows, val_fraction, seed)
        test = tuple(valid_rows)
    else:
        train, val, test = tuple(train_rows), tuple(valid_rows), ()
    splits = DatasetSplits(name=name, label_set=CHEXPERT, train=train, val=val, test=test)
    check_patient_overlap(splits)
    logger.info(
        "%s: %d train / %d val / %d test images (val from %s, frontal_only=%s)",
        name,
        len(train),
        len(val),
        len(test),
        val_source,
        frontal_only,
    )
    return splits
