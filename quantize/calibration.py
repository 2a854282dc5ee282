"""The fixed, recorded list of calibration images and their preprocessed tensors.

INT8 calibration, the parity report and the golden set all read the same images, chosen
deterministically and preprocessed by the one :func:`cxr_core.preprocess.preprocess_file`
(docs/architecture.md, "Quantization"). The default source is the validation split of the dataset the
checkpoint was trained on, rebuilt from the run config stored in the checkpoint; otherwise a
directory of image files. The exact file names go into the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError
from cxr_core.imaging_common import IMAGE_SUFFIXES
from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec, preprocess_file

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION_IMAGES = 64


class CalibrationError(CxrEdgeError, ValueError):
    """No usable calibration images: the source is missing, empty, or an image cannot be read."""


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration images: where they come from and the exact files, in order."""

    source: str
    root: Path
    files: tuple[Path, ...]

    @property
    def names(self) -> list[str]:
        """File names relative to ``root`` (POSIX), as recorded in the manifest."""
        return [
            f.relative_to(self.root).as_posix() if f.is_relative_to(self.root) else str(f) for f in self.files
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "root": str(self.root), "count": len(self.files), "files": self.names}


def evenly_spaced(items: Sequence[Path], count: int) -> list[Path]:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if count <= 0:
        raise CalibrationError(f"calibration image count {count}; expected at least 1")
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def from_directory(directory: str | Path, count: int) -> CalibrationSet:
    """Image files under ``directory`` (recursive, sorted by relative path), evenly subsampled."""
    root = Path(directory)
    if not root.is_dir():
        raise CalibrationError(f"calibration directory {root} does not exist; expected a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(
            f"calibration directory {root} holds no image files; expected some of {list(IMAGE_SUFFIXES)}"
        )
    return CalibrationSet(source=f"directory {root}", root=root, files=tuple(evenly_spaced(files, count)))


def resolve_data_root(
    recorded: str | Path, checkpoint: str | Path, override: str | Path | None = None
) -> Path:
    """The dataset folder to reload a checkpoint's splits from.

    ``override`` (``cxr-export --data-root``) wins. An absolute recorded ``data_root`` is used as
    it is. A relative one was relative to wherever training ran, so it is looked up in the
    checkpoint's run folder first, then in the current directory; when neither holds it the error
    names both places.
    """
    if override is not None:
        root = Path(override).expanduser()
        if not root.is_dir():
            raise CalibrationError(f"--data-root {root} is not a folder; expected the dataset folder")
        return root.resolve()
    path = Path(recorded).expanduser()
    if path.is_absolute():
        if not path.is_dir():
            raise CalibrationError(
                f"checkpoint {checkpoint} records data_root {path}, which does not exist here; "
                "pass --data-root with the dataset folder (or --calibration-dir with a folder of images)"
            )
        return path
    candidates = [Path(checkpoint).resolve().parent / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise CalibrationError(
        f"checkpoint {checkpoint} records the relative data_root {str(path)!r}, found neither at "
        f"{candidates[0]} (beside the checkpoint) nor at {candidates[1]} (current directory); "
        "pass --data-root with the dataset folder (or --calibration-dir with a folder of images)"
    )


def validation_split(
    run_config: dict[str, Any], checkpoint: str | Path, data_root: str | Path | None = None
) -> tuple[Any, Path]:
    """``(DatasetSplits, data_root)`` of the dataset recorded in a checkpoint's run config.

    ``data_root`` overrides the recorded folder (see :func:`resolve_data_root`).
    """
    if not run_config or not run_config.get("data_root"):
        raise CalibrationError(
            f"checkpoint {checkpoint} records no dataset (run config without data_root); "
            "pass --calibration-dir with a folder of images"
        )
    from training.config import TrainConfig
    from training.engine import load_splits

    root = resolve_data_root(run_config["data_root"], checkpoint, data_root)
    try:
        run = TrainConfig.from_dict({**run_config, "data_root": str(root)}, f"checkpoint {checkpoint}")
        splits = load_splits(run)
    except (CxrEdgeError, ValueError, OSError) as exc:
        raise CalibrationError(
            f"cannot reload the validation split recorded in checkpoint {checkpoint} from {root} ({exc}); "
            "pass --data-root with the dataset folder, or --calibration-dir with a folder of images"
        ) from exc
    if not splits.val:
        raise CalibrationError(
            f"the validation split of {run.dataset} at {run.data_root} is empty; pass --calibration-dir"
        )
    return splits, Path(run.data_root)


def from_splits(splits: Any, root: Path, count: int) -> CalibrationSet:
    """``count`` images spread evenly over the validation split (sorted by path), at most half of it.

    The other half stays held out: export parity and the AUC gate are measured on images that
    calibration never saw (quantize/evaluation_set.py).
    """
    records = sorted(splits.val, key=lambda r: str(r.path))
    usable = max(1, len(records) // 2)
    if count > usable:
        logger.info(
            "calibrating on %d of the %d validation images (asked for %d): the rest are held out for parity",
            usable,
            len(records),
            count,
        )
    files = evenly_spaced([Path(r.path) for r in records], min(count, usable))
    return CalibrationSet(
        source=f"validation split of {splits.name} at {root}", root=root, files=tuple(files)
    )


class ImageList(Protocol):
    """Anything with an ordered ``files`` tuple (calibration and evaluation sets)."""

    files: tuple[Path, ...]


def load_tensors(
    images: ImageList, spec: PreprocessSpec, progress: bool = False, desc: str = "calibration images"
) -> NDArray[np.float32]:
    """Preprocess every image of ``images`` with ``spec``; ``(N, *spec.output_shape)`` float32."""
    files: Any = images.files
    if progress:
        tqdm = require("tqdm", extra="export", purpose="calibration progress bars").tqdm
        files = tqdm(files, desc=desc, unit="img")
    arrays = []
    for path in files:
        try:
            arrays.append(preprocess_file(path, spec))
        except (CxrEdgeError, ValueError, OSError) as exc:
            raise CalibrationError(f"{desc[:-1]} {path} cannot be used: {exc}") from exc
    return np.stack(arrays, axis=0)
