"""cxr_core.input_gate: every refusal and warning, on real PNG, JPEG and DICOM files."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cxr_core.imaging import DecodedImage, decode_image
from cxr_core.input_gate import (
    DEFAULT_MAX_COLOURFULNESS,
    GateIssue,
    ImageRefusedError,
    InputGate,
    default_checks,
)
from tests.file_factory import write_dicom, write_jpeg, write_png


def chest(height: int = 320, width: int = 288) -> np.ndarray:
    """A grey, radiograph-like image in [0, 1]: bright body, two dark lung fields, a little noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    lungs = sum(np.exp(-((x - cx) ** 2 / 0.012 + (y - 0.45) ** 2 / 0.05)) for cx in (0.3, 0.68))
    noise = np.random.default_rng(0).random((height, width)) * 0.05
    return np.clip(0.75 - 0.55 * lungs + 0.1 * y + noise, 0.0, 1.0)


def tinted(grey: np.ndarray, cast: tuple[float, float, float]) -> np.ndarray:
    return np.clip(grey[..., None] * np.asarray(cast), 0.0, 1.0)


def colour_scene(height: int = 300, width: int = 400) -> np.ndarray:
    """A synthetic outdoor photograph: blue sky, green field, a red-orange object, some texture."""
    y, x = np.mgrid[0:height, 0:width] / height
    rgb = np.zeros((height, width, 3))
    sky = y < 0.45
    rgb[sky] = np.stack([0.35 + 0.2 * y[sky], 0.55 + 0.2 * y[sky], 0.95 - 0.1 * y[sky]], axis=-1)
    rgb[~sky] = np.stack([0.25 + 0.1 * x[~sky] / 1.5, 0.6 - 0.2 * y[~sky], 0.2 + 0 * y[~sky]], axis=-1)
    ball = (x - 0.9) ** 2 + (y - 0.65) ** 2 < 0.02
    rgb[ball] = (0.9, 0.35, 0.1)
    rgb += np.random.default_rng(1).normal(0, 0.03, rgb.shape)
    return np.clip(rgb, 0.0, 1.0)


def _enforce(path: Path) -> tuple[str, ...]:
    return InputGate().enforce(decode_image(path), str(path))


def _refusal(path: Path) -> ImageRefusedError:
    with pytest.raises(ImageRefusedError) as info:
        _enforce(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- modality


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_radiography_modalities_pass(tmp_path: Path, modality: str) -> None:
    path = write_dicom(tmp_path / "a.dcm", chest(), bits_stored=8, modality=modality)
    assert _enforce(path) == ()


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "MG", "OT", "XA"])
def test_other_modalities_are_refused(tmp_path: Path, modality: str) -> None:
    path = write_dicom(tmp_path / "b.dcm", chest(), bits_stored=8, modality=modality)
    error = _refusal(path)
    assert len(error.reasons) == 1
    assert f"Modality is {modality!r}" in error.reasons[0] and "CR or DX" in error.reasons[0]


def test_dr_is_accepted_with_a_warning_and_a_missing_modality_too(tmp_path: Path) -> None:
    warnings = _enforce(write_dicom(tmp_path / "dr.dcm", chest(), bits_stored=8, modality="DR"))
    assert len(warnings) == 1 and "'DR'" in warnings[0] and "not a DICOM defined term" in warnings[0]
    warnings = _enforce(write_dicom(tmp_path / "none.dcm", chest(), bits_stored=8, modality=""))
    assert len(warnings) == 1 and "no Modality" in warnings[0]


def test_png_and_jpeg_carry_no_modality_and_pass(tmp_path: Path) -> None:
    assert _enforce(write_png(tmp_path / "a.png", chest())) == ()
    assert _enforce(write_jpeg(tmp_path / "a.jpg", chest())) == ()


# ----------------------------------------------------------------------------- body part


@pytest.mark.parametrize("part", ["CHEST", "CHEST PA", "THORAX", "CHEST_TO_PELVIS", "LUNG", "THORAXPA", None])
def test_chest_body_parts_pass(tmp_path: Path, part: str | None) -> None:
    assert _enforce(write_dicom(tmp_path / "c.dcm", chest(), bits_stored=8, body_part=part)) == ()


@pytest.mark.parametrize("part", ["KNEE", "SKULL", "ABDOMEN", "L_SPINE", "HAND", "PELVIS"])
def test_other_body_parts_are_refused(tmp_path: Path, part: str) -> None:
    error = _refusal(write_dicom(tmp_path / "k.dcm", chest(), bits_stored=8, body_part=part))
    assert error.reasons == (f"DICOM BodyPartExamined is {part!r}, not the chest; expected CHEST",)


def test_unrecognised_body_part_is_a_warning(tmp_path: Path) -> None:
    warnings = _enforce(write_dicom(tmp_path / "p.dcm", chest(), bits_stored=8, body_part="PORTABLE"))
    assert len(warnings) == 1 and "'PORTABLE' is not recognised" in warnings[0]


# ----------------------------------------------------------------------------- size


@pytest.mark.parametrize(("height", "width"), [(200, 300), (255, 400), (300, 64)])
def test_images_too_small_for_a_radiograph_are_refused(tmp_path: Path, height: int, width: int) -> None:
    error = _refusal(write_png(tmp_path / "small.png", chest(height, width)))
    assert error.reasons == (
        f"image is only {width}x{height} pixels, too small to be a radiograph; expected at least 256 pixels "
        "on the shorter side",
    )


def test_the_minimum_size_passes(tmp_path: Path) -> None:
    assert _enforce(write_png(tmp_path / "ok.png", chest(256, 256))) == ()


# ----------------------------------------------------------------------------- colour


def test_a_colour_photograph_is_refused(tmp_path: Path) -> None:
    scene = colour_scene()
    for path in (write_jpeg(tmp_path / "photo.jpg", scene), write_png(tmp_path / "photo.png", scene)):
        error = _refusal(path)
        assert len(error.reasons) == 1
        assert "in colour" in error.reasons[0] and "photograph" in error.reasons[0]
        assert f"limit {DEFAULT_MAX_COLOURFULNESS:.3f}" in error.reasons[0]


def _installed_photos() -> list[Path]:
    """Real colour photographs that ship with installed packages (scikit-learn, matplotlib)."""
    found = []
    for package, parts in (
        ("sklearn", ("datasets", "images", "china.jpg")),
        ("sklearn", ("datasets", "images", "flower.jpg")),
        ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
    ):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent.joinpath(*parts)
            if path.is_file():
                found.append(path)
    return found


@pytest.mark.parametrize("photo", _installed_photos(), ids=lambda p: p.name)
def test_real_colour_photographs_are_refused(photo: Path) -> None:
    error = _refusal(photo)
    assert "in colour" in error.reasons[0]


def test_real_colour_photographs_were_found() -> None:
    """The threshold was measured on these; the dev environment ([train] extra) ships them."""
    assert len(_installed_photos()) == 3


CASTS = {"equal-rgb": (1.0, 1.0, 1.0), "blue-cast": (0.95, 1.0, 1.05), "warm-cast": (1.04, 1.0, 0.96)}


@pytest.mark.parametrize("cast", CASTS.values(), ids=CASTS.keys())
@pytest.mark.parametrize("writer", [write_png, write_jpeg], ids=["png", "jpeg"])
def test_grey_and_mildly_tinted_radiographs_pass(
    tmp_path: Path, cast: tuple[float, ...], writer: Callable
) -> None:
    path = writer(tmp_path / ("r.png" if writer is write_png else "r.jpg"), tinted(chest(), cast))
    decoded = decode_image(path)
    assert decoded.provenance.source_mode == "RGB"
    assert _enforce(path) == ()


def test_annotations_in_colour_pass(tmp_path: Path) -> None:
    rgb = tinted(chest(), (1.0, 1.0, 1.0))
    rgb[20:40, 20:200] = (1.0, 0.0, 0.0)  # a red label, ~4% of the image
    assert _enforce(write_png(tmp_path / "annotated.png", rgb)) == ()


def test_a_sepia_toned_image_is_refused_with_the_greyscale_hint(tmp_path: Path) -> None:
    error = _refusal(write_jpeg(tmp_path / "sepia.jpg", tinted(chest(), (1.0, 0.85, 0.65))))
    assert "save it as greyscale" in error.reasons[0]


# ----------------------------------------------------------------------------- view


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL"])
def test_lateral_view_is_a_warning_not_a_refusal(tmp_path: Path, view: str) -> None:
    warnings = _enforce(write_dicom(tmp_path / "lat.dcm", chest(), bits_stored=8, view=view))
    assert len(warnings) == 1 and warnings[0].startswith("a lateral view")


def test_other_non_frontal_views_warn_and_frontal_views_do_not(tmp_path: Path) -> None:
    warnings = _enforce(write_dicom(tmp_path / "o.dcm", chest(), bits_stored=8, view="RAO"))
    assert len(warnings) == 1 and "'RAO', not a frontal (PA/AP) view" in warnings[0]
    for view in ("PA", "AP", None):
        assert _enforce(write_dicom(tmp_path / "f.dcm", chest(), bits_stored=8, view=view)) == ()


# ----------------------------------------------------------------------------- the gate


def test_every_refusal_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "ct.dcm", chest(100, 120), bits_stored=8, modality="CT", body_part="HEAD", view="LL"
    )
    error = _refusal(path)
    assert len(error.reasons) == 3
    assert "Modality is 'CT'" in error.reasons[0]
    assert "BodyPartExamined is 'HEAD'" in error.reasons[1]
    assert "only 120x100 pixels" in error.reasons[2]
    assert "; ".join(error.reasons) in str(error)


class RefuseDarkImages:
    """A stand-in for a learned OOD detector: any object with a name and __call__ plugs in."""

    name = "dark"

    def __call__(self, image: DecodedImage) -> list[GateIssue]:
        mean = float(image.pixels.mean())
        return [GateIssue(self.name, "refuse", f"mean brightness {mean:.2f}")] if mean < 0.1 else []


def test_a_new_check_plugs_in(tmp_path: Path) -> None:
    gate = InputGate([*default_checks(), RefuseDarkImages()])
    dark = decode_image(write_png(tmp_path / "dark.png", chest() * 0.05))
    expected = f"mean brightness {float(dark.pixels.mean()):.2f}"
    with pytest.raises(ImageRefusedError, match=expected):
        gate.enforce(dark, "dark.png")
    assert gate.enforce(decode_image(write_png(tmp_path / "ok.png", chest())), "ok.png") == ()
    result = gate.evaluate(dark)
    assert not result.accepted and result.refusals == (expected,)


def test_a_check_without_the_protocol_is_rejected() -> None:
    with pytest.raises(TypeError, match="expected an ImageCheck"):
        InputGate([lambda image: []])


def test_thresholds_are_configurable(tmp_path: Path) -> None:
    decoded = decode_image(write_png(tmp_path / "s.png", chest(120, 120)))
    assert InputGate(default_checks(min_side=64)).evaluate(decoded).accepted
    assert not InputGate().evaluate(decoded).accepted
