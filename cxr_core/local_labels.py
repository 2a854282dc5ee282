"""A site's own labelled images, read without torch: the input of ``cxr-calibrate``.

Two layouts are read:

* **a folder and a CSV** (``labels.csv`` in the folder, or any CSV given with ``--csv``): one row per
  image, a path column (``path``, ``Path``, ``file`` or ``Image Index``) relative to the folder (or
  to the folder's parent, as CheXpert's ``Path`` column is), and one column per finding named as
  the bundle names it, holding 1 (present), 0 (absent), -1 or empty (uncertain or not read: left
  out of that finding's figures). CheXpert's ``valid.csv`` is of this form;
* **the ChestX-ray14 layout**: ``Data_Entry_2017*.csv`` (``Image Index``, ``Finding Labels`` with
  ``|``-separated findings or ``No Finding``) and the PNGs under ``images*/`` folders; the
  synthetic phantom set is written in this layout.

Findings of the bundle that a CSV does not have are masked for every image (counted as no local
positives, so ``cxr-calibrate`` keeps their old values).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import DatasetError

PATH_COLUMNS = ("path", "Path", "file", "Image Index")
GENERIC_CSV = "labels.csv"
CHESTXRAY14_GLOB = "Data_Entry_2017*.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


@dataclass(frozen=True)
class LocalLabels:
    """Images (in order), ``truth`` (N, L) in {0, 1} and ``mask`` (N, L): 1 where the label is known."""

    source: str
    files: tuple[Path, ...]
    truth: NDArray[np.float32]
    mask: NDArray[np.float32]

    def subset(self, keep: Sequence[int]) -> LocalLabels:
        rows = list(keep)
        return LocalLabels(self.source, tuple(self.files[i] for i in rows), self.truth[rows], self.mask[rows])


def read_local_labels(
    data: str | Path, labels: Sequence[str], csv_file: str | Path | None = None
) -> LocalLabels:
    """The labelled images under ``data`` for the bundle's ``labels`` (see the module docstring)."""
    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; expected a folder of labelled images")
    if csv_file is not None:
        return _generic(root, Path(csv_file), labels)
    if (root / GENERIC_CSV).is_file():
        return _generic(root, root / GENERIC_CSV, labels)
    entries = sorted(root.glob(CHESTXRAY14_GLOB))
    if entries:
        return _chestxray14(root, entries[-1], labels)
    raise DatasetError(
        f"{root} holds neither {GENERIC_CSV} nor {CHESTXRAY14_GLOB}; expected a folder with a labels CSV "
        "(a path column and one 0/1 column per finding) or the ChestX-ray14 layout, or pass --csv FILE"
    )


def _value(text: str, where: str) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: got {text!r}; expected 1, 0, -1 or empty") from exc
    if value not in (1.0, 0.0, -1.0):
        raise DatasetError(f"{where}: got {text!r}; expected 1, 0, -1 or empty")
    return value


def _generic(root: Path, csv_path: Path, labels: Sequence[str]) -> LocalLabels:
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path} does not exist; expected a CSV of image paths and finding labels")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        path_column = next((c for c in PATH_COLUMNS if c in columns), None)
        if path_column is None:
            raise DatasetError(
                f"{csv_path}: no path column; expected one of {list(PATH_COLUMNS)}, got columns {columns}"
            )
        known = [label for label in labels if label in columns]
        if not known:
            raise DatasetError(
                f"{csv_path}: none of the bundle's findings {list(labels)} is a column; got {columns}"
            )
        files, truth, mask = [], [], []
        for line, row in enumerate(reader, start=2):
            name = (row.get(path_column) or "").strip()
            if not name:
                raise DatasetError(f"{csv_path}:{line}: empty {path_column!r}; expected an image path")
            path = _resolve(root, name)
            if path is None:
                raise DatasetError(
                    f"{csv_path}:{line}: image {name!r} not found under {root} or {root.parent}"
                )
            values = [
                _value(row[label], f"{csv_path}:{line} column {label!r}") if label in known else math.nan
                for label in labels
            ]
            files.append(path)
            truth.append([1.0 if v == 1.0 else 0.0 for v in values])
            mask.append([1.0 if v in (0.0, 1.0) else 0.0 for v in values])
    if not files:
        raise DatasetError(f"{csv_path} lists no images; expected one row per labelled image")
    return LocalLabels(
        f"{csv_path} ({len(files)} images)",
        tuple(files),
        np.asarray(truth, np.float32),
        np.asarray(mask, np.float32),
    )


def _resolve(root: Path, name: str) -> Path | None:
    for base in (root, root.parent):
        candidate = base / name
        if candidate.is_file():
            return candidate
    return None


def _chestxray14(root: Path, entry: Path, labels: Sequence[str]) -> LocalLabels:
    located = {
        path.name: path
        for folder in sorted(root.glob("images*"))
        if folder.is_dir()
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
    }
    files, truth = [], []
    with open(entry, newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            name = (row.get("Image Index") or "").strip()
            if name not in located:
                raise DatasetError(f"{entry}:{line}: image {name!r} is not under {root}/images*/")
            found = {f.strip() for f in (row.get("Finding Labels") or "").split("|")}
            files.append(located[name])
            truth.append([1.0 if label in found else 0.0 for label in labels])
    if not files:
        raise DatasetError(f"{entry} lists no images")
    array = np.asarray(truth, np.float32)
    return LocalLabels(f"{entry} ({len(files)} images)", tuple(files), array, np.ones_like(array))
