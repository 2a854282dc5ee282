"""The labelled evaluation set of ``edge-bench --data``: image paths, labels and a mask of known labels.

Accepted (torch-free, stdlib csv; the training loaders are not imported on a device):

* a ChestX-ray14-style root, as NIH ships it and as ``cxr-synth`` writes it: ``Data_Entry_2017*.csv``
  (``Image Index``, ``Finding Labels`` joined by ``|``, ``No Finding``), images under
  ``images*/images/``, ``images*/`` or ``images/``; when ``test_list.txt`` is present only the
  official test split is used (the training images would flatter the model);
* a CSV file, or a folder holding ``labels.csv``, CheXpert's ``valid.csv`` (also one level down, as
  ``cxr-synth --layout chexpert`` writes it) or exactly one CSV: either the ChestX-ray14
  columns above, or one path column (``path``, ``Path``, ``file``, ``image``, ``filename``) plus
  one column per finding named as in the bundle's labels, with ``1`` positive, ``0`` negative,
  and empty / ``-1`` (CheXpert's uncertain) / ``nan`` unknown (left out of that finding's AUC).
  Relative paths resolve against the CSV's folder, then its parent (CheXpert's ``Path`` column).

``limit`` keeps the first N images in file order (deterministic).
"""

from __future__ import annotations

import csv
import difflib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError, DatasetError, ImageDecodeError
from cxr_core.imaging_common import IMAGE_SUFFIXES
from cxr_core.preprocess import PreprocessSpec, preprocess
from cxr_core.text import printable

logger = logging.getLogger(__name__)

NIH_CSV_GLOB = "Data_Entry_2017*.csv"
NIH_TEST_LIST = "test_list.txt"
CHEXPERT_VALID = "valid.csv"
NIH_IMAGE, NIH_FINDINGS, NIH_NO_FINDING = "Image Index", "Finding Labels", "No Finding"
PATH_COLUMNS = ("path", "file", "image", "filename", "image_path", NIH_IMAGE)
_POSITIVE, _NEGATIVE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no"}


@dataclass(frozen=True)
class EvalSet:
    """Images with labels in the bundle's label order; ``mask[i, k]`` is False where the label is unknown."""

    paths: tuple[Path, ...]
    labels: NDArray[np.float32]
    mask: NDArray[np.bool_]
    label_names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.paths)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot be read as CSV ({exc}); expected a labels CSV") from exc
    if not rows:
        raise DatasetError(f"{path} is empty; expected a header row and one row per image")
    return [h.strip() for h in rows[0]], rows[1:]


def _column(header: Sequence[str], names: Sequence[str]) -> int | None:
    lowered = {h.lower(): i for i, h in reversed(list(enumerate(header)))}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _nih_images(root: Path) -> dict[str, Path]:
    """Image files by name under ``root/images*/``, ``root/images*/images/``."""
    found: dict[str, Path] = {}
    folders = sorted(Path(e.path) for e in os.scandir(root) if e.name.startswith("images") and e.is_dir())
    for folder in folders + [f / "images" for f in folders if (f / "images").is_dir()]:
        for entry in os.scandir(folder):
            if entry.name.lower().endswith(IMAGE_SUFFIXES):
                found.setdefault(entry.name, Path(entry.path))
    return found


def _nih_rows(
    header: list[str], rows: list[list[str]], csv_path: Path, labels: Sequence[str]
) -> list[tuple[str, list[float], list[bool]]]:
    i_image, i_find = _column(header, [NIH_IMAGE]), _column(header, [NIH_FINDINGS])
    if i_image is None or i_find is None:
        raise DatasetError(
            f"{csv_path}: expected columns {NIH_IMAGE!r} and {NIH_FINDINGS!r}; header is {header}"
        )
    index = {name: k for k, name in enumerate(labels)}
    out, unknown = [], set()
    for row in rows:
        if len(row) <= max(i_image, i_find):
            continue
        names = [n.strip() for n in row[i_find].split("|") if n.strip()]
        values = [0.0] * len(labels)
        for name in names:
            if name == NIH_NO_FINDING:
                continue
            if name in index:
                values[index[name]] = 1.0
            else:
                unknown.add(name)
        out.append((row[i_image].strip(), values, [True] * len(labels)))
    if unknown:
        raise DatasetError(
            f"{csv_path}: finding name(s) {sorted(unknown)} are not among the bundle's labels {list(labels)}"
        )
    return out


def _wide_rows(
    header: list[str], rows: list[list[str]], csv_path: Path, labels: Sequence[str]
) -> list[tuple[str, list[float], list[bool]]]:
    i_path = _column(header, PATH_COLUMNS)
    if i_path is None:
        raise DatasetError(
            f"{csv_path}: no image path column; expected one of {list(PATH_COLUMNS)}, header is {header}"
        )
    columns = [_column(header, [name, name.replace("_", " ")]) for name in labels]
    if all(c is None for c in columns):
        hint = difflib.get_close_matches(header[-1] if header else "", labels, n=1)
        raise DatasetError(
            f"{csv_path}: no column named after a bundle label; expected some of {list(labels)}, "
            f"header is {header}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    absent = [name for name, c in zip(labels, columns, strict=True) if c is None]
    if absent:
        logger.warning("%s has no column for %s: those findings get no AUC", csv_path, absent)
    out = []
    for line, row in enumerate(rows, start=2):
        if len(row) <= i_path or not row[i_path].strip():
            raise DatasetError(
                f"{csv_path} line {line}: no image path; expected a path in column {i_path + 1}"
            )
        values, known = [], []
        for c in columns:
            cell = row[c].strip().lower() if c is not None and c < len(row) else ""
            values.append(1.0 if cell in _POSITIVE else 0.0)
            known.append(cell in _POSITIVE or cell in _NEGATIVE)
        out.append((row[i_path].strip(), values, known))
    return out


def _resolve(name: str, csv_dir: Path, nih_index: dict[str, Path] | None) -> Path | None:
    if nih_index is not None and name in nih_index:
        return nih_index[name]
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for base in (csv_dir, csv_dir / "images", csv_dir.parent):
        if (base / candidate).is_file():
            return base / candidate
    return None


def _find_csv(root: Path) -> Path:
    """The labels CSV of a folder: ChestX-ray14's, ``labels.csv``, CheXpert's ``valid.csv`` (its evaluation
    split), the only CSV, or one of those one level down (``cxr-synth --layout chexpert`` writes
    ``OUT/CheXpert-v1.0-small/valid.csv``)."""
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        nih = sorted(folder.glob(NIH_CSV_GLOB))
        if nih:
            return nih[-1]
        for name in ("labels.csv", CHEXPERT_VALID):
            if (folder / name).is_file():
                return folder / name
        csvs = sorted(folder.glob("*.csv"))
        if folder == root and len(csvs) == 1:
            return csvs[0]
    found = sorted(p.name for p in root.glob("*.csv"))
    raise DatasetError(
        f"{root}: expected {NIH_CSV_GLOB} (ChestX-ray14 layout), labels.csv, {CHEXPERT_VALID} (CheXpert) "
        f"or exactly one CSV; found {found or 'no CSV'}"
    )


def load_eval_set(path: str | Path, labels: Sequence[str], limit: int | None = None) -> EvalSet:
    """Read the evaluation set at ``path`` (see the module docstring) in the bundle's label order."""
    path = Path(path).expanduser()
    if path.is_dir():
        csv_path = _find_csv(path)
    elif path.is_file() and path.suffix.lower() == ".csv":
        csv_path = path
    else:
        raise DatasetError(f"--data {path}: not a folder or a .csv file; expected a labelled image set")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit={limit}; expected at least 1 image")
    header, rows = _read_csv(csv_path)
    nih = _column(header, [NIH_IMAGE]) is not None and _column(header, [NIH_FINDINGS]) is not None
    parsed = (_nih_rows if nih else _wide_rows)(header, rows, csv_path, labels)
    root = csv_path.parent
    source = f"{'ChestX-ray14-style' if nih else 'labels'} CSV {csv_path}"
    if nih and (root / NIH_TEST_LIST).is_file():
        wanted = [
            n.strip() for n in (root / NIH_TEST_LIST).read_text(encoding="utf-8").splitlines() if n.strip()
        ]
        by_name = {row[0]: row for row in parsed}
        parsed = [by_name[n] for n in wanted if n in by_name]
        source += f", test split ({NIH_TEST_LIST})"
    if limit is not None:
        parsed = parsed[:limit]
    if not parsed:
        raise DatasetError(f"{csv_path}: no labelled images found; expected at least one row")
    index = _nih_images(root) if nih else None
    resolved = [_resolve(name, root, index) for name, _, _ in parsed]
    missing = [name for (name, _, _), found in zip(parsed, resolved, strict=True) if found is None]
    paths = [found for found in resolved if found is not None]
    if missing:
        raise DatasetError(
            f"{csv_path}: {len(missing)} of {len(parsed)} image file(s) not found (first: {missing[:3]}); "
            f"searched {root}, {root}/images, {root.parent}" + (f" and {root}/images*/" if nih else "")
        )
    return EvalSet(
        paths=tuple(paths),
        labels=np.asarray([v for _, v, _ in parsed], dtype=np.float32),
        mask=np.asarray([k for _, _, k in parsed], dtype=bool),
        label_names=tuple(labels),
        source=source,
    )


def _skip_message(path: Path, exc: Exception) -> str:
    """One line for an image left out of the evaluation: the file (escaped) and why."""
    if isinstance(exc, ImageDecodeError):
        return f"{printable(path)}: {exc.reason}"
    if isinstance(exc, CxrEdgeError):
        return f"{printable(path)}: {exc}"
    if isinstance(exc, OSError):
        return f"{printable(path)}: cannot be read ({exc.strerror or exc})"
    logger.error("unexpected %s on %s: %s", type(exc).__name__, printable(path), exc)
    return f"{printable(path)}: unexpected {type(exc).__name__}: {exc} (a bug in cxr-edge)"


def preprocess_eval_set(
    eval_set: EvalSet, spec: PreprocessSpec, out_path: Path, progress: Callable[[int], None] | None = None
) -> tuple[Path, NDArray[np.int64], list[str]]:
    """Decode and preprocess every image once into an ``.npy`` of NCHW inputs that the children memory-map.

    Returns the file, the indices of the images kept and one message per image that failed to
    decode (those are left out of every format's figures alike, and reported).
    """
    from cxr_core.imaging import decode_image

    shape = (len(eval_set), spec.channels, spec.input_size, spec.input_size)
    array = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=shape)
    kept: list[int] = []
    skipped: list[str] = []
    for i, path in enumerate(eval_set.paths):
        try:
            tensor = preprocess(decode_image(path).pixels, spec)
        except Exception as exc:  # noqa: BLE001 - one image never ends the run; it is counted and reported
            skipped.append(_skip_message(path, exc))
        else:
            array[len(kept)] = np.transpose(tensor, (2, 0, 1)) if spec.layout == "NHWC" else tensor
            kept.append(i)
        if progress is not None:
            progress(1)
    array.flush()
    del array
    if not kept:
        raise DatasetError(
            f"{eval_set.source}: none of the {len(eval_set)} evaluation image(s) could be decoded "
            f"(first: {skipped[0] if skipped else '-'}); expected readable PNG, JPEG or DICOM files"
        )
    if skipped:
        logger.warning("%d evaluation image(s) could not be decoded and are left out", len(skipped))
        trimmed = np.load(out_path)[: len(kept)]
        np.save(out_path, trimmed)
    return out_path, np.asarray(kept, dtype=np.int64), skipped
