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
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import DatasetError
from cxr_core.imaging_common import IMAGE_SUFFIXES

PATH_COLUMNS = ("path", "Path", "file", "Image Index")
GENERIC_CSV = "labels.csv"
CHESTXRAY14_GLOB = "Data_Entry_2017*.csv"


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
    rows = _read_rows(csv_path)
    if not rows:
        raise DatasetError(f"{csv_path} is empty; expected a header row and one row per labelled image")
    columns = rows[0][1]
    path_column = next((c for c in PATH_COLUMNS if c in columns), None)
    if path_column is None:
        raise DatasetError(
            f"{csv_path}: no path column; expected one of {list(PATH_COLUMNS)}, got columns {columns}"
        )
    _refuse_duplicate_columns(csv_path, columns, (path_column, *labels))
    known = [label for label in labels if label in columns]
    if not known:
        raise DatasetError(
            f"{csv_path}: none of the bundle's findings {list(labels)} is a column; got {columns}"
        )
    files, truth, mask, lines = [], [], [], []
    for line, cells in rows[1:]:
        row = _row(csv_path, line, columns, cells)
        name = row[path_column].strip()
        if not name:
            raise DatasetError(f"{csv_path}:{line}: empty {path_column!r}; expected an image path")
        path = _resolve(root, name)
        if path is None:
            raise DatasetError(f"{csv_path}:{line}: image {name!r} not found under {root} or {root.parent}")
        values = [
            _value(row[label], f"{csv_path}:{line} column {label!r}") if label in known else math.nan
            for label in labels
        ]
        files.append(path)
        lines.append((line, name))
        truth.append([1.0 if v == 1.0 else 0.0 for v in values])
        mask.append([1.0 if v in (0.0, 1.0) else 0.0 for v in values])
    if not files:
        raise DatasetError(f"{csv_path} lists no images; expected one row per labelled image")
    _refuse_duplicate_images(csv_path, files, lines)
    return LocalLabels(
        f"{csv_path} ({len(files)} images)",
        tuple(files),
        np.asarray(truth, np.float32),
        np.asarray(mask, np.float32),
    )


def _read_text(csv_path: Path) -> str:
    """The CSV's text; a file that is not UTF-8 is refused with the line of its first bad byte."""
    data = csv_path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        kind = "UTF-16 text" if utf16 else f"byte 0x{data[exc.start]:02x}, not UTF-8 text"
        raise DatasetError(
            f"{csv_path}:{line}: {kind}; expected a UTF-8 CSV (save it as 'CSV UTF-8', or convert "
            f"it, e.g. iconv -f {'utf-16' if utf16 else 'latin1'} -t utf-8)"
        ) from None


def _read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of every row that is not blank, the header first."""
    reader = csv.reader(io.StringIO(_read_text(csv_path), newline=""))
    rows = []
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DatasetError(f"{csv_path}:{reader.line_num}: {exc}; expected CSV rows") from None
    return rows


def _refuse_duplicate_columns(csv_path: Path, columns: Sequence[str], used: Sequence[str]) -> None:
    """A column read (the path, a finding) that the header names twice is refused: which one counts?"""
    for name in used:
        positions = [i + 1 for i, column in enumerate(columns) if column == name]
        if len(positions) > 1:
            raise DatasetError(
                f"{csv_path}:1: column {name!r} appears {len(positions)} times (columns "
                f"{', '.join(map(str, positions))}); expected each column once"
            )


def _row(csv_path: Path, line: int, columns: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    """A row as ``{column: cell}``, refused unless it has exactly one cell per header column."""
    if len(cells) != len(columns):
        what = "fewer" if len(cells) < len(columns) else "more"
        hint = "" if len(cells) < len(columns) else "; quote a path that holds a comma"
        raise DatasetError(
            f"{csv_path}:{line}: {len(cells)} cells, {what} than the header's {len(columns)}; expected one "
            f"cell per column ({', '.join(columns)}){hint}"
        )
    return dict(zip(columns, cells, strict=True))


def _refuse_duplicate_images(csv_path: Path, files: Sequence[Path], lines: Sequence[tuple[int, str]]) -> None:
    """The same image on two rows would count twice (inflated counts, narrower intervals): refused."""
    where: dict[Path, list[tuple[int, str]]] = {}
    for path, line in zip(files, lines, strict=True):
        where.setdefault(path.resolve(), []).append(line)
    repeated = [rows for rows in where.values() if len(rows) > 1]
    if not repeated:
        return
    shown = "; ".join(
        f"{rows[0][1]!r} on lines {', '.join(str(n) for n, _ in rows)}" for rows in repeated[:5]
    )
    more = f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else ""
    raise DatasetError(
        f"{csv_path}: {len(repeated)} image(s) listed more than once: {shown}{more}; expected one row "
        "per image (a repeated image would count as several): remove the repeated rows"
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
    files, truth, lines = [], [], []
    reader = csv.DictReader(io.StringIO(_read_text(entry), newline=""))
    for row in reader:
        line = reader.line_num
        name = (row.get("Image Index") or "").strip()
        if name not in located:
            raise DatasetError(f"{entry}:{line}: image {name!r} is not under {root}/images*/")
        found = {f.strip() for f in (row.get("Finding Labels") or "").split("|")}
        files.append(located[name])
        lines.append((line, name))
        truth.append([1.0 if label in found else 0.0 for label in labels])
    if not files:
        raise DatasetError(f"{entry} lists no images")
    _refuse_duplicate_images(entry, files, lines)
    array = np.asarray(truth, np.float32)
    return LocalLabels(f"{entry} ({len(files)} images)", tuple(files), array, np.ones_like(array))
