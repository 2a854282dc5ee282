"""Read a dataset's metadata CSV by column name, tolerant of the header variants seen in the wild.

ChestX-ray14's ``Data_Entry_2017.csv`` has bracketed names that the csv module splits in two
(``OriginalImage[Width``, ``Height]``) and sometimes a trailing empty column; its 2020 revision
renames ``Patient Gender`` to ``Patient Sex``. Columns are therefore looked up by name (trimmed,
case-insensitive), with aliases, never by position.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_core.errors import DatasetError

logger = logging.getLogger(__name__)

#: Ages above this (years) are treated as data-entry errors and recorded as unknown.
MAX_PLAUSIBLE_AGE = 120.0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMDW]?)\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}


def _key(name: str) -> str:
    return name.strip().lower()


@dataclass(frozen=True)
class CsvTable:
    """The header and data rows of one CSV file; ``rows[i]`` is on CSV row ``i + 2`` (header is 1)."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[list[str], ...]

    def column(self, *names: str) -> int | None:
        """Index of the first column called one of ``names`` (trimmed, case-insensitive), or None."""
        keys = {_key(h): i for i, h in reversed(list(enumerate(self.header)))}
        for name in names:
            if _key(name) in keys:
                return keys[_key(name)]
        return None

    def missing(self, required: Mapping[str, Sequence[str]]) -> list[str]:
        """Descriptions of the ``required`` columns (name -> accepted aliases) the header lacks."""
        present = [h.strip() for h in self.header if h.strip()]
        problems = []
        for name, aliases in required.items():
            if self.column(name, *aliases) is None:
                hint = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
                problems.append(repr(name) + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return problems

    def numbered(self) -> Iterator[tuple[int, list[str]]]:
        """(CSV row number, fields) of every data row."""
        return ((i + 2, row) for i, row in enumerate(self.rows))


def read_csv_table(path: Path) -> CsvTable:
    """Read ``path`` (UTF-8, optional BOM); blank lines are skipped. Refuses an empty or unreadable file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            all_rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(
            f"{path}: cannot be read as a CSV file ({exc}); expected a UTF-8 CSV with a header"
        ) from exc
    if not all_rows:
        raise DatasetError(f"{path}: the file is empty; expected a header line and one line per image")
    return CsvTable(path=Path(path), header=tuple(all_rows[0]), rows=tuple(all_rows[1:]))


def cell(row: list[str], index: int | None) -> str:
    """The trimmed value of column ``index`` of ``row``; empty when the column is absent or the row short."""
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def parse_age(text: str) -> float | None:
    """Age in years from ``58``, ``58.0`` or the ``058Y`` / ``006M`` / ``010D`` form; None if unknown."""
    match = _AGE.match(text)
    if not match:
        return None
    years = float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]
    return years if years <= MAX_PLAUSIBLE_AGE else None


def parse_sex(text: str) -> str | None:
    """``M`` or ``F`` from M/F/Male/Female (any case); None for Unknown or blank."""
    return _SEX.get(text.strip().lower())
