"""One entry point for every dataset: ``load_dataset(kind, root, **options) -> DatasetSplits``.

The training CLI maps ``--dataset`` and ``--data-root`` onto this; each kind's options are the
keyword arguments of its loader (unknown ones are refused with a suggestion).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.data.chestxray14 import load_chestxray14
from training.data.chexpert import load_chexpert
from training.data.records import DatasetOptionError, DatasetSplits


def load_synthetic(root: str | Path, **options: Any) -> DatasetSplits:
    """The synthetic phantom set written by ``cxr-synth``: ChestX-ray14 layout, named ``synthetic``."""
    options.setdefault("name", "synthetic")
    return load_chestxray14(root, **options)


#: Dataset kind -> loader. ``synthetic`` reads the ChestX-ray14 layout (see ``cxr-synth``).
LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "chestxray14": load_chestxray14,
    "chexpert": load_chexpert,
    "synthetic": load_synthetic,
}
DATASET_KINDS: tuple[str, ...] = tuple(LOADERS)


def _did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(value, choices, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def loader_options(kind: str) -> tuple[str, ...]:
    """The option names ``load_dataset(kind, ...)`` accepts."""
    loader = load_chestxray14 if kind == "synthetic" else LOADERS[kind]
    params = inspect.signature(loader).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def load_dataset(kind: str, root: str | Path, **options: Any) -> DatasetSplits:
    """Load dataset ``kind`` (chestxray14, chexpert, synthetic) from ``root`` with its loader's options.

    Raises ``ValueError`` for an unknown kind or option (with a suggestion) and
    :class:`~cxr_core.errors.DatasetError` for a dataset that does not match its layout.
    """
    if kind not in LOADERS:
        raise DatasetOptionError(
            f"unknown dataset {kind!r}; expected one of {list(DATASET_KINDS)}"
            f"{_did_you_mean(kind, DATASET_KINDS)}"
        )
    accepted = loader_options(kind)
    unknown = [name for name in options if name not in accepted]
    if unknown:
        detail = ", ".join(repr(name) + _did_you_mean(name, accepted) for name in unknown)
        raise DatasetOptionError(
            f"unknown option(s) {detail} for dataset {kind!r}; expected some of {list(accepted)}"
        )
    return LOADERS[kind](root, **options)
