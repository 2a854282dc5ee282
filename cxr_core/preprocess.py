"""The one preprocessing of cxr-edge.

Training, calibration, the app and the benchmark all call :func:`preprocess` with the
:class:`PreprocessSpec` that travels inside every checkpoint and model bundle, so the device
can never preprocess differently from training (docs/architecture.md, "The data path").

The input is the float grey image in [0, 1] that :func:`cxr_core.imaging.decode_image`
returns; the output is a float32 tensor for one image, ``(C, H, W)`` or ``(H, W, C)``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import PreprocessInputError, PreprocessSpecError

#: Bump when the meaning of a field or the arithmetic of preprocess() changes.
PREPROCESS_SPEC_VERSION = 1

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

RESIZE_RULES = ("shorter_side", "square", "none")
CROP_RULES = ("center", "none")
NORMALIZATIONS = ("mean_std", "range")
LAYOUTS = ("NCHW", "NHWC")
_INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
INTERPOLATIONS = tuple(_INTERPOLATIONS)


def _check_choice(field_name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        hint = difflib.get_close_matches(str(value), choices, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise PreprocessSpecError(
            f"PreprocessSpec.{field_name}={value!r} is not valid; "
            f"expected one of {list(choices)}{did_you_mean}"
        )


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a decoded grey image into a model input, as data.

    The default is the CheXNet / DGC recipe: resize the shorter side to 256, centre-crop 224,
    replicate grey to 3 channels, normalise with the ImageNet mean and std, NCHW layout.

    Fields:
        input_size: side of the square model input, in pixels.
        resize: ``shorter_side`` (keep aspect, shorter side to ``resize_to``), ``square``
            (both sides to ``resize_to``), or ``none``.
        resize_to: target of the resize rule, in pixels.
        crop: ``center`` (centre crop to ``input_size``) or ``none`` (the resized image must
            already be ``input_size`` square).
        channels: 1 or 3; grey is replicated to 3 channels for ImageNet-style backbones.
        normalization: ``mean_std`` (``(x - mean) / std`` per channel) or ``range`` (map [0, 1]
            linearly onto ``value_range``).
        mean, std: per-channel statistics, one value per channel.
        value_range: output range for ``normalization="range"``.
        layout: ``NCHW`` or ``NHWC``: the model input layout (the batch axis is added by
            :func:`preprocess_batch`).
        interpolation: resampling filter: nearest, bilinear, bicubic, area, lanczos
            (antialiased when downscaling, as Pillow does).
        version: the spec format version, checked when loading.
    """

    input_size: int = 224
    resize: str = "shorter_side"
    resize_to: int = 256
    crop: str = "center"
    channels: int = 3
    normalization: str = "mean_std"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    value_range: tuple[float, float] = (0.0, 1.0)
    layout: str = "NCHW"
    interpolation: str = "bilinear"
    version: int = PREPROCESS_SPEC_VERSION

    def __post_init__(self) -> None:
        # Normalise list inputs (e.g. from JSON) to tuples so the spec stays hashable and frozen.
        for name in ("mean", "std", "value_range"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.version != PREPROCESS_SPEC_VERSION:
            raise PreprocessSpecError(
                f"PreprocessSpec.version={self.version!r} is not supported; this cxr-edge reads version "
                f"{PREPROCESS_SPEC_VERSION}. Re-export the model with this version of cxr-edge."
            )
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 4096:
            raise PreprocessSpecError(
                f"PreprocessSpec.input_size={self.input_size!r}; expected an integer in [8, 4096]"
            )
        if not isinstance(self.resize_to, int) or not 8 <= self.resize_to <= 8192:
            raise PreprocessSpecError(
                f"PreprocessSpec.resize_to={self.resize_to!r}; expected an integer in [8, 8192]"
            )
        _check_choice("resize", self.resize, RESIZE_RULES)
        _check_choice("crop", self.crop, CROP_RULES)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if self.channels not in (1, 3):
            raise PreprocessSpecError(f"PreprocessSpec.channels={self.channels!r}; expected 1 or 3")
        if self.normalization == "mean_std":
            if len(self.mean) != self.channels or len(self.std) != self.channels:
                raise PreprocessSpecError(
                    f"PreprocessSpec mean={self.mean} and std={self.std} must each have one value per "
                    f"channel (channels={self.channels})"
                )
            if any(s <= 0 for s in self.std):
                raise PreprocessSpecError(f"PreprocessSpec.std={self.std}; every value must be > 0")
        if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
            raise PreprocessSpecError(
                f"PreprocessSpec.value_range={self.value_range}; expected (low, high) with low < high"
            )
        if self.crop == "center" and self.resize != "none" and self.resize_to < self.input_size:
            raise PreprocessSpecError(
                f"PreprocessSpec resize_to={self.resize_to} is smaller than the centre crop "
                f"input_size={self.input_size}; expected resize_to >= input_size"
            )

    # ----- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Build a spec from :meth:`to_dict` output; unknown keys are refused with a suggestion."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            detail = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
            )
            raise PreprocessSpecError(
                f"unknown PreprocessSpec field(s) {detail}; expected fields {sorted(known)}"
            )
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PreprocessSpecError(f"PreprocessSpec JSON is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PreprocessSpecError(f"PreprocessSpec JSON must be an object; got {type(data).__name__}")
        return cls.from_dict(data)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image, without the batch axis."""
        s = self.input_size
        return (self.channels, s, s) if self.layout == "NCHW" else (s, s, self.channels)


@dataclass(frozen=True)
class PreprocessGeometry:
    """Where the model input sits in the original image: used to map a heat map back onto it.

    ``resized_size`` is (height, width) after the resize rule; ``crop_box`` is
    (top, left, height, width) of the crop inside the resized image.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]


def compute_geometry(height: int, width: int, spec: PreprocessSpec) -> PreprocessGeometry:
    """The resize and crop that :func:`preprocess` applies to an image of ``height`` x ``width``."""
    if height <= 0 or width <= 0:
        raise PreprocessInputError(
            f"image size {height}x{width} is empty; expected positive height and width"
        )
    if spec.resize == "shorter_side":
        # Same arithmetic as torchvision's Resize(int): the longer side is truncated, not rounded.
        if height <= width:
            new_h, new_w = spec.resize_to, int(spec.resize_to * width / height)
        else:
            new_h, new_w = int(spec.resize_to * height / width), spec.resize_to
    elif spec.resize == "square":
        new_h = new_w = spec.resize_to
    else:
        new_h, new_w = height, width
    if spec.crop == "center":
        crop = spec.input_size
        if new_h < crop or new_w < crop:
            raise PreprocessInputError(
                f"image of {height}x{width} resizes to {new_h}x{new_w}, smaller than the {crop}x{crop} crop"
            )
        top = int(round((new_h - crop) / 2.0))
        left = int(round((new_w - crop) / 2.0))
        box = (top, left, crop, crop)
    else:
        if (new_h, new_w) != (spec.input_size, spec.input_size):
            raise PreprocessInputError(
                f"image of {height}x{width} becomes {new_h}x{new_w} without a crop; the spec expects "
                f"{spec.input_size}x{spec.input_size}. Use resize='square' or crop='center'."
            )
        box = (0, 0, new_h, new_w)
    return PreprocessGeometry((height, width), (new_h, new_w), box)


def preprocess(image: NDArray[np.floating], spec: PreprocessSpec) -> NDArray[np.float32]:
    """Turn one decoded grey image (float, (H, W), values in [0, 1]) into a model input tensor.

    Returns a C-contiguous float32 array of ``spec.output_shape``.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        shape = getattr(image, "shape", None)
        raise PreprocessInputError(
            "preprocess expects a grey image as a 2-D array (H, W); "
            f"got {type(image).__name__} with shape {shape}"
        )
    grey = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(grey).all():
        raise PreprocessInputError(
            "preprocess got an image with NaN or infinite values; expected finite values in [0, 1]"
        )
    geometry = compute_geometry(grey.shape[0], grey.shape[1], spec)
    new_h, new_w = geometry.resized_size
    if (new_h, new_w) != grey.shape:
        resized = Image.fromarray(grey).resize((new_w, new_h), _INTERPOLATIONS[spec.interpolation])
        grey = np.asarray(resized, dtype=np.float32)
    top, left, h, w = geometry.crop_box
    grey = grey[top : top + h, left : left + w]
    # Resampling filters can overshoot slightly; keep the documented [0, 1] domain.
    grey = np.clip(grey, 0.0, 1.0)

    if spec.normalization == "mean_std":
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        planes = (grey[None, :, :] - mean[:, None, None]) / std[:, None, None]
    else:
        low, high = spec.value_range
        plane = grey * np.float32(high - low) + np.float32(low)
        planes = np.repeat(plane[None, :, :], spec.channels, axis=0)
    if spec.layout == "NHWC":
        planes = np.transpose(planes, (1, 2, 0))
    return np.ascontiguousarray(planes, dtype=np.float32)


def preprocess_batch(images: Sequence[NDArray[np.floating]], spec: PreprocessSpec) -> NDArray[np.float32]:
    """Preprocess several images and stack them along a new batch axis (N first)."""
    if len(images) == 0:
        raise PreprocessInputError("preprocess_batch got no images; expected at least one")
    return np.stack([preprocess(img, spec) for img in images], axis=0)


def preprocess_file(path: str | Path, spec: PreprocessSpec) -> NDArray[np.float32]:
    """Decode ``path`` with :func:`cxr_core.imaging.decode_image` and preprocess it.

    This is the exact path training datasets and the device both take for a file.
    """
    from cxr_core.imaging import decode_image

    return preprocess(decode_image(path).pixels, spec)
