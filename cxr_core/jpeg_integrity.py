"""Integrity checks for JPEG files that Pillow decodes without complaint.

libjpeg reports damaged scan data only as *warnings* ("premature end of data segment", "corrupt
JPEG data"), which Pillow discards: a JPEG cut short with its end marker (``FF D9``) put back
decodes "successfully", the missing part filled with flat grey, a progressive JPEG that lost its
later scans decodes blurred, and a flipped bit in the scan data decodes to a shifted, banded image.
JPEG carries no checksum. These checks catch what they can without a second decoder:

* :func:`check_scans` walks the marker segments (cheap, no entropy decoding). It requires a frame
  (SOF) and a scan (SOS); for a progressive JPEG, scans that refine every coefficient of every
  component down to the last bit (successive approximation ``Al = 0``); and where the file defines
  a restart interval (DRI), the restart markers ``RST0..RST7`` of each scan in their cyclic order,
  as many as the scan's MCU count calls for (a lost, duplicated or damaged restart marker means
  scan data was lost or misplaced).
* :func:`check_fill` looks at the decoded pixels: when libjpeg runs out of scan data it leaves the
  remaining blocks at zero coefficients, which decode to exactly 128 in every channel. One full row
  of 8x8 blocks or more of exact 128 at the end of the image (in block order), below image content
  that is not all 128, is that fill. A genuine radiograph does not end in an exactly uniform
  mid-grey band.
* :func:`check_desync` looks for the mark of a damaged entropy-coded segment: the DC coefficient of
  each block is coded as the difference from the previous block's, so once the decoder loses step
  (a flipped or lost bit) every later block of the scan is offset by the same error. In the decoded
  image that is a *staircase* at 8x8 block boundaries: a brightness step of one constant sign along
  the block boundary below the damaged block row from the damaged block to the right edge, and along
  the next boundary from the left edge up to the damaged column, exactly one image width in block
  order. Genuine edges do not follow block boundaries in that shape. The test compares the signed
  step across each block boundary (with the smooth gradient and the regular JPEG blocking removed:
  the step minus the median step of the boundaries 8 and 16 pixels above and below) along every
  such one-width window, and refuses a window whose mean step is at least
  :data:`DESYNC_MIN_STEP` grey levels, larger than the image's typical boundary step, coherent in
  sign, and larger than the steps beside the window, provided the blocks it would offset show
  content (:data:`DESYNC_MIN_OFFSET_SEEN`): a step into a black or white band filling the rest of
  the image is a border's edge, not an offset.

Each failure is a :class:`~cxr_core.imaging_common.CorruptImageError` naming the file.
Not detectable this way (measured in docs/reliability.md): damage that leaves the DC chain intact
(most bit flips inside a progressive JPEG's AC scans change fine texture only), a step smaller than
:data:`DESYNC_MIN_STEP`, and a progressive JPEG cut inside its last refinement scan. Most of these
make libjpeg warn: :mod:`cxr_core.jpeg_strict`, run after these checks where simplejpeg is
installed, refuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cxr_core.imaging_common import CorruptImageError

_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _DRI, _EOI = 0xDA, 0xDD, 0xD9
_FILL = 128
_BLOCK = 8

#: Smallest mean brightness step (grey levels of 255) along a block-order staircase that is refused.
DESYNC_MIN_STEP = 8.0
#: Share of the staircase's step that must have the same sign (1 = all of it).
DESYNC_MIN_COHERENCE = 0.5
#: Share of the block columns of each part of the staircase that must step the same way.
DESYNC_MIN_SUPPORT = 0.5
#: Share of each part of a staircase whose block columns must not be clipped flat at 0 or 255.
DESYNC_MIN_SEEN = 0.35
#: Smallest width and height (pixels) the staircase test runs on: smaller images have too few
#: blocks per row to tell a staircase from an edge (no radiograph is this small).
DESYNC_MIN_SIZE = 192
#: Smallest ratio of the two parts' mean steps (a lost bit offsets both by the same amount).
DESYNC_PART_RATIO = 0.3
#: Shortest part of a staircase, as a share of the image width.
DESYNC_MIN_PART = 0.05
#: Share of the 8x8 blocks after a staircase (the part a lost bit would offset) that must show
#: content, i.e. not be clipped flat at 0 or 255: a step into a black or white band that fills the
#: rest of the image (a collimator or film border below a slightly tilted edge) offsets nothing.
DESYNC_MIN_OFFSET_SEEN = DESYNC_MIN_SEEN
#: Most staircase candidates above the refusal line checked for content after them (strongest first;
#: any beyond are refused unchecked).
DESYNC_MAX_CANDIDATES = 256


@dataclass
class _Segment:
    marker: int
    payload: bytes
    restarts: list[int] = field(default_factory=list)  # RSTn numbers (0-7) met in a scan's data


@dataclass(frozen=True)
class JpegLayout:
    """What the decoded-pixel checks need from the headers: the MCU height in 8x8 blocks."""

    mcu_rows: int = 1


def _segments(data: bytes) -> list[_Segment]:
    """Every marker segment, with the restart markers inside each scan's data; stops at EOI."""
    out: list[_Segment] = []
    at, size = 2, len(data)
    while at + 1 < size:
        if data[at] != 0xFF:
            at += 1  # stray byte between segments: look for the next marker
            continue
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2  # stuffed byte, restart marker or TEM outside a scan
            continue
        if marker == _EOI:
            out.append(_Segment(marker, b""))
            break
        if at + 4 > size:
            break
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        segment = _Segment(marker, data[at + 4 : at + 2 + length])
        out.append(segment)
        at += 2 + length
        if marker == _SOS:  # entropy-coded data follows: scan forward to the next real marker
            nxt = data.find(b"\xff", at)
            while nxt != -1 and nxt + 1 < size and (data[nxt + 1] == 0x00 or 0xD0 <= data[nxt + 1] <= 0xD7):
                if data[nxt + 1] != 0x00:
                    segment.restarts.append(data[nxt + 1] - 0xD0)
                nxt = data.find(b"\xff", nxt + 2)
            at = size if nxt == -1 else nxt
    return out


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    sampling: dict[int, tuple[int, int]]  # component id -> (h, v)

    @property
    def hmax(self) -> int:
        return max((h for h, _ in self.sampling.values()), default=1)

    @property
    def vmax(self) -> int:
        return max((v for _, v in self.sampling.values()), default=1)

    def mcus(self, components: list[int]) -> int:
        """MCUs in a scan of ``components`` (ITU T.81 A.2: one component scans are not interleaved)."""
        if len(components) == 1 and components[0] in self.sampling:
            h, v = self.sampling[components[0]]
            cols = math.ceil(math.ceil(self.width * h / self.hmax) / _BLOCK)
            rows = math.ceil(math.ceil(self.height * v / self.vmax) / _BLOCK)
            return cols * rows
        return math.ceil(self.width / (_BLOCK * self.hmax)) * math.ceil(self.height / (_BLOCK * self.vmax))


def _frame(payload: bytes) -> _Frame | None:
    if len(payload) < 6:
        return None
    height, width, count = (
        int.from_bytes(payload[1:3], "big"),
        int.from_bytes(payload[3:5], "big"),
        payload[5],
    )
    sampling = {}
    for i in range(count):
        at = 6 + 3 * i
        if at + 1 < len(payload):
            sampling[payload[at]] = (max(1, payload[at + 1] >> 4), max(1, payload[at + 1] & 0x0F))
    return _Frame(width, height, sampling)


def check_scans(data: bytes, name: str) -> JpegLayout:
    """Refuse a JPEG without scan data, a progressive one whose scans do not complete the image, or
    one whose restart markers are out of order or miscounted; return what the pixel checks need."""
    segments = _segments(data)
    sof = next((s for s in segments if s.marker in _SOF), None)
    scans = [s for s in segments if s.marker == _SOS]
    if sof is None or not scans:
        raise CorruptImageError(name, "JPEG has no complete frame and scan (SOF, SOS); expected a valid JPEG")
    frame = _frame(sof.payload)
    if frame is not None:
        _check_restarts(segments, frame, name)
    if sof.marker in _PROGRESSIVE_SOF and len(sof.payload) >= 6:
        _check_progression(sof.payload, scans, name)
    interleaved = frame is not None and len(frame.sampling) > 1
    return JpegLayout(mcu_rows=frame.vmax if interleaved and frame is not None else 1)


def _scan_components(scan: bytes, name: str) -> list[int]:
    count = scan[0] if scan else 0
    if len(scan) < 1 + 2 * count + 3:
        raise CorruptImageError(name, "JPEG scan header (SOS) is truncated; expected a valid JPEG")
    return [scan[1 + 2 * i] for i in range(count)]


def _check_restarts(segments: list[_Segment], frame: _Frame, name: str) -> None:
    interval = 0
    scan_no = 0
    for seg in segments:
        if seg.marker == _DRI and len(seg.payload) >= 2:
            interval = int.from_bytes(seg.payload[:2], "big")
        if seg.marker != _SOS:
            continue
        scan_no += 1
        components = _scan_components(seg.payload, name)
        if interval == 0:
            if seg.restarts:
                raise CorruptImageError(
                    name,
                    f"JPEG scan {scan_no} holds {len(seg.restarts)} restart marker(s) but no restart "
                    "interval is defined; expected none (the scan data is damaged)",
                )
            continue
        expected = max(0, math.ceil(frame.mcus(components) / interval) - 1)
        order = [i % 8 for i in range(len(seg.restarts))]
        if len(seg.restarts) != expected or seg.restarts != order:
            bad = next((i for i, (a, b) in enumerate(zip(seg.restarts, order, strict=False)) if a != b), None)
            where = ""
            if bad is not None:
                where = f"; marker {bad + 1} is RST{seg.restarts[bad]}, expected RST{order[bad]}"
            raise CorruptImageError(
                name,
                f"JPEG scan {scan_no} has {len(seg.restarts)} restart markers{where}; expected {expected} "
                f"in order RST0..RST7 (restart interval {interval} MCUs): scan data was lost or damaged",
            )


def _check_progression(sof_payload: bytes, scans: list[_Segment], name: str) -> None:
    components = [sof_payload[6 + 3 * i] for i in range(sof_payload[5]) if 6 + 3 * i < len(sof_payload)]
    done = {c: np.zeros(64, dtype=bool) for c in components}
    for seg in scans:
        scan = seg.payload
        ids = _scan_components(scan, name)
        count = len(ids)
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
    flat = arr == _FILL if arr.ndim == 2 else _all_channels_equal(arr, _FILL)
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


def _all_channels_equal(arr: NDArray, value: int) -> NDArray[np.bool_]:
    """``(arr == value).all(axis=2)`` one channel at a time: no (H, W, C) temporary."""
    flat = arr[..., 0] == value
    for channel in range(1, arr.shape[2]):
        flat &= arr[..., channel] == value
    return flat


def _luma(pixels: NDArray) -> NDArray[np.float32] | None:
    """Grey levels (float32, BT.601 weights) of a decoded 8-bit JPEG, channel by channel.

    The same values as converting the whole (H, W, 3) array to float32 first, without that copy:
    a 48-megapixel phone photo's check took 1.1 GB that way.
    """
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        return None
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] >= 3:
        grey = arr[..., 0] * np.float32(0.299)
        grey += arr[..., 1] * np.float32(0.587)
        grey += arr[..., 2] * np.float32(0.114)
        return grey
    return None


_ALL_SET = np.frombuffer(b"\x01" * _BLOCK, dtype=np.uint64)[0]  # 8 True bytes read as one word


def _flat(side: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For (n, W) booleans, whether all 8 of each block's are True: one 64-bit compare per block."""
    n, width = side.shape
    return np.ascontiguousarray(side).view(np.uint64).reshape(n, width // _BLOCK) == _ALL_SET


def _boundary_steps(
    grey: NDArray[np.float32],
) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int8]]:
    """Signed steps down across the horizontal 8x8 block boundaries, where they can be seen, and
    where they run into clipping.

    ``steps[i, j]`` is the brightness step across the boundary below block row ``i`` in block column
    ``j``, averaged along the block's side, minus the mean of the steps just above and below (the
    local gradient) and less the median step of the same column's boundaries 8 and 16 pixels above
    and below (JPEG's regular blocking). ``seen[i, j]`` is False where the pixel rows on both sides
    are clipped flat at 0 or 255 (air, a burned-out edge): an offset cannot show there. ``into[i, j]``
    is +1 where the row below is clipped flat at 255 and the row above is not, -1 for 0: a step into
    clipping, which an offset large enough to saturate makes (its measured size is cut short).
    """
    rows, cols = grey.shape[0] // _BLOCK, grey.shape[1] // _BLOCK
    blocks = grey[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols * _BLOCK)
    above2, above, below, below2 = blocks[:-1, -2], blocks[:-1, -1], blocks[1:, 0], blocks[1:, 1]
    step = (below - above) - 0.5 * ((above - above2) + (below2 - below))
    per_block = step.reshape(rows - 1, cols, _BLOCK).mean(axis=2)
    n = per_block.shape[0]
    padded = np.pad(per_block, ((2, 2), (0, 0)), mode="reflect" if n >= 3 else "edge")
    neighbours = np.sort(
        np.stack([padded[0:n], padded[1 : n + 1], padded[3 : n + 3], padded[4 : n + 4]]), axis=0
    )
    steps = per_block - 0.5 * (neighbours[1] + neighbours[2])  # the median of four
    low_above, high_above = _flat(above <= 0.5), _flat(above >= 254.5)
    low_below, high_below = _flat(below <= 0.5), _flat(below >= 254.5)
    blind = (low_above | high_above) & (low_below | high_below)
    into = np.where(high_below & ~high_above, 1, 0) - np.where(low_below & ~low_above, 1, 0)
    return np.where(blind, 0.0, steps).astype(np.float32), ~blind, into.astype(np.int8)


def _parts(table: NDArray, gap: int, split: NDArray) -> tuple[NDArray, NDArray]:
    """Sums over each staircase (r, c) from a per-row running-sum ``table``: (boundary r from column c
    to the right edge, boundary r + gap from the left edge up to column c)."""
    return table[:-gap, -1:] - table[:-gap, split], table[gap:, split]


def desync_score(pixels: NDArray, mcu_rows: int = 1) -> tuple[float, int, int, float]:
    """(excess step, boundary row, block column, mean step) of the strongest block-order staircase.

    ``excess`` is the staircase's mean step beyond the mean step beside it, in grey levels, minus
    the larger of :data:`DESYNC_MIN_STEP` and the image's typical boundary step: above zero means
    refuse. Block sides clipped flat at 0 or 255 on both sides of the boundary do not count, the others
    must make up at least :data:`DESYNC_MIN_SEEN` of each part of the staircase, and a step into
    clipping supports a staircase going that way. The step must be carried by the
    whole staircase, not by a short strong edge inside it: on each of its two parts (the end of one
    block row, the start of the next), at least :data:`DESYNC_MIN_SUPPORT` of the block columns
    step by half the minimum or more in the same direction, and each part is at least
    :data:`DESYNC_MIN_PART` of the width. A straight step along a whole block boundary (damage at a
    row's first blocks, or a genuine horizontal edge such as a collimator shutter that happens to
    fall on a multiple of 8 pixels) is therefore never refused. Nor is a staircase whose offset
    would fall on blocks that are nearly all clipped flat (:data:`DESYNC_MIN_OFFSET_SEEN`).
    """
    grey = _luma(pixels)
    none = (-math.inf, -1, -1, 0.0)
    if grey is None or grey.shape[0] < DESYNC_MIN_SIZE or grey.shape[1] < DESYNC_MIN_SIZE:
        return none
    steps, seen, into = _boundary_steps(grey)
    n, cols = steps.shape
    if not seen.any():
        return none
    typical = 1.4826 * float(np.median(np.abs(steps[seen]))) + 0.5
    floor = max(DESYNC_MIN_STEP, typical)

    def run(values: NDArray) -> NDArray[np.float64]:
        return np.concatenate([np.zeros((n, 1)), np.cumsum(values, axis=1, dtype=np.float64)], axis=1)

    signed, absolute, counted = run(steps), run(np.abs(steps)), run(seen)
    ups, downs = run((steps >= 0.5 * floor) | (into > 0)), run((steps <= -0.5 * floor) | (into < 0))
    part = max(2, math.ceil(DESYNC_MIN_PART * cols))
    split = np.arange(part, cols - part + 1)  # c: the first offset block column of row r + gap
    if split.size == 0:
        return none
    best = none
    clipped: NDArray[np.bool_] | None = None  # computed only when a staircase would be refused
    for gap in sorted({1, max(1, mcu_rows)}):
        if n <= gap:
            continue
        top_s, bot_s = _parts(signed, gap, split)
        top_a, bot_a = _parts(absolute, gap, split)
        top_k, bot_k = _parts(counted, gap, split)
        top_up, bot_up = _parts(ups, gap, split)
        top_down, bot_down = _parts(downs, gap, split)
        w_signed, w_abs, w_count = top_s + bot_s, top_a + bot_a, top_k + bot_k
        beside = (absolute[:-gap, -1:] + absolute[gap:, -1:]) - w_abs
        beside_count = (counted[:-gap, -1:] + counted[gap:, -1:]) - w_count
        rising = w_signed > 0
        top_n, bot_n = np.where(rising, top_up, top_down), np.where(rising, bot_up, bot_down)
        supported = (
            (top_k >= np.maximum(part, DESYNC_MIN_SEEN * (cols - split)))
            & (bot_k >= np.maximum(part, DESYNC_MIN_SEEN * split))
            & (top_n >= DESYNC_MIN_SUPPORT * top_k)
            & (bot_n >= DESYNC_MIN_SUPPORT * bot_k)
        )
        # one offset, one size: the two parts' mean steps agree within a factor of DESYNC_PART_RATIO
        top_mean, bot_mean = top_s / np.maximum(top_k, 1), bot_s / np.maximum(bot_k, 1)
        smaller = np.minimum(np.abs(top_mean), np.abs(bot_mean))
        larger = np.maximum(np.abs(top_mean), np.abs(bot_mean))
        alike = (np.sign(top_mean) == np.sign(bot_mean)) & (smaller >= DESYNC_PART_RATIO * larger)
        coherent = alike & (np.abs(w_signed) >= DESYNC_MIN_COHERENCE * w_abs)
        mean = w_signed / np.maximum(w_count, 1)
        excess = np.abs(mean) - beside / np.maximum(beside_count, 1) - floor
        if gap > 1:  # a luma offset in 16-pixel MCU order leaves the boundary inside the MCU row flat
            inside_abs = sum(absolute[k : n - gap + k, -1:] for k in range(1, gap))
            inside = inside_abs / np.maximum(sum(counted[k : n - gap + k, -1:] for k in range(1, gap)), 1)
            excess = np.where(inside <= 0.5 * np.abs(mean), excess, -math.inf)
        excess = np.where(supported & coherent, excess, -math.inf)
        if (excess > 0).any():
            clipped = _clipped_blocks(grey) if clipped is None else clipped
            excess = _drop_unseen_offsets(excess, clipped, gap, split)
        r, c = np.unravel_index(int(np.argmax(excess)), excess.shape)
        if excess[r, c] > best[0]:
            best = (float(excess[r, c]), int(r), int(split[c]), float(mean[r, c]))
    return best


def _drop_unseen_offsets(excess: NDArray, clipped: NDArray[np.bool_], gap: int, split: NDArray) -> NDArray:
    """``excess`` with the refused staircases that offset almost nothing visible set to -inf.

    ``clipped[i, j]`` says block (i, j) is clipped flat at 0 or 255. Candidates above the refusal
    line (``excess > 0``) are checked strongest first until one offsets enough visible blocks
    (:data:`DESYNC_MIN_OFFSET_SEEN`): that one is refused, the weaker ones need no check.
    """
    out = np.array(excess, dtype=np.float64, order="C")  # a C-ordered copy, so reshape is a view
    flat = out.reshape(-1)
    refused = np.flatnonzero(flat > 0)
    visible_rows = np.cumsum((~clipped)[::-1].sum(axis=1))[::-1]  # visible blocks from row i down
    rows = clipped.shape[0]
    for index in refused[np.argsort(flat[refused])[::-1]][:DESYNC_MAX_CANDIDATES]:
        r, c = np.unravel_index(int(index), out.shape)
        column = int(split[c])
        # offset by a lost bit in block (r + 1, column): the rest of that block row (for an MCU
        # row, the rows down to r + gap) and every row after it
        partial = (~clipped[r + 1 : r + gap + 1, column:]).sum()
        after = visible_rows[r + gap + 1] if r + gap + 1 < rows else 0
        total = clipped[r + 1 : r + gap + 1, column:].size + (rows - r - gap - 1) * clipped.shape[1]
        if partial + after >= DESYNC_MIN_OFFSET_SEEN * total:
            break
        flat[index] = -math.inf
    return out


def _clipped_blocks(grey: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Whether each whole 8x8 block is clipped flat at 0 or at 255."""
    rows, cols = grey.shape[0] // _BLOCK, grey.shape[1] // _BLOCK
    blocks = grey[: rows * _BLOCK, : cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK)
    return (blocks.max(axis=(1, 3)) <= 0.5) | (blocks.min(axis=(1, 3)) >= 254.5)


def check_desync(pixels: NDArray, name: str, layout: JpegLayout = JpegLayout()) -> None:
    """Refuse a decoded JPEG showing the block-order staircase of a desynchronised DC predictor."""
    excess, row, col, mean = desync_score(pixels, layout.mcu_rows)
    if excess > 0:
        raise CorruptImageError(
            name,
            f"JPEG scan data is damaged: from 8x8 block row {row + 1}, column {col} on, the rest of the "
            f"image is offset by about {mean:+.0f} grey levels in block order (the decoder lost step "
            "in the entropy-coded data); expected a consistent image",
        )
