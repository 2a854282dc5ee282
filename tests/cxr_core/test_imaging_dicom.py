"""DICOM decoding (cxr_core.imaging_dicom) on real files written with pydicom."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_core.errors import (
    ImageSizeError,
    ImageTooLargeError,
    MissingDependencyError,
    MultiFrameImageError,
    UnsupportedImageError,
)
from cxr_core.imaging import CorruptImageError, decode_bytes, decode_image
from tests.cxr_core.test_imaging import refused
from tests.file_factory import gradient, truncate_copy, write_dicom

pytest.importorskip("pydicom")  # the [dicom] extra; installed in the dev environment

LUMA = np.array([0.299, 0.587, 0.114])
RED_LUMA = float(LUMA @ [200, 40, 40] / 255)  # of the colour in colour_image()


def probe(values: list[int], height: int = 32, width: int = 32) -> np.ndarray:
    """A stored image whose first row starts with ``values``; the rest repeats the last value."""
    arr = np.full((height, width), values[-1], np.int32)
    arr[0, : len(values)] = values
    return arr


def test_monochrome2_normalised_by_bits_stored_range(tmp_path: Path) -> None:
    arr = gradient(64, 48, bits=12)
    decoded = decode_image(write_dicom(tmp_path / "m2.dcm", arr))
    np.testing.assert_allclose(decoded.pixels, arr / 4095.0, atol=1e-6)
    prov = decoded.provenance
    assert (prov.format, prov.width, prov.height, prov.bit_depth) == ("dicom", 48, 64, 12)
    assert (prov.source_mode, prov.modality, prov.body_part_examined, prov.view_position) == (
        "MONOCHROME2",
        "DX",
        "CHEST",
        "PA",
    )
    assert prov.transfer_syntax == "Explicit VR Little Endian" and prov.colourfulness == 0.0
    assert any("BitsStored range [0, 4095]" in n for n in prov.notes)


def test_monochrome1_inverted(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "m1.dcm", probe([4095, 0, 1024]), photometric="MONOCHROME1")
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, :3], [0.0, 1.0, 1 - 1024 / 4095], atol=1e-6)
    assert "MONOCHROME1 inverted" in decoded.provenance.notes


def test_presentation_lut_shape(tmp_path: Path) -> None:
    m2 = decode_image(write_dicom(tmp_path / "inv.dcm", probe([4095, 0]), presentation_lut_shape="INVERSE"))
    assert list(m2.pixels[0, :2]) == [0.0, 1.0]
    assert "Presentation LUT Shape INVERSE applied" in m2.provenance.notes
    # On MONOCHROME1 the INVERSE shape describes the same inversion: applied once, not twice.
    m1 = decode_image(
        write_dicom(
            tmp_path / "m1.dcm", probe([4095, 0]), photometric="MONOCHROME1", presentation_lut_shape="INVERSE"
        )
    )
    assert list(m1.pixels[0, :2]) == [0.0, 1.0]


def test_signed_pixels_use_the_signed_range(tmp_path: Path) -> None:
    decoded = decode_image(write_dicom(tmp_path / "s.dcm", probe([-2048, 2047, 0]), signed=True))
    np.testing.assert_allclose(decoded.pixels[0, :3], [0.0, 1.0, 2048 / 4095], atol=1e-6)


def test_rescale_then_linear_exact_window(tmp_path: Path) -> None:
    # stored s -> 2 s - 1000 -> (v - 3000) / 2000 + 0.5, clipped
    path = write_dicom(
        tmp_path / "w.dcm",
        probe([0, 2000, 2500, 1750, 4095]),
        rescale=(2.0, -1000.0),
        window=(3000, 2000),
        voi_lut_function="LINEAR_EXACT",
    )
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, :5], [0.0, 0.5, 1.0, 0.25, 1.0], atol=1e-6)
    assert "rescale slope 2 intercept -1000 applied" in decoded.provenance.notes
    assert "VOI window applied (center 3000, width 2000, LINEAR_EXACT)" in decoded.provenance.notes


def test_linear_window_follows_the_standard(tmp_path: Path) -> None:
    c, w = 2048.0, 1025.0
    values = [1535, 1536, 2048, 2559, 2560]

    def expected(x: float) -> float:  # PS3.3 C.11.2.1.2.1, output range [0, 1]
        if x <= c - 0.5 - (w - 1) / 2:
            return 0.0
        if x > c - 0.5 + (w - 1) / 2:
            return 1.0
        return (x - (c - 0.5)) / (w - 1) + 0.5

    decoded = decode_image(write_dicom(tmp_path / "lin.dcm", probe(values), window=(c, w)))
    np.testing.assert_allclose(decoded.pixels[0, :5], [expected(x) for x in values], atol=1e-6)


def test_sigmoid_window_and_first_of_several(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "sig.dcm",
        probe([1000, 1500]),
        window=([1000, 3000], [500, 100]),
        voi_lut_function="SIGMOID",
    )
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, :2], [0.5, 1 / (1 + np.exp(-4.0))], atol=1e-6)


def test_invalid_window_is_refused_not_guessed(tmp_path: Path) -> None:
    # A window the file states but that cannot be applied is damage: refused, never replaced by a guess.
    with pytest.raises(CorruptImageError, match="WindowWidth 0 is invalid"):
        decode_image(write_dicom(tmp_path / "bad.dcm", probe([4095, 0]), window=(100, 0)))


def test_voi_lut_preferred_over_window(tmp_path: Path) -> None:
    table = [255 - i for i in range(256)]  # 8-bit entries, first mapped value 100
    path = write_dicom(
        tmp_path / "lut.dcm", probe([0, 100, 150, 355, 4000]), voi_lut=(100, 8, table), window=(2048, 4096)
    )
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, :5], [1.0, 1.0, 205 / 255, 0.0, 0.0], atol=1e-6)
    assert any(n.startswith("VOI LUT applied") for n in decoded.provenance.notes)


def test_modality_lut_sequence(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.LUTDescriptor = [4, 10, 12]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = np.array([0, 1000, 2000, 4095], "<u2").tobytes()  # OW bytes, as many files store it
    item["LUTData"].VR = "OW"
    path = write_dicom(
        tmp_path / "mlut.dcm", probe([0, 11, 12, 13, 50]), overrides={"ModalityLUTSequence": Sequence([item])}
    )
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, :5], [0.0, 1000 / 4095, 2000 / 4095, 1.0, 1.0], atol=1e-6)
    assert "Modality LUT applied" in decoded.provenance.notes


@pytest.mark.parametrize(
    ("syntax", "bits", "tolerance", "name"),
    [
        ("implicit", 12, 1e-6, "Implicit VR Little Endian"),
        ("deflated", 12, 1e-6, "Deflated Explicit VR Little Endian"),
        ("rle", 12, 1e-6, "RLE Lossless"),
        ("jpeg2000_lossless", 12, 1e-6, "JPEG 2000 Image Compression (Lossless Only)"),
        ("jpeg2000", 12, 0.02, "JPEG 2000 Image Compression"),
        ("jpeg_baseline", 8, 4 / 255, "JPEG Baseline (Process 1)"),
    ],
)
def test_transfer_syntaxes(tmp_path: Path, syntax: str, bits: int, tolerance: float, name: str) -> None:
    arr = gradient(64, 48, bits=bits)
    path = write_dicom(tmp_path / f"{syntax}.dcm", arr, bits_stored=bits, transfer_syntax=syntax)
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels, arr / (2**bits - 1), atol=tolerance)
    assert decoded.provenance.transfer_syntax == name


def colour_image() -> np.ndarray:
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :20] = (200, 40, 40)
    rgb[:, 20:] = (90, 90, 90)
    return rgb


def test_rgb_dicom_luma_and_colourfulness(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "rgb.dcm", colour_image(), photometric="RGB", bits_stored=8)
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[0, [0, 39]], [RED_LUMA, 90 / 255], atol=1e-6)
    assert decoded.provenance.colourfulness == pytest.approx(0.5 * 160 / 255, abs=1e-6)


@pytest.mark.parametrize(
    ("photometric", "syntax", "tolerance"),
    [("YBR_FULL", "explicit", 2 / 255), ("YBR_FULL_422", "jpeg_baseline", 6 / 255)],
)
def test_ybr_dicom_converted(tmp_path: Path, photometric: str, syntax: str, tolerance: float) -> None:
    path = write_dicom(
        tmp_path / "ybr.dcm", colour_image(), photometric=photometric, bits_stored=8, transfer_syntax=syntax
    )
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels[4, [4, 35]], [RED_LUMA, 90 / 255], atol=tolerance)
    assert decoded.provenance.colourfulness == pytest.approx(0.5 * 160 / 255, abs=0.03)
    assert f"{photometric} converted to RGB" in decoded.provenance.notes


def test_missing_optional_elements_are_none(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "n.dcm", gradient(32, 32, 12), body_part=None, view=None)
    prov = decode_image(path).provenance
    assert prov.body_part_examined is None and prov.view_position is None and prov.modality == "DX"


def test_without_preamble_only_with_dcm_name(tmp_path: Path) -> None:
    arr = gradient(32, 32, bits=12)
    path = write_dicom(tmp_path / "bare.dcm", arr, preamble=False)
    decoded = decode_image(path)
    np.testing.assert_allclose(decoded.pixels, arr / 4095.0, atol=1e-6)
    assert "DICOM without preamble (read with force)" in decoded.provenance.notes
    renamed = tmp_path / "bare.bin"
    renamed.write_bytes(path.read_bytes())
    refused(UnsupportedImageError, renamed, "not an image")


def test_dcm_named_file_without_dataset_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"\x08\x00" + b"not really a dataset, just bytes" * 4)
    with pytest.raises((UnsupportedImageError, CorruptImageError), match="fake.dcm"):
        decode_image(path)


def test_decode_bytes_dicom(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "b.dcm", gradient(32, 32, 12))
    decoded = decode_bytes(path.read_bytes(), "from_picker.dcm")
    np.testing.assert_array_equal(decoded.pixels, decode_image(path).pixels)
    assert decoded.provenance.path == "from_picker.dcm"


# ----------------------------------------------------------------------------- refusals


def test_multi_frame_refused(tmp_path: Path) -> None:
    refused(
        MultiFrameImageError,
        write_dicom(tmp_path / "mf.dcm", gradient(32, 32, 12), frames=2),
        "2 frames",
        "NumberOfFrames",
    )


def test_no_pixel_data_refused(tmp_path: Path) -> None:
    refused(
        UnsupportedImageError,
        write_dicom(tmp_path / "np.dcm", gradient(32, 32, 12), pixel_data=False),
        "no Pixel Data",
    )


def test_palette_colour_refused(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "pal.dcm", gradient(32, 32), photometric="PALETTE COLOR", bits_stored=8)
    refused(UnsupportedImageError, path, "PALETTE COLOR", "MONOCHROME1")


def test_wrong_samples_per_pixel_refused(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "spp.dcm", gradient(32, 32, 12), overrides={"SamplesPerPixel": 3})
    refused(UnsupportedImageError, path, "SamplesPerPixel 3")


def test_unknown_transfer_syntax_refused(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "ts.dcm",
        gradient(32, 32, 12),
        transfer_syntax="1.2.826.0.1.3680043.9.9.1",
        encapsulated_frames=[b"\x00" * 16],
    )
    refused(UnsupportedImageError, path, "1.2.826.0.1.3680043.9.9.1", "no pixel data decoder")


def _has_plugin(decoder_name: str) -> bool:
    from pydicom.pixels import decoders

    decoder = getattr(decoders, decoder_name)
    return bool(set(decoder.available_plugins) - {"pillow"})


@pytest.mark.skipif(_has_plugin("JPEGLosslessSV1Decoder"), reason="a JPEG Lossless plugin is installed here")
def test_jpeg_lossless_needs_a_plugin(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "jl.dcm",
        gradient(32, 32, 12),
        transfer_syntax="jpeg_lossless",
        encapsulated_frames=[b"\xff\xd8\xff\xd9"],
    )
    refused(UnsupportedImageError, path, "JPEG Lossless", "1.2.840.10008.1.2.4.70", "pylibjpeg", "gdcm")


@pytest.mark.skipif(_has_plugin("JPEGExtended12BitDecoder"), reason="a 12-bit JPEG plugin is installed here")
def test_jpeg_extended_12bit_needs_a_plugin(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "j12.dcm",
        gradient(32, 32, 12),
        transfer_syntax="1.2.840.10008.1.2.4.51",
        encapsulated_frames=[b"\xff\xd8\xff\xd9"],
    )
    refused(UnsupportedImageError, path, "JPEG Extended", "12-bit", "Pillow", "pylibjpeg")


def test_size_checked_before_decoding(tmp_path: Path) -> None:
    # Pixel data stays 32x32: were it decoded, pydicom would fail on the length first.
    arr = gradient(32, 32, 12)
    big = write_dicom(tmp_path / "big.dcm", arr, overrides={"Rows": 9000, "Columns": 9000})
    refused(ImageTooLargeError, big, "81000000 pixels")
    refused(ImageSizeError, write_dicom(tmp_path / "zero.dcm", arr, overrides={"Rows": 0}), "zero size")
    refused(
        ImageSizeError,
        write_dicom(tmp_path / "strip.dcm", arr, overrides={"Rows": 16, "Columns": 320}),
        "aspect ratio",
    )


def test_truncated_dicom_refused(tmp_path: Path) -> None:
    whole = write_dicom(tmp_path / "whole.dcm", gradient(64, 64, 12))
    refused(CorruptImageError, truncate_copy(whole, tmp_path / "cut.dcm", 0.5), "DICOM")


def test_missing_pydicom_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "m.dcm", gradient(32, 32, 12))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[dicom\]'"):
        decode_image(path)
