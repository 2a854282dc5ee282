"""PreprocessSpec validation and serialisation, and the arithmetic of the one preprocess()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_core.errors import PreprocessSpecError
from cxr_core.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
    compute_geometry,
    preprocess,
    preprocess_batch,
)


def test_default_spec_is_the_papers_recipe() -> None:
    spec = PreprocessSpec()
    assert (spec.resize, spec.resize_to, spec.crop, spec.input_size) == ("shorter_side", 256, "center", 224)
    assert spec.channels == 3 and spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD
    assert spec.layout == "NCHW" and spec.output_shape == (3, 224, 224)


def test_json_round_trip_and_lists_become_tuples() -> None:
    spec = PreprocessSpec(input_size=128, resize_to=146, layout="NHWC", interpolation="bicubic")
    text = spec.to_json()
    assert json.loads(text)["mean"] == list(IMAGENET_MEAN)
    again = PreprocessSpec.from_json(text)
    assert again == spec and hash(again) == hash(spec)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"layout": "NCH"}, "did you mean 'NCHW'"),
        ({"interpolation": "bilinaer"}, "did you mean 'bilinear'"),
        ({"channels": 2}, "expected 1 or 3"),
        ({"std": (0.2, 0.0, 0.2)}, "must be > 0"),
        ({"mean": (0.5,)}, "one value per channel"),
        ({"resize_to": 100}, "smaller than the centre crop"),
        ({"input_size": 0}, "input_size=0"),
        ({"version": 99}, "version=99"),
    ],
)
def test_invalid_fields_are_refused_with_the_value(changes: dict, fragment: str) -> None:
    with pytest.raises(PreprocessSpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        PreprocessSpec(**changes)


def test_unknown_json_field_gets_a_suggestion() -> None:
    data = PreprocessSpec().to_dict()
    data["input_sise"] = data.pop("input_size")
    with pytest.raises(PreprocessSpecError, match="did you mean 'input_size'"):
        PreprocessSpec.from_dict(data)


def test_geometry_matches_torchvision_resize_and_centre_crop_arithmetic() -> None:
    geometry = compute_geometry(1000, 800, PreprocessSpec())
    # shorter side (width 800) -> 256, longer side truncated: int(256 * 1000 / 800) = 320
    assert geometry.resized_size == (320, 256)
    assert geometry.crop_box == (48, 16, 224, 224)


def test_output_shape_dtype_and_normalisation_of_a_flat_image() -> None:
    grey = np.full((300, 400), 0.5, dtype=np.float32)
    out = preprocess(grey, PreprocessSpec())
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    expected = (0.5 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), expected, atol=1e-5)


def test_nhwc_is_the_transpose_of_nchw() -> None:
    rng = np.random.default_rng(0)
    grey = rng.random((257, 311), dtype=np.float32)
    nchw = preprocess(grey, PreprocessSpec())
    nhwc = preprocess(grey, PreprocessSpec(layout="NHWC"))
    assert nhwc.shape == (224, 224, 3)
    assert np.array_equal(np.transpose(nchw, (1, 2, 0)), nhwc)


def test_range_normalisation_and_single_channel() -> None:
    grey = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    spec = PreprocessSpec(
        input_size=64,
        resize="none",
        crop="none",
        channels=1,
        normalization="range",
        mean=(0.5,),
        std=(0.25,),
        value_range=(-1.0, 1.0),
    )
    out = preprocess(grey, spec)
    assert out.shape == (1, 64, 64)
    np.testing.assert_allclose(out[0], grey * 2 - 1, atol=1e-6)


def test_centre_crop_keeps_the_centre() -> None:
    grey = np.zeros((256, 256), dtype=np.float32)
    grey[16:240, 16:240] = 1.0  # exactly the 224 centre
    out = preprocess(grey, PreprocessSpec(normalization="range"))
    assert out.min() == 1.0


def test_preprocess_is_deterministic_and_batch_stacks() -> None:
    rng = np.random.default_rng(1)
    images = [rng.random((300, 280), dtype=np.float32) for _ in range(3)]
    batch = preprocess_batch(images, PreprocessSpec())
    assert batch.shape == (3, 3, 224, 224)
    assert np.array_equal(batch[1], preprocess(images[1], PreprocessSpec()))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), [[0.1, 0.2]], np.full((300, 300), np.nan)])
def test_bad_arrays_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="preprocess"):
        preprocess(bad, PreprocessSpec())  # type: ignore[arg-type]


def test_image_too_small_for_the_crop_without_resize() -> None:
    spec = PreprocessSpec(resize="none")
    with pytest.raises(ValueError, match="smaller than the 224x224 crop"):
        preprocess(np.zeros((100, 100), np.float32), spec)
