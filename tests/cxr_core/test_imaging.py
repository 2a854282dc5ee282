"""PNG/JPEG decoding and the refusals of cxr_core.imaging, on real files written by Pillow."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from cxr_core.errors import (
    ImageDecodeError,
    ImageSizeError,
    ImageTooLargeError,
    MultiFrameImageError,
    UnsupportedImageError,
)
from cxr_core.imaging import (
    CorruptImageError,
    ImageFileError,
    colourfulness,
    decode_bytes,
    decode_image,
    rgb_to_grey,
)
from cxr_core.imaging_common import STRIP_ROWS, grey_and_colourfulness
from tests.file_factory import (
    gradient,
    truncate_copy,
    write_animated_png,
    write_jpeg,
    write_jpeg_claiming_size,
    write_mpo,
    write_png,
    write_png_claiming_size,
)

LUMA = np.array([0.299, 0.587, 0.114])


def refused(exc_type: type[ImageDecodeError], path: Path, *words: str, **kwargs: object) -> str:
    """Decode ``path``, expect ``exc_type``, check the message names the file and each word."""
    with pytest.raises(exc_type) as info:
        decode_image(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    assert "expected" in message
    return message


# ----------------------------------------------------------------------------- PNG


def test_png_8bit_grey_exact_values(tmp_path: Path) -> None:
    arr = gradient(64, 48)
    decoded = decode_image(write_png(tmp_path / "g.png", arr))
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.shape == (64, 48)
    np.testing.assert_allclose(decoded.pixels, arr / 255.0, atol=1e-6)
    prov = decoded.provenance
    assert (prov.format, prov.width, prov.height, prov.bit_depth, prov.source_mode) == ("png", 48, 64, 8, "L")
    assert prov.colourfulness == 0.0 and prov.path == str(tmp_path / "g.png")
    assert prov.modality is None and prov.transfer_syntax is None


def test_png_16bit_keeps_more_than_256_levels_and_notes_sbit(tmp_path: Path) -> None:
    arr = gradient(64, 48, bits=16)
    decoded = decode_image(write_png(tmp_path / "g16.png", arr, bits=16, sbit=12))
    assert len(np.unique(decoded.pixels)) > 256
    np.testing.assert_allclose(decoded.pixels, arr / 65535.0, atol=1e-6)
    prov = decoded.provenance
    assert prov.bit_depth == 16 and prov.source_mode.startswith("I;16")
    assert "sBIT: 12 significant bits" in prov.notes
    assert any("65535" in n for n in prov.notes)


def test_png_16bit_unscaled_12bit_data_is_noted(tmp_path: Path) -> None:
    arr = gradient(64, 48, bits=12)  # values <= 4095 in a 16-bit PNG
    decoded = decode_image(write_png(tmp_path / "g12.png", arr, bits=16))
    assert decoded.pixels.max() == pytest.approx(4095 / 65535, abs=1e-6)
    assert any("max sample 4095 < 4096" in n for n in decoded.provenance.notes)


def test_png_rgb_uses_601_luma_and_measures_colourfulness(tmp_path: Path) -> None:
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    rgb[:, 10:20] = (0, 255, 0)
    rgb[:, 20:30] = (0, 0, 255)
    rgb[:, 30:] = (100, 100, 100)
    decoded = decode_image(write_png(tmp_path / "rgb.png", rgb))
    np.testing.assert_allclose(decoded.pixels[0, [0, 10, 20, 30]], [*LUMA, 100 / 255], atol=1e-6)
    # Chroma is 1 on three quarters of the pixels and 0 on the grey quarter.
    assert decoded.provenance.colourfulness == pytest.approx(0.75, abs=1e-6)
    assert decoded.provenance.source_mode == "RGB"


def test_png_grey_content_in_rgb_has_zero_colourfulness(tmp_path: Path) -> None:
    g = gradient(32, 40)
    decoded = decode_image(write_png(tmp_path / "greyrgb.png", np.dstack([g, g, g])))
    np.testing.assert_allclose(decoded.pixels, g / 255.0, atol=1e-6)
    assert decoded.provenance.colourfulness == 0.0


def test_png_rgba_composited_over_black(tmp_path: Path) -> None:
    rgba = np.full((32, 40, 4), 255, np.uint8)
    rgba[:16, :, 3] = 0  # transparent top half (hidden colour: white)
    rgba[16:, :20, 3] = 128
    decoded = decode_image(write_png(tmp_path / "rgba.png", rgba))
    assert decoded.pixels[:16].max() == 0.0
    assert decoded.pixels[20, 5] == pytest.approx(128 / 255, abs=1e-6)
    assert decoded.pixels[20, 30] == pytest.approx(1.0, abs=1e-6)
    assert any(n.startswith("alpha composited over black (960 of 1280") for n in decoded.provenance.notes)


def test_png_opaque_alpha_is_dropped(tmp_path: Path) -> None:
    g = gradient(32, 40)
    decoded = decode_image(write_png(tmp_path / "la.png", np.dstack([g, np.full_like(g, 255)])))
    np.testing.assert_allclose(decoded.pixels, g / 255.0, atol=1e-6)
    assert "alpha dropped (every pixel opaque)" in decoded.provenance.notes


def test_png_palette_goes_through_the_palette(tmp_path: Path) -> None:
    index = gradient(32, 40)
    palette = [(i, 0, 0) for i in range(256)]  # a red ramp
    decoded = decode_image(write_png(tmp_path / "p.png", index, mode="P", palette=palette))
    np.testing.assert_allclose(decoded.pixels, 0.299 * index / 255.0, atol=1e-6)
    assert decoded.provenance.colourfulness == pytest.approx(index.mean() / 255.0, abs=1e-6)
    assert decoded.provenance.source_mode == "P"
    assert "palette converted to RGB" in decoded.provenance.notes


def test_png_palette_with_transparency(tmp_path: Path) -> None:
    index = gradient(32, 40)
    decoded = decode_image(write_png(tmp_path / "pt.png", index, mode="P", transparency=int(index[10, 10])))
    assert decoded.pixels[10, 10] == 0.0
    assert "palette converted to RGBA" in decoded.provenance.notes


def test_png_bilevel(tmp_path: Path) -> None:
    bits = gradient(32, 40) > 128
    decoded = decode_image(write_png(tmp_path / "b.png", bits, mode="1"))
    np.testing.assert_array_equal(decoded.pixels, bits.astype(np.float32))
    assert decoded.provenance.bit_depth == 1


# ----------------------------------------------------------------------------- JPEG


def test_jpeg_grey_close_to_source(tmp_path: Path) -> None:
    arr = gradient(64, 48)
    decoded = decode_image(write_jpeg(tmp_path / "g.jpg", arr))
    np.testing.assert_allclose(decoded.pixels, arr / 255.0, atol=4 / 255)
    prov = decoded.provenance
    assert (prov.format, prov.bit_depth, prov.source_mode, prov.colourfulness) == ("jpeg", 8, "L", 0.0)


def marked(height: int = 64, width: int = 48) -> np.ndarray:
    arr = np.zeros((height, width), np.uint8)
    arr[:12, :12] = 255  # bright block in the stored top-left corner
    return arr


def corner_means(pixels: np.ndarray) -> dict[str, float]:
    return {
        "top_left": float(pixels[:8, :8].mean()),
        "top_right": float(pixels[:8, -8:].mean()),
        "bottom_left": float(pixels[-8:, :8].mean()),
        "bottom_right": float(pixels[-8:, -8:].mean()),
    }


@pytest.mark.parametrize(
    ("orientation", "shape", "corner"),
    [(3, (64, 48), "bottom_right"), (6, (48, 64), "top_right"), (8, (48, 64), "bottom_left")],
)
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_exif_orientation_applied(
    tmp_path: Path, fmt: str, orientation: int, shape: tuple[int, int], corner: str
) -> None:
    writer = write_jpeg if fmt == "jpeg" else write_png
    decoded = decode_image(writer(tmp_path / f"o.{fmt}", marked(), exif_orientation=orientation))
    assert decoded.pixels.shape == shape
    assert (decoded.provenance.height, decoded.provenance.width) == shape
    means = corner_means(decoded.pixels)
    assert means.pop(corner) > 0.9 and max(means.values()) < 0.1
    assert f"EXIF orientation {orientation} applied" in decoded.provenance.notes


def test_jpeg_rgb_colourfulness(tmp_path: Path) -> None:
    rgb = np.zeros((64, 48, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 220, 40  # orange-ish photograph
    rgb[..., 1] = gradient(64, 48) // 2
    colour = decode_image(write_jpeg(tmp_path / "c.jpg", rgb)).provenance.colourfulness
    g = gradient(64, 48)
    grey = decode_image(write_jpeg(tmp_path / "g.jpg", np.dstack([g, g, g]))).provenance.colourfulness
    assert colour > 0.6 and grey < 0.02


def test_jpeg_cmyk_decodes_to_sensible_grey(tmp_path: Path) -> None:
    g = gradient(64, 48)
    zero = np.zeros_like(g)
    cmyk = np.dstack([zero, zero, zero, 255 - g])  # black ink only: grey = 1 - K
    decoded = decode_image(write_jpeg(tmp_path / "cmyk.jpg", cmyk, mode="CMYK"))
    np.testing.assert_allclose(decoded.pixels, g / 255.0, atol=6 / 255)
    assert decoded.provenance.source_mode == "CMYK" and decoded.provenance.colourfulness < 0.02
    assert "CMYK converted to RGB" in decoded.provenance.notes


def test_mpo_uses_the_primary_image(tmp_path: Path) -> None:
    arr = gradient(64, 48)
    decoded = decode_image(write_mpo(tmp_path / "phone.jpg", arr, 255 - arr[:16, :16]))
    assert decoded.pixels.shape == (64, 48)
    np.testing.assert_allclose(decoded.pixels, arr / 255.0, atol=4 / 255)
    assert any(n.startswith("MPO with 2 images") for n in decoded.provenance.notes)


# ----------------------------------------------------------------------------- content, bytes


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    jpeg = write_jpeg(tmp_path / "x.jpg", gradient(32, 32))
    renamed = tmp_path / "really_a_jpeg.png"
    jpeg.rename(renamed)
    decoded = decode_image(renamed)
    assert decoded.provenance.format == "jpeg"
    assert "content is JPEG although the name ends in .png" in decoded.provenance.notes


def test_decode_bytes_matches_decode_image(tmp_path: Path) -> None:
    path = write_png(tmp_path / "g.png", gradient(32, 40))
    from_bytes = decode_bytes(path.read_bytes(), "picked.png")
    np.testing.assert_array_equal(from_bytes.pixels, decode_image(path).pixels)
    assert from_bytes.provenance.path == "picked.png"
    with pytest.raises(UnsupportedImageError, match="picked.txt"):
        decode_bytes(b"hello, not an image", "picked.txt")


def test_helpers_on_known_values() -> None:
    rgb = np.array([[[255, 0, 0], [10, 10, 10]]], np.uint8)
    np.testing.assert_allclose(rgb_to_grey(rgb, 255.0), [[0.299, 10 / 255]], atol=1e-6)
    assert colourfulness(rgb, 255.0) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- refusals


def test_missing_file(tmp_path: Path) -> None:
    refused(ImageFileError, tmp_path / "nope.png", "not found")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    refused(ImageFileError, tmp_path / "folder.png", "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    refused(CorruptImageError, path, "empty")


@pytest.mark.parametrize("name", ["notes.png", "notes.jpg", "notes.dcm"])
def test_text_file_renamed(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("patient notes, not an image\n" * 20)
    refused(UnsupportedImageError, path, "not an image", "PNG, JPEG or DICOM")


def test_other_image_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.fromarray(gradient(32, 32)).save(path, format="GIF")
    refused(UnsupportedImageError, path, "GIF")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_file_cut_in_half(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    writer = write_png if fmt == "png" else write_jpeg
    whole = writer(tmp_path / f"whole.{fmt}", noise)
    cut = truncate_copy(whole, tmp_path / f"cut.{fmt}", 0.5)
    refused(CorruptImageError, cut, "truncated or corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_file_cut_inside_header(tmp_path: Path, fmt: str) -> None:
    writer = write_png if fmt == "png" else write_jpeg
    whole = writer(tmp_path / f"whole.{fmt}", gradient(32, 32), exif_orientation=1)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(whole.read_bytes()[:20])
    refused(CorruptImageError, cut, "file ends inside")


def test_zero_size(tmp_path: Path) -> None:
    refused(ImageSizeError, write_png_claiming_size(tmp_path / "z.png", 0, 64), "zero size")
    refused(ImageSizeError, write_jpeg_claiming_size(tmp_path / "z.jpg", 64, 0), "zero size")


def test_tiny_image(tmp_path: Path) -> None:
    refused(ImageSizeError, write_png(tmp_path / "t.png", gradient(4, 4)), "4x4", "at least 8")


def test_extreme_aspect_ratio(tmp_path: Path) -> None:
    refused(ImageSizeError, write_png(tmp_path / "strip.png", gradient(10, 200)), "aspect ratio 20.0:1")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_decompression_bomb_refused_from_header(tmp_path: Path, fmt: str) -> None:
    # The files are tiny: the size is refused from the header, before any pixel is decoded.
    writer = write_png_claiming_size if fmt == "png" else write_jpeg_claiming_size
    path = writer(tmp_path / f"bomb.{fmt}", 9000, 9000)
    refused(ImageTooLargeError, path, "81000000 pixels", "decompression-bomb")


def test_max_pixels_is_a_parameter(tmp_path: Path) -> None:
    path = write_png(tmp_path / "g.png", gradient(64, 48))
    refused(ImageTooLargeError, path, "limit of 1000", max_pixels=1000)


def test_pillow_decompression_bomb_error_is_mapped(tmp_path: Path) -> None:
    path = write_png_claiming_size(tmp_path / "huge.png", 20000, 10000)  # over Pillow's 2x limit
    refused(ImageTooLargeError, path, "decompression bomb", max_pixels=10**9)


def test_animated_png_refused(tmp_path: Path) -> None:
    path = write_animated_png(tmp_path / "anim.png", [gradient(32, 32), 255 - gradient(32, 32)])
    refused(MultiFrameImageError, path, "2 frames")


def test_12bit_jpeg_refused(tmp_path: Path) -> None:
    data = bytearray(write_jpeg(tmp_path / "j.jpg", gradient(32, 32)).read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 4] = 12  # sample precision
    path = tmp_path / "j12.jpg"
    path.write_bytes(bytes(data))
    refused(UnsupportedImageError, path, "12-bit")


@pytest.mark.parametrize("kind", ["jpeg_rgb", "png_rgba"])
def test_a_large_colour_image_decodes_without_whole_image_float_copies(tmp_path: Path, kind: str) -> None:
    # A 12-megapixel phone photo: the decode's peak (numpy's allocations, traced) was 5.8x (JPEG)
    # and 8.2x (RGBA PNG) its float32 grey output; strips and per-channel sums keep it under 4x.
    rng = np.random.default_rng(0)
    coarse = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8))
    rgb = coarse.resize((4000, 3000), Image.Resampling.BILINEAR)
    if kind == "jpeg_rgb":
        path = tmp_path / "photo.jpg"
        rgb.save(path, quality=90)
    else:
        path = tmp_path / "photo.png"
        rgb.putalpha(200)
        rgb.save(path)
    tracemalloc.start()
    try:
        decoded = decode_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded.pixels.shape == (3000, 4000) and decoded.provenance.colourfulness > 0.1
    assert peak < 4 * decoded.pixels.nbytes, (
        f"peak {peak / 1e6:.0f} MB for a {decoded.pixels.nbytes / 1e6:.0f} MB image"
    )


def test_strips_give_the_whole_image_grey_and_colourfulness() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (STRIP_ROWS * 2 + 37, 50, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    for weights in (None, alpha):
        whole = rgb if weights is None else rgb * (weights[..., None] * np.float32(1.0 / 255.0))
        grey, colour = grey_and_colourfulness(rgb, 255.0, weights)
        assert np.array_equal(grey, rgb_to_grey(whole, 255.0))
        assert colour == pytest.approx(colourfulness(whole, 255.0), rel=1e-12)


def test_a_damaged_exif_block_is_a_note_not_a_bare_warning(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    data = write_jpeg(tmp_path / "j.jpg", gradient(64, 64)).read_bytes()
    app1 = b"Exif\x00\x00II*\x00" + struct.pack("<I", 0xFFFFFF00) + bytes(20)  # IFD past the end
    path = tmp_path / "bad_exif.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    decoded = decode_image(path)
    assert decoded.pixels.shape == (64, 64)  # used as stored
    assert any("EXIF block damaged" in n and "used as stored" in n for n in decoded.provenance.notes)
    assert not [w for w in recwarn if "EXIF" in str(w.message)]  # Pillow's bare UserWarning stays inside


@pytest.mark.parametrize("marker", [0xC9, 0xCA])
def test_arithmetic_coded_jpeg_refused(tmp_path: Path, marker: int) -> None:
    # libjpeg decodes an arithmetic-coded file cut short without a warning or the grey fill that
    # gives a cut Huffman file away, so none of them can be vouched for.
    data = bytearray(write_jpeg(tmp_path / "j.jpg", gradient(32, 32)).read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 1] = marker
    path = tmp_path / "arith.jpg"
    path.write_bytes(bytes(data))
    refused(UnsupportedImageError, path, f"arithmetic-coded JPEG (frame type SOF{marker - 0xC0})", "Huffman")


def test_core_import_does_not_load_pydicom(tmp_path: Path) -> None:
    write_png(tmp_path / "g.png", gradient(32, 32))
    code = (
        "import sys; from cxr_core.imaging import decode_image; "
        f"decode_image({str(tmp_path / 'g.png')!r}); print('pydicom' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.stdout.strip() == "False"
