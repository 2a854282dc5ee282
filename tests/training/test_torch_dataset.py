"""The torch Dataset: same tensors as the device path, targets, augmentation, decode failures."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_core.errors import DatasetError
from cxr_core.labels import CHEXPERT
from cxr_core.preprocess import PreprocessSpec, preprocess_file
from training.data.policies import encode_targets
from training.data.records import ImageRecord
from training.data.torch_dataset import CxrImageDataset, validate_images

pytestmark = pytest.mark.needs_torch

NCHW = PreprocessSpec(input_size=32, resize_to=40)
NHWC = PreprocessSpec(input_size=32, resize_to=40, layout="NHWC", interpolation="bicubic")
CROP_ONLY = PreprocessSpec(input_size=32, resize="none")


def gradient(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth ramp plus noise in [0, 1]: realistic enough to exercise resampling."""
    yy, xx = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).random((height, width))
    return (0.6 * (xx + yy) / (height + width) + 0.4 * noise).clip(0, 1)


def write_image(path: Path, kind: str, seed: int = 0) -> Path:
    grey = gradient(48, 64, seed)
    if kind == "png16":
        Image.fromarray((grey * 65535).astype(np.uint16)).save(path)
    elif kind == "jpeg":
        Image.fromarray((grey * 255).astype(np.uint8)).save(path, quality=92)
    else:
        Image.fromarray((grey * 255).astype(np.uint8)).save(path)
    return path


def make_records(paths: list[Path]) -> list[ImageRecord]:
    labels = [(1.0, 0.0, -1.0, float("nan")) + (0.0,) * 10, (-1.0,) * 14]
    return [
        ImageRecord(path, labels[i % 2], f"patient{i}", f"patient{i}/study1") for i, path in enumerate(paths)
    ]


SUFFIX = {"png": ".png", "jpeg": ".jpg", "png16": ".png"}


@pytest.mark.parametrize("spec", [NCHW, NHWC], ids=["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", ["png", "jpeg", "png16"])
def test_dataset_tensor_is_bit_identical_to_device_path(
    tmp_path: Path, kind: str, spec: PreprocessSpec
) -> None:
    path = write_image(tmp_path / f"image{SUFFIX[kind]}", kind)
    if kind == "png16":
        with Image.open(path) as img:
            assert img.mode.startswith("I")  # really a 16-bit file
    records = make_records([path])
    dataset = CxrImageDataset(records, spec, encode_targets(records, CHEXPERT, "u-ones"))
    image = dataset[0]["image"]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert tuple(image.shape) == spec.output_shape
    device = preprocess_file(path, spec)
    assert np.array_equal(image.numpy(), device)
    assert np.array_equal(dataset[0]["image"].numpy(), device)  # and again: no state between reads


def test_item_targets_mask_and_index(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", "png", seed=i) for i in range(2)]
    records = make_records(paths)
    dataset = CxrImageDataset(records, NCHW, encode_targets(records, CHEXPERT, "u-ignore"))
    item = dataset[0]
    assert item["index"] == 0 and len(dataset) == 2
    assert item["target"].dtype == torch.float32 and item["mask"].dtype == torch.float32
    assert item["target"][:4].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert item["mask"][:4].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert dataset[-1]["index"] == 1
    with pytest.raises(IndexError):
        dataset[2]
    multiclass = CxrImageDataset(records, NCHW, encode_targets(records, CHEXPERT, "u-multiclass"))
    assert multiclass[1]["target"].dtype == torch.int64 and multiclass[1]["target"].tolist() == [2] * 14


def test_augment_applied_on_top_of_preprocessed_tensor(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / "a.png", "png")]
    records = make_records(paths)
    targets = encode_targets(records, CHEXPERT, "u-zeros")
    plain = CxrImageDataset(records, NCHW, targets)[0]["image"]
    flipped = CxrImageDataset(records, NCHW, targets, augment=lambda t: torch.flip(t, dims=[-1]))[0]["image"]
    assert torch.equal(flipped, torch.flip(plain, dims=[-1])) and not torch.equal(flipped, plain)


def test_dataloader_batches(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.jpg", "jpeg", seed=i) for i in range(4)]
    records = make_records(paths)
    dataset = CxrImageDataset(records, NCHW, encode_targets(records, CHEXPERT, "u-ones"))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert tuple(batch["image"].shape) == (4, 3, 32, 32)
    assert tuple(batch["target"].shape) == (4, 14) and batch["index"].tolist() == [0, 1, 2, 3]
    copy = pickle.loads(pickle.dumps(dataset))  # DataLoader workers receive the dataset pickled
    assert torch.equal(copy[3]["image"], dataset[3]["image"])


def test_corrupt_image_raises_dataset_error_naming_the_file(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", "png")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    records = make_records([good, bad])
    dataset = CxrImageDataset(records, NCHW, encode_targets(records, CHEXPERT, "u-ones"))
    assert dataset[0]["image"].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="corrupt.png"):
        dataset[1]


def test_validate_images_reports_every_bad_file(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", "png", seed=i) for i in range(4)]
    assert validate_images(make_records(paths), progress=False) == 4
    bad = [tmp_path / "bad1.png", tmp_path / "bad2.jpg"]
    for path in bad:
        path.write_bytes(b"garbage")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(tiny)  # decodes, but smaller than the crop
    records = make_records(paths + bad + [tiny])
    with pytest.raises(DatasetError) as info:
        validate_images(records, spec=CROP_ONLY, workers=2, progress=False)
    message = str(info.value)
    assert "3 image file(s)" in message and all(p.name in message for p in [*bad, tiny])
    assert validate_images(make_records(paths), sample=2, progress=False) == 2


def test_length_mismatch_refused(tmp_path: Path) -> None:
    records = make_records([tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.raises(ValueError, match="2 records but 1 target rows"):
        CxrImageDataset(records, NCHW, encode_targets(records[:1], CHEXPERT, "u-ones"))
