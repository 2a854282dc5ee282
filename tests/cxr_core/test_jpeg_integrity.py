"""JPEG damage that Pillow decodes without complaint: desynchronised scan data and restart markers.

Each detection trips on its own crafted file and not on clean files (real JPEGs written here):
phantoms and photographs at qualities 30-100, baseline and progressive, with and without restart
intervals. The wider measurement (684 clean files, the fuzz corpus) is in docs/reliability.md.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.imaging import CorruptImageError, decode_bytes, decode_image
from cxr_core.jpeg_integrity import desync_score
from tests.file_factory import write_jpeg
from training.data.phantom import render_phantom


def _phantom(size: int = 256, seed: int = 2) -> np.ndarray:
    return np.asarray(render_phantom(seed=seed, size=size).image)


def _offset_after(image: np.ndarray, row: int, col: int, delta: float, mcu: int = 8) -> np.ndarray:
    """``image`` with every ``mcu``-pixel block after block (row, col) in block order offset by
    ``delta``: what a lost bit in the DC chain does to the rest of a scan."""
    out = image.astype(np.float32).copy()
    y, x = row * mcu, col * mcu
    out[y : y + mcu, x:] += delta
    out[y + mcu :] += delta
    return np.clip(out, 0, 255).astype(np.uint8)


def _jpeg_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


@pytest.mark.parametrize("delta", [-40.0, 25.0])
def test_a_block_order_offset_is_refused(tmp_path: Path, delta: float) -> None:
    path = write_jpeg(tmp_path / "desync.jpg", _offset_after(_phantom(), 12, 13, delta), quality=90)
    with pytest.raises(CorruptImageError, match="offset by about") as err:
        decode_image(path)
    assert "block row" in str(err.value) and "desync.jpg" in str(err.value)


def test_a_colour_jpeg_offset_in_mcu_order_is_refused(tmp_path: Path) -> None:
    grey = _phantom()
    rgb = np.stack([grey, grey, (grey * 0.8).astype(np.uint8)], axis=-1)
    damaged = _offset_after(rgb, 6, 5, -45.0, mcu=16)  # 4:2:0: 16x16 MCUs
    path = write_jpeg(tmp_path / "colour.jpg", damaged, quality=85)
    with pytest.raises(CorruptImageError, match="offset by about"):
        decode_image(path)


def test_a_small_offset_or_a_straight_block_aligned_edge_is_not_refused(tmp_path: Path) -> None:
    image = _phantom()
    # below the material threshold: a 4-level offset
    write_jpeg(tmp_path / "small.jpg", _offset_after(image, 12, 13, 4.0), quality=90)
    # a collimator-like edge exactly on a block boundary, across the whole width
    edged = image.copy()
    edged[64:] = np.clip(edged[64:].astype(int) - 60, 0, 255).astype(np.uint8)
    write_jpeg(tmp_path / "edge.jpg", edged, quality=90)
    # a burned-in label: a bright rectangle aligned to the 8x8 grid
    boxed = image.copy()
    boxed[16:48, 96:200] = 250
    write_jpeg(tmp_path / "label.jpg", boxed, quality=90)
    for name in ("small.jpg", "edge.jpg", "label.jpg"):
        decoded = decode_image(tmp_path / name)
        assert decoded.pixels.shape == image.shape


@pytest.mark.parametrize("quality", [90, 95])
def test_a_tilted_edge_into_a_black_band_on_a_block_boundary_is_not_refused(
    tmp_path: Path, quality: int
) -> None:
    """The phantom whose body ends in a black band along a slightly tilted edge crossing pixel row
    368 (a block boundary) near block column 22: its steps have the two-part shape of a lost bit,
    but what they would offset is the black band, so nothing says an offset happened."""
    image = _phantom(384, seed=2)
    path = write_jpeg(tmp_path / "edge.jpg", image, quality=quality)
    assert decode_image(path).pixels.shape == image.shape
    assert desync_score(_jpeg_pixels(path))[0] <= 0


def test_an_offset_over_content_near_the_bottom_is_still_refused(tmp_path: Path) -> None:
    """A lost bit two block rows above the black band offsets visible lungs: refused."""
    image = _phantom(384, seed=2)
    path = write_jpeg(tmp_path / "late.jpg", _offset_after(image, 40, 20, -40.0), quality=90)
    with pytest.raises(CorruptImageError, match="offset by about"):
        decode_image(path)


CLEAN_OPTIONS = [
    {"progressive": False},
    {"progressive": True},
    {"progressive": False, "restart_marker_rows": 1},
    {"progressive": True, "restart_marker_blocks": 5},
]


@pytest.mark.parametrize("quality", [30, 60, 90, 100])
@pytest.mark.parametrize("options", CLEAN_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_clean_jpegs_are_not_refused(tmp_path: Path, quality: int, options: dict[str, object]) -> None:
    from sklearn.datasets import load_sample_image

    sources = {
        "phantom-pa": _phantom(320, seed=4),
        "phantom-lateral": np.asarray(render_phantom(seed=3, size=264, view="LATERAL").image),
        "photo": load_sample_image("china.jpg")[::2, ::2],
        "photo-grey": np.asarray(Image.fromarray(load_sample_image("flower.jpg")).convert("L"))[::2, ::2],
    }
    for name, image in sources.items():
        path = write_jpeg(tmp_path / f"{name}.jpg", image, quality=quality, **options)
        decode_image(path)  # raises if refused
        assert desync_score(_jpeg_pixels(path))[0] <= 0


def test_a_flipped_bit_in_scan_data_is_refused_when_it_offsets_the_image() -> None:
    """Real damage: single bits flipped across a baseline JPEG's scan data. Every refusal is of a
    file that decodes differently, and at least one flip is caught by the staircase check."""
    buf = io.BytesIO()
    Image.fromarray(_phantom(512)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    clean = np.asarray(Image.open(io.BytesIO(data))).astype(int)
    sos = data.index(b"\xff\xda")
    start, end = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big"), len(data) - 2
    caught = 0
    for i in range(40):
        damaged = bytearray(data)
        damaged[start + 5 + (end - start - 10) * i // 40] ^= 0x10
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decode_bytes(bytes(damaged), "flip.jpg")
        except CorruptImageError as exc:
            if "offset by about" in str(exc):
                caught += 1
                pixels = np.asarray(Image.open(io.BytesIO(bytes(damaged)))).astype(int)
                assert pixels.shape != clean.shape or np.abs(pixels - clean).max() > 8
    assert caught >= 2


# ----------------------------------------------------------------------------- restart markers


def _with_restarts(tmp_path: Path) -> bytes:
    path = write_jpeg(tmp_path / "rst.jpg", _phantom(), quality=85, restart_marker_rows=1)
    data = path.read_bytes()
    assert data.count(b"\xff\xd3") >= 1  # Pillow wrote restart markers
    return data


def _nth(data: bytes, marker: bytes, n: int) -> int:
    at = -1
    for _ in range(n):
        at = data.index(marker, at + 1)
    return at


def test_restart_markers_in_order_are_accepted(tmp_path: Path) -> None:
    decode_bytes(_with_restarts(tmp_path), "rst.jpg")


def test_a_lost_restart_marker_is_refused(tmp_path: Path) -> None:
    data = _with_restarts(tmp_path)
    at = _nth(data, b"\xff\xd2", 1)
    with warnings.catch_warnings(), pytest.raises(CorruptImageError, match="restart markers"):
        warnings.simplefilter("ignore")
        decode_bytes(data[:at] + data[at + 2 :], "lost.jpg")


def test_a_damaged_restart_marker_is_refused(tmp_path: Path) -> None:
    data = _with_restarts(tmp_path)
    at = _nth(data, b"\xff\xd2", 1)
    with warnings.catch_warnings(), pytest.raises(CorruptImageError, match="marker 3 is RST5, expected RST2"):
        warnings.simplefilter("ignore")
        decode_bytes(data[: at + 1] + b"\xd5" + data[at + 2 :], "swapped.jpg")


def test_restart_markers_without_an_interval_are_refused(tmp_path: Path) -> None:
    data = _with_restarts(tmp_path)
    dri = data.index(b"\xff\xdd")
    without = data[:dri] + data[dri + 6 :]  # DRI segment: FF DD 00 04 <interval>
    with warnings.catch_warnings(), pytest.raises(CorruptImageError, match="no restart interval"):
        warnings.simplefilter("ignore")
        decode_bytes(without, "nodri.jpg")
