"""The torch ``Dataset`` of cxr-edge: each item goes through the one decode + preprocess path.

``CxrImageDataset(records, spec, targets)[i]["image"]`` is exactly
``cxr_core.preprocess.preprocess_file(records[i].path, spec)`` as a tensor, the same tensor the
device computes for that file; augmentation, when given (training only), is applied on top of
it. A file that fails to decode mid-epoch raises :class:`DatasetError` naming it;
:func:`validate_images` finds every such file up front, in one report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import DatasetError, ImageDecodeError
from cxr_core.imaging import decode_image
from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec, preprocess
from training.data.checks import ProblemReport
from training.data.policies import EncodedTargets
from training.data.records import DatasetOptionError, ImageRecord

torch = require("torch", extra="train", purpose="the training dataset")

logger = logging.getLogger(__name__)

Augment = Callable[["torch.Tensor"], "torch.Tensor"]


def load_preprocessed(record: ImageRecord, spec: PreprocessSpec) -> NDArray[np.float32]:
    """Decode and preprocess ``record.path``; any failure becomes a :class:`DatasetError` naming the file."""
    try:
        return preprocess(decode_image(record.path).pixels, spec)
    except ImageDecodeError as exc:
        raise DatasetError(f"{record.path}: cannot be decoded: {exc.reason}") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{record.path}: cannot be read and preprocessed: {exc}") from exc


class CxrImageDataset(torch.utils.data.Dataset):
    """Images of ``records`` preprocessed by ``spec``, with their encoded targets and loss mask.

    Each item is ``{"image": float32 tensor of spec.output_shape, "target": float32 (L,) or
    int64 (L,) for multiclass, "mask": float32 (L,), "index": i}``.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spec: PreprocessSpec,
        targets: EncodedTargets,
        augment: Augment | None = None,
    ) -> None:
        if len(records) != len(targets):
            raise DatasetError(
                f"CxrImageDataset got {len(records)} records but {len(targets)} target rows; "
                "expected one row per record"
            )
        self.records = tuple(records)
        self.spec = spec
        self.targets = targets
        self.augment = augment

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} images")
        index = index % len(self)
        image = torch.from_numpy(load_preprocessed(self.records[index], self.spec))
        if self.augment is not None:
            image = self.augment(image)
        return {
            "image": image,
            "target": torch.from_numpy(self.targets.targets[index].copy()),
            "mask": torch.from_numpy(self.targets.mask[index].copy()),
            "index": index,
        }


def _check_one(record: ImageRecord, spec: PreprocessSpec | None) -> str | None:
    try:
        if spec is None:
            decode_image(record.path)
        else:
            load_preprocessed(record, spec)
    except DatasetError as exc:
        return str(exc)
    except (ImageDecodeError, OSError, ValueError) as exc:
        return f"{record.path}: {exc}"
    return None


def validate_images(
    records: Sequence[ImageRecord],
    sample: int | None = None,
    *,
    spec: PreprocessSpec | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> int:
    """Decode every image of ``records`` (or ``sample`` of them, chosen with ``seed``) up front.

    With ``spec`` the images are also preprocessed (catches images too small for the crop).
    Raises one :class:`DatasetError` listing every bad file; returns the number checked.
    ``workers`` > 1 decodes on that many threads (Pillow releases the GIL while decoding).
    """
    chosen: Sequence[ImageRecord] = records
    if sample is not None:
        if sample < 1:
            raise DatasetOptionError(
                f"sample={sample!r}; expected a positive number of images or None for all"
            )
        if sample < len(records):
            picks = np.sort(np.random.default_rng(seed).choice(len(records), size=sample, replace=False))
            chosen = [records[i] for i in picks]
    tqdm = require("tqdm", extra="train", purpose="the image validation progress bar").tqdm
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda record: _check_one(record, spec), chosen)
        failures = [
            msg
            for msg in tqdm(results, total=len(chosen), desc="checking images", disable=not progress)
            if msg
        ]
    if failures:
        report = ProblemReport(f"image check of {len(chosen)} file(s)")
        report.add(f"{len(failures)} image file(s) cannot be decoded", failures)
        report.raise_if_any()
    logger.info("checked %d image(s): all decode", len(chosen))
    return len(chosen)
