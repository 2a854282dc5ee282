"""Integrity checks for JPEG files that Pillow decodes without complaint.

libjpeg reports damaged scan data only as *warnings* ("premature end of data segment", "corrupt
JPEG data"), which Pillow discards: a JPEG cut short with its end marker (``FF D9``) put back
decodes "successfully", the missing part filled with flat grey, and a progressive JPEG that lost
its later scans decodes blurred. Two checks catch these without a second decoder:

* :func:`check_scans` walks the marker segments (cheap, no entropy decoding) and, for a progressive
  JPEG, requires that the scans refine every coefficient of every component down to the last bit
  (successive approximation ``Al = 0``); it also requires a scan (SOS) at all.
* :func:`check_fill` looks at the decoded pixels: when libjpeg runs out of scan data it leaves the
  remaining blocks at zero coefficients, which decode to exactly 128 in every channel. One full row
  of 8x8 blocks or more of exact 128 at the end of the image (in block order), below image content
  that is not all 128, is that fill. A genuine radiograph does not end in an exactly uniform
  mid-grey band.

Each failure is a :class:`~cxr_core.imaging_common.CorruptImageError` naming the file.
Not detectable this way: a flipped bit inside scan data that still parses (libjpeg decodes
garbage blocks without running out of data); JPEG has no checksum.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cxr_core.imaging_common import CorruptImageError

_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_FILL = 128
_BLOCK = 8


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every marker segment, skipping entropy-coded data; stops at EOI."""
    out: list[tuple[int, bytes]] = []
    at, size = 2, len(data)
    while at + 1 < size:
        if data[at] != 0xFF:
            at += 1  # inside entropy-coded data: look for the next marker
            continue
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2  # stuffed byte, restart marker, TEM: part of the scan data
            continue
        if marker == 0xD9:
            out.append((marker, b""))
            break
        if at + 4 > size:
            break
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        out.append((marker, data[at + 4 : at + 2 + length]))
        at += 2 + length
        if marker == 0xDA:  # entropy-coded data follows: scan forward for the next marker
            nxt = data.find(b"\xff", at)
            while nxt != -1 and nxt + 1 < size and (data[nxt + 1] == 0x00 or 0xD0 <= data[nxt + 1] <= 0xD7):
                nxt = data.find(b"\xff", nxt + 2)
            at = size if nxt == -1 else nxt
    return out


def check_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG without scan data, or a progressive one whose scans do not complete the image."""
    segments = _segments(data)
    sof = next(((m, p) for m, p in segments if m in _SOF), None)
    scans = [p for m, p in segments if m == 0xDA]
    if sof is None or not scans:
        raise CorruptImageError(name, "JPEG has no complete frame and scan (SOF, SOS); expected a valid JPEG")
    marker, payload = sof
    if marker not in _PROGRESSIVE_SOF or len(payload) < 6:
        return
    components = [payload[6 + 3 * i] for i in range(payload[5]) if 6 + 3 * i < len(payload)]
    done = {c: np.zeros(64, dtype=bool) for c in components}
    for scan in scans:
        count = scan[0] if scan else 0
        if len(scan) < 1 + 2 * count + 3:
            raise CorruptImageError(name, "JPEG scan header (SOS) is truncated; expected a valid JPEG")
        ids = [scan[1 + 2 * i] for i in range(count)]
        ss, se, al = scan[1 + 2 * count], scan[2 + 2 * count], scan[3 + 2 * count] & 0x0F
        if al == 0 and ss <= se < 64:
            for cid in ids:
                if cid in done:
                    done[cid][ss : se + 1] = True
    missing = {c: int(64 - int(d.sum())) for c, d in done.items() if not d.all()}
    if missing:
        detail = ", ".join(f"component {c}: {n} of 64 coefficients" for c, n in missing.items())
        raise CorruptImageError(
            name,
            f"progressive JPEG ends before its scans complete the image ({detail} never refined); "
            "expected a complete file (it was probably cut short)",
        )


def check_fill(pixels: NDArray, name: str) -> None:
    """Refuse a decoded JPEG whose last full row of 8x8 blocks or more is libjpeg's flat 128 fill."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        return
    height, width = arr.shape[:2]
    rows, cols = height // _BLOCK, width // _BLOCK
    if rows < 2 or cols < 1:
        return
    flat = arr == _FILL if arr.ndim == 2 else (arr == _FILL).all(axis=2)
    blocks = flat[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK).all(axis=(1, 3))
    order = blocks.ravel()
    not_fill = np.flatnonzero(~order)
    if not_fill.size == 0:
        return  # a uniform 128 image: nothing says it was cut short (the gate judges the content)
    trailing = order.size - 1 - int(not_fill[-1])
    if trailing >= cols:
        fraction = trailing / order.size
        raise CorruptImageError(
            name,
            f"JPEG scan data ends early: the last {trailing} of {order.size} 8x8 blocks "
            f"({fraction:.0%} of the image) are the decoder's flat grey fill (value 128); "
            "expected a complete image file",
        )
