"""libjpeg's warnings refuse a JPEG (cxr_core.jpeg_strict): real damaged files written here.

The cases: a file cut short with its end marker put back (baseline, where the fill check also sees
it, and progressive inside its last scan, where nothing else does), bytes flipped in scan data that
make libjpeg warn, clean files of every kind the decoder accepts, a JFIF 2.01 header (a warning
about metadata only), and the fallback when simplejpeg cannot be imported. The wider measurement
(884 clean files, the fuzz corpus) is in docs/reliability.md.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core import jpeg_strict
from cxr_core.imaging import CorruptImageError, decode_bytes, decode_image
from cxr_core.jpeg_integrity import check_desync, check_fill, check_scans
from cxr_core.jpeg_strict import check_strict, first_warning, strict_decoder
from tests.file_factory import write_dicom
from training.data.phantom import render_phantom

simplejpeg = pytest.importorskip("simplejpeg", reason="the runtime extra's simplejpeg is not installed")


def _jpeg(image: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", **{"quality": 90, **options})
    return buf.getvalue()


def _phantom(size: int = 320, seed: int = 4) -> np.ndarray:
    return np.asarray(render_phantom(seed=seed, size=size).image)


def _decode_quietly(data: bytes, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decode_bytes(data, name)


def _pixel_checks_pass(data: bytes) -> bool:
    """Whether Pillow and the structural and pixel checks of jpeg_integrity all let ``data`` through."""
    try:
        layout = check_scans(data, "x.jpg")
        pixels = np.asarray(Image.open(io.BytesIO(data)))
        check_fill(pixels, "x.jpg")
        check_desync(pixels, "x.jpg", layout)
    except (CorruptImageError, OSError):
        return False
    return True


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("fraction", [0.3, 0.97])
def test_a_file_cut_short_with_its_end_marker_put_back_is_refused(progressive: bool, fraction: float) -> None:
    data = _jpeg(_phantom(), progressive=progressive)
    cut = data[: int(len(data) * fraction)] + b"\xff\xd9"
    with pytest.raises(CorruptImageError, match="premature end of data segment") as err:
        check_strict(cut, "cut.jpg")
    assert "cut.jpg" in str(err.value) and "libjpeg" in str(err.value)
    with pytest.raises(CorruptImageError):
        _decode_quietly(cut, "cut.jpg")


def test_a_progressive_file_cut_in_its_last_scan_is_refused_only_by_the_strict_check() -> None:
    """The gap docs/reliability.md named: every scan header present, no fill, no offset."""
    data = _jpeg(_phantom(), progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    cut = data[: last_scan + (len(data) - last_scan) // 2] + b"\xff\xd9"
    assert _pixel_checks_pass(cut)
    with pytest.raises(CorruptImageError, match="libjpeg reports damaged JPEG data"):
        _decode_quietly(cut, "last-scan.jpg")


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_bytes_flipped_in_scan_data_that_libjpeg_warns_about_are_refused(progressive: bool) -> None:
    """40 single-byte flips across the scan data: each one libjpeg warns about is refused through
    the decode path with libjpeg's message, and decodes (in Pillow) to different pixels."""
    data = _jpeg(_phantom(), progressive=progressive)
    clean = np.asarray(Image.open(io.BytesIO(data))).astype(int)
    start, end = data.index(b"\xff\xda") + 12, len(data) - 2
    warned = only_strict = 0
    for i in range(40):
        damaged = bytearray(data)
        damaged[start + (end - start - 8) * i // 40] ^= 0x10
        damaged_bytes = bytes(damaged)
        if first_warning(simplejpeg, damaged_bytes) is None:
            continue
        warned += 1
        only_strict += _pixel_checks_pass(damaged_bytes)
        with pytest.raises(CorruptImageError):
            _decode_quietly(damaged_bytes, "flip.jpg")
        with pytest.raises(CorruptImageError, match="libjpeg reports damaged JPEG data"):
            check_strict(damaged_bytes, "flip.jpg")
        try:
            pixels = np.asarray(Image.open(io.BytesIO(damaged_bytes))).astype(int)
        except OSError:
            continue  # Pillow fails on it too
        assert pixels.shape != clean.shape or not np.array_equal(pixels, clean)
    assert warned >= 5, f"libjpeg warned on only {warned} of 40 flipped files"
    assert only_strict >= 1, "every warned file was already refused by the pixel checks"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"progressive": True},
        {"restart_marker_rows": 1},
        {"progressive": True, "restart_marker_blocks": 5},
        {"quality": 30},
        {"quality": 100, "optimize": True},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_clean_jpegs_are_not_refused(options: dict[str, object]) -> None:
    grey = _phantom(320, seed=4)
    colour = np.stack([grey, grey[::-1], 255 - grey], axis=-1)
    cmyk = Image.fromarray(colour).convert("CMYK")
    files = {"grey": _jpeg(grey, **options), "colour": _jpeg(colour, **options)}
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", **{"quality": 90, **options})
    files["cmyk"] = buf.getvalue()
    for name, data in files.items():
        assert check_strict(data, f"{name}.jpg") is True  # ran and passed
        decode_bytes(data, f"{name}.jpg")


def test_an_unknown_jfif_revision_alone_is_not_refused_but_damage_behind_it_is() -> None:
    data = _jpeg(_phantom())
    assert data[6:11] == b"JFIF\x00"
    revised = data[:11] + b"\x02" + data[12:]
    with pytest.raises(ValueError, match="unknown JFIF revision"):  # what libjpeg says of it
        simplejpeg.decode_jpeg(revised, strict=True)
    decode_bytes(revised, "jfif2.jpg")
    last_scan = revised.index(b"\xff\xda")
    cut = revised[: last_scan + (len(revised) - last_scan) // 2] + b"\xff\xd9"
    with pytest.raises(CorruptImageError, match="premature end of data segment"):
        check_strict(cut, "jfif2-cut.jpg")


def test_without_simplejpeg_the_other_checks_run_and_the_reason_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _jpeg(_phantom(), progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    last_scan_cut = data[: last_scan + (len(data) - last_scan) // 2] + b"\xff\xd9"
    baseline = _jpeg(_phantom())
    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger=jpeg_strict.__name__):
            patch.setitem(sys.modules, "simplejpeg", None)  # what an install without it sees: ImportError
            strict_decoder.cache_clear()
            assert check_strict(data, "a.jpg") is False
            decode_bytes(data, "a.jpg")
            _decode_quietly(last_scan_cut, "b.jpg")  # the known gap: scored without the strict check
            with pytest.raises(CorruptImageError, match="flat grey fill"):  # the fill check still runs
                _decode_quietly(baseline[: len(baseline) // 2] + b"\xff\xd9", "c.jpg")
        skipped = [r for r in caplog.records if "strict integrity check skipped" in r.getMessage()]
        assert len(skipped) == 1, [r.getMessage() for r in caplog.records]
        assert "simplejpeg" in skipped[0].getMessage() and "pip install" in skipped[0].getMessage()
    finally:
        strict_decoder.cache_clear()
    assert strict_decoder() is not None  # back for the other tests


# ----------------------------------------------------------------------------- DICOM


def test_a_damaged_jpeg_frame_in_a_dicom_is_refused(tmp_path: Path) -> None:
    """pydicom decodes a JPEG Baseline frame through Pillow, as silently as a JPEG file: a frame cut
    short with its end marker put back decodes, the rest filled with grey."""
    pytest.importorskip("pydicom", reason="the dicom extra is not installed")
    image = _phantom(256)
    frame = _jpeg(image)
    cut = frame[: int(len(frame) * 0.6)] + b"\xff\xd9"
    paths = {}
    for name, data in (("clean", frame), ("cut", cut)):
        paths[name] = write_dicom(
            tmp_path / f"{name}.dcm",
            image,
            bits_stored=8,
            transfer_syntax="jpeg_baseline",
            encapsulated_frames=[data],
        )
    decode_image(paths["clean"])
    with pytest.raises(
        CorruptImageError, match="libjpeg reports damaged JPEG pixel data in this DICOM"
    ) as err:
        decode_image(paths["cut"])
    assert "cut.dcm" in str(err.value) and "premature end of data segment" in str(err.value)
