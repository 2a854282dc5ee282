"""Up-front validation of a dataset on disk: every problem found at load time, reported at once.

A training run that dies in epoch 3 on a missing file wastes hours; one that starts with a
patient in both the training and the test split reports a result that means nothing. The
loaders therefore collect every problem they find into a :class:`ProblemReport` and raise one
:class:`~cxr_core.errors.DatasetError` listing them all (counts plus the first few examples),
and call :func:`check_patient_overlap` on every split they return.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from cxr_core.errors import DatasetError
from training.data.records import DatasetSplits, ImageRecord

#: How many examples an error message lists for each kind of problem.
EXAMPLES_SHOWN = 5


def format_examples(items: Sequence[object], limit: int = EXAMPLES_SHOWN) -> str:
    """``a, b, c`` for a short list, ``a, b, c, ... (12 more)`` for a long one."""
    shown = ", ".join(str(item) for item in items[:limit])
    rest = len(items) - limit
    return f"{shown}, ... ({rest} more)" if rest > 0 else shown


@dataclass
class ProblemReport:
    """Problems found while loading one dataset, raised together as one :class:`DatasetError`.

    Each problem is a summary line (``what`` is wrong, how many) and the offending items, of
    which the first few are shown.
    """

    subject: str
    problems: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, what: str, items: Iterable[object] = ()) -> None:
        """Record one kind of problem; ``items`` are the offending rows, paths or values."""
        self.problems.append((what, [str(item) for item in items]))

    def __bool__(self) -> bool:
        return bool(self.problems)

    def message(self) -> str:
        lines = [f"{self.subject}: {len(self.problems)} problem(s) found"]
        for what, items in self.problems:
            line = f"  - {what}"
            if items:
                line += f" [{len(items)}]: {format_examples(items)}"
            lines.append(line)
        return "\n".join(lines)

    def raise_if_any(self) -> None:
        """Raise one :class:`DatasetError` listing every recorded problem, if there is any."""
        if self.problems:
            raise DatasetError(self.message())


def find_missing_files(records: Iterable[ImageRecord]) -> list[Path]:
    """Paths of ``records`` that are not regular files, in record order."""
    return [record.path for record in records if not os.path.isfile(record.path)]


def _as_split_mapping(
    splits: DatasetSplits | Mapping[str, Sequence[ImageRecord]],
) -> tuple[str, Mapping[str, Sequence[ImageRecord]]]:
    if isinstance(splits, DatasetSplits):
        return splits.name, {"train": splits.train, "val": splits.val, "test": splits.test}
    return "dataset", splits


def check_patient_overlap(splits: DatasetSplits | Mapping[str, Sequence[ImageRecord]]) -> None:
    """Refuse splits that share a patient: images of one patient must all sit in one split.

    Raises :class:`DatasetError` naming every pair of splits that overlap, with the number of
    shared patients and the first few patient ids. Called by every loader on every load.
    """
    name, mapping = _as_split_mapping(splits)
    patients = {split: {record.patient_id for record in records} for split, records in mapping.items()}
    report = ProblemReport(f"{name} splits")
    for first, second in combinations(patients, 2):
        shared = sorted(patients[first] & patients[second])
        if shared:
            report.add(
                f"{len(shared)} patient(s) appear in both the {first!r} and the {second!r} split "
                "(patient ids); a patient's images must all be in one split",
                shared,
            )
    report.raise_if_any()


def check_label_width(records: Iterable[ImageRecord], n_labels: int, subject: str) -> None:
    """Refuse records whose label tuple does not have one value per label of the label set."""
    wrong = [
        f"{record.path} ({len(record.labels)} values)" for record in records if len(record.labels) != n_labels
    ]
    if wrong:
        report = ProblemReport(subject)
        report.add(f"{len(wrong)} record(s) do not have {n_labels} label values", wrong)
        report.raise_if_any()
