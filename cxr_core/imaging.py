"""Decode PNG, JPEG and DICOM files into a float grey image plus provenance.

:func:`decode_image` (a path) and :func:`decode_bytes` (bytes from a platform file picker) return a
:class:`DecodedImage`: float32 ``(H, W)`` in [0, 1], 1 = bright as displayed (bone is bright), and an
:class:`ImageProvenance` saying what the file was and what was done to it (``notes``).

Decisions, and why:

* **Format by content.** The PNG signature, the JPEG SOI marker (``FF D8 FF``) and the DICOM ``DICM``
  marker at offset 128 decide the decoder; the extension never does. A DICOM file *without* the
  128-byte preamble is accepted only when its name ends in ``.dcm``/``.dicom`` **and** its first
  bytes look like a group 0002 or 0008 tag **and** pydicom, reading it with ``force=True``, finds
  Rows, Columns and Pixel Data. Old archives hold such files; anything else with no magic bytes is
  refused, so a renamed text file never reaches a forgiving parser.
* **Limits before pixels.** Width and height come from the header (PNG IHDR, JPEG SOF, DICOM
  Rows/Columns) and are checked before any pixel data is decoded: zero size, fewer than
  ``min_side`` pixels on a side, more than ``max_pixels`` pixels (decompression bombs), and an
  aspect ratio beyond ``max_aspect_ratio`` (a strip or banner is not a radiograph). Pillow's own
  ``DecompressionBombError`` (and its warning, if a caller turned warnings into errors) maps to
  :class:`~cxr_core.errors.ImageTooLargeError`. No global Pillow state is changed:
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays as it is (False by default), so truncated files fail.
* **Damaged JPEGs** that Pillow decodes without an error (libjpeg's warnings are dropped: a file cut
  short with its end marker put back, a progressive file missing its last scans) are refused by
  :mod:`cxr_core.jpeg_integrity`: the scans must complete the image and the image must not end in
  the decoder's flat grey fill, and the decoded pixels must not show the block-order staircase of
  damaged scan data. Then libjpeg-turbo decodes the file again strictly (:mod:`cxr_core.jpeg_strict`,
  ``simplejpeg`` from the ``runtime``/``pi`` extras; skipped with one logged reason where it is not
  installed) and any warning it raises refuses the file. PNG data is covered by its chunk CRCs, all checked by
  :mod:`cxr_core.png_integrity` (Pillow skips the image data's CRC).
* **Grey.** RGB becomes grey with the ITU-R BT.601 luma weights ``0.299 R + 0.587 G + 0.114 B``.
  RGBA and grey+alpha are composited over **black** (``value * alpha``): black is the background
  of a radiograph (air), and the colour hidden under transparent pixels is arbitrary, so dropping
  the alpha would let that hidden colour through. When every pixel is opaque the alpha is simply
  dropped; either way a note says so. Palette images are converted through their palette (to RGBA
  when the palette has transparency). CMYK JPEGs go through Pillow's CMYK->RGB conversion.
* **16-bit PNG** is divided by 65535, the full 16-bit range, as the PNG specification defines
  (samples with fewer significant bits are stored scaled up to 16 bits; the ``sBIT`` chunk, read
  cheaply from the header, is noted). A 16-bit PNG whose values never exceed 4095 was probably
  written from 12-bit data without that scaling; it is decoded as stored (dark) with a note.
* **Colourfulness** is the mean HSV chroma ``mean(max(R, G, B) - min(R, G, B)) / max_value``,
  in [0, 1], measured on the RGB source (after palette, CMYK or YBR conversion and alpha
  compositing); 0 for grey sources and for RGB files whose channels are equal. It costs one pass
  and lets a later input gate refuse colour photographs.
* **DICOM** (pydicom, optional) is handled in :mod:`cxr_core.imaging_dicom`; see its docstring for
  the modality LUT, VOI window/LUT, MONOCHROME1 and normalisation rules. The types and checks both
  decoders share live in :mod:`cxr_core.imaging_common` (re-exported here), so the imports run one
  way: this module imports ``imaging_dicom`` when a DICOM file arrives, never the other way round.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_core.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameImageError,
    UnsupportedImageError,
)
from cxr_core.imaging_common import (  # re-exported: this is the public module
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DICOM_SUFFIXES,
    EXPECTED_FORMATS,
    IMAGE_SUFFIXES,  # noqa: F401 - re-exported
    JPEG_SUFFIXES,
    PNG_SUFFIXES,
    CorruptImageError,
    DecodedImage,
    DecodeLimits,
    ImageFileError,
    ImageProvenance,
    check_dimensions,
    colourfulness,  # noqa: F401 - re-exported
    grey_and_colourfulness,
    rgb_to_grey,  # noqa: F401 - re-exported
)
from cxr_core.jpeg_integrity import JpegLayout, check_desync, check_fill, check_scans
from cxr_core.jpeg_strict import check_strict
from cxr_core.png_integrity import check_chunks
from cxr_core.text import printable

logger = logging.getLogger(__name__)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
_HEAD_BYTES = 132
_EXIF_ORIENTATION = 0x0112
# Other formats, named in the refusal so the user knows what they handed over.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000 (JP2)"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)


def decode_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
    min_side: int = DEFAULT_MIN_SIDE,
) -> DecodedImage:
    """Decode the PNG, JPEG or DICOM file at ``path`` into a grey float image and its provenance.

    Raises an :class:`~cxr_core.errors.ImageDecodeError` subclass naming the file and the problem.
    """
    path = Path(path)
    name = str(path)
    try:
        path.stat()
    except FileNotFoundError:
        raise ImageFileError(name, f"file not found; expected {EXPECTED_FORMATS} file") from None
    except OSError as exc:  # a folder on the way without search permission, a name too long, ...
        reason = f"cannot be accessed ({exc.strerror or exc}); expected a readable {EXPECTED_FORMATS} file"
        raise ImageFileError(name, reason) from exc
    if path.is_dir():
        raise ImageFileError(name, f"is a directory; expected {EXPECTED_FORMATS} file")
    if not path.is_file():
        raise ImageFileError(name, f"is not a regular file; expected {EXPECTED_FORMATS} file")
    limits = DecodeLimits(max_pixels, max_aspect_ratio, min_side)
    try:
        fh = path.open("rb")
    except OSError as exc:
        reason = f"cannot be opened ({exc.strerror or exc}); expected a readable file"
        raise ImageFileError(name, reason) from exc
    with fh:
        return _decode_stream(fh, name, limits)


def decode_bytes(
    data: bytes,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
    min_side: int = DEFAULT_MIN_SIDE,
) -> DecodedImage:
    """Decode an image handed over as bytes (a platform file picker); ``name`` is used in messages
    and provenance, and its suffix only for the preamble-less DICOM rule."""
    limits = DecodeLimits(max_pixels, max_aspect_ratio, min_side)
    return _decode_stream(io.BytesIO(data), name, limits)


def _decode_stream(fh: BinaryIO, name: str, limits: DecodeLimits) -> DecodedImage:
    head = fh.read(_HEAD_BYTES)
    fmt = sniff_format(head, name)
    fh.seek(0)
    if fmt in ("dicom", "dicom-no-preamble"):
        from cxr_core.imaging_dicom import decode_dicom

        return decode_dicom(fh, name, limits, preamble=fmt == "dicom")
    return _decode_raster(fh, name, fmt, limits)


def sniff_format(head: bytes, name: str) -> str:
    """Return ``png``, ``jpeg``, ``dicom`` or ``dicom-no-preamble`` from the first 132 bytes.

    Raises :class:`CorruptImageError` for an empty file, :class:`UnsupportedImageError` otherwise.
    """
    if not head:
        raise CorruptImageError(name, f"file is empty (0 bytes); expected {EXPECTED_FORMATS}")
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SOI):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if Path(name).suffix.lower() in DICOM_SUFFIXES and head[:2] in (b"\x02\x00", b"\x08\x00"):
        return "dicom-no-preamble"
    for magic, label in _OTHER_MAGIC:
        if head.startswith(magic):
            raise UnsupportedImageError(name, f"content is a {label} file; expected {EXPECTED_FORMATS}")
    raise UnsupportedImageError(
        name,
        f"content is not an image cxr-edge reads (first bytes {head[:8]!r}): expected {EXPECTED_FORMATS} "
        "(PNG signature, JPEG SOI marker, or 'DICM' at byte 128)",
    )


# ----------------------------------------------------------------------------- PNG / JPEG


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    bit_depth: int
    kind: str  # PNG colour type or JPEG SOF marker, for messages
    sbit: tuple[int, ...] = ()


def _decode_raster(fh: BinaryIO, name: str, fmt: str, limits: DecodeLimits) -> DecodedImage:
    header = _png_header(fh, name) if fmt == "png" else _jpeg_header(fh, name)
    check_dimensions(name, header.width, header.height, limits)
    fh.seek(0)
    raw = fh.read()
    fh.seek(0)
    layout = check_scans(raw, name) if fmt == "jpeg" else JpegLayout()
    notes: list[str] = []
    with _pillow_warnings_as_notes(name, notes):
        grey, colour, mode = _decode_with_pillow(fh, name, fmt, header, layout, raw, notes)
    height, width = grey.shape
    prov = ImageProvenance(
        path=name,
        format=fmt,
        width=width,
        height=height,
        bit_depth=header.bit_depth,
        source_mode=mode,
        colourfulness=colour,
        notes=tuple(notes + _suffix_note(name, fmt)),
    )
    return DecodedImage(grey, prov)


@contextlib.contextmanager
def _pillow_warnings_as_notes(name: str, notes: list[str]) -> Iterator[None]:
    """Pillow's warnings while it reads one file, as that file's notes instead of bare stderr lines.

    A damaged EXIF block ("Corrupt EXIF data") means no orientation could be read: the image is
    used as stored, and the note says so (the quality checks' orientation test still applies).
    ``catch_warnings`` swaps process-wide state; images are decoded one at a time per process here
    (the app's worker, cxr-predict, edge-bench), so no other thread's warnings are lost.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        text = str(warning.message).strip()
        if "EXIF" in text:
            notes.append(f"EXIF block damaged ({text}); no orientation read, the image is used as stored")
        else:
            logger.warning("%s: %s", printable(name), text)


def _decode_with_pillow(
    fh: BinaryIO, name: str, fmt: str, header: _Header, layout: JpegLayout, raw: bytes, notes: list[str]
) -> tuple[NDArray[np.float32], float, str]:
    """Pillow's decode of a PNG or JPEG, its damage checks, orientation, and grey conversion."""
    try:
        with Image.open(fh, formats=["PNG"] if fmt == "png" else ["JPEG"]) as img:
            if (img.width, img.height) != (header.width, header.height):
                raise CorruptImageError(
                    name,
                    f"Pillow reads size {img.size}, the header says "
                    f"{header.width}x{header.height}; expected them to agree",
                )
            _check_frames(img, name, fmt, notes)
            img.load()
            if fmt == "jpeg":
                check_fill(np.asarray(img), name)
                check_desync(np.asarray(img), name, layout)
                check_strict(raw, name)  # last: the checks above name what the damage did
            else:  # after Pillow, so that its own messages (a truncated file) come first
                check_chunks(raw, name)
            img = _apply_exif_orientation(img, notes)
            grey, colour = _pillow_to_grey(img, name, header, notes)
            mode = img.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            name, f"Pillow refused it as a decompression bomb ({exc}); expected a smaller image"
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(
            name, f"Pillow cannot read this {fmt.upper()} file ({exc}); expected a valid image"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        if isinstance(exc, ImageDecodeError):
            raise
        raise CorruptImageError(
            name, f"{fmt.upper()} data is truncated or corrupt ({exc}); expected a complete image file"
        ) from exc
    return grey, colour, mode


def _suffix_note(name: str, fmt: str) -> list[str]:
    suffix = Path(name).suffix.lower()
    expected = {"png": PNG_SUFFIXES, "jpeg": JPEG_SUFFIXES}[fmt]
    if suffix and suffix not in expected:
        return [f"content is {fmt.upper()} although the name ends in {suffix}"]
    return []


def _check_frames(img: Image.Image, name: str, fmt: str, notes: list[str]) -> None:
    frames = int(getattr(img, "n_frames", 1))
    if frames <= 1:
        return
    if img.format == "MPO":  # phone cameras store a preview or depth map after the photo
        notes.append(f"MPO with {frames} images: the primary image was used")
        return
    raise MultiFrameImageError(
        name, f"{fmt.upper()} holds {frames} frames (animated); expected a single-frame radiograph"
    )


def _apply_exif_orientation(img: Image.Image, notes: list[str]) -> Image.Image:
    orientation = img.getexif().get(_EXIF_ORIENTATION)
    if orientation is None or orientation == 1:
        return img
    if orientation not in range(2, 9):
        notes.append(f"EXIF orientation {orientation!r} is not valid (1-8); ignored")
        return img
    notes.append(f"EXIF orientation {orientation} applied")
    return ImageOps.exif_transpose(img)


def _pillow_to_grey(
    img: Image.Image, name: str, header: _Header, notes: list[str]
) -> tuple[NDArray[np.float32], float]:
    """Turn a loaded Pillow image into grey [0, 1] and its colourfulness, noting conversions."""
    mode = img.mode
    if mode in ("P", "PA"):
        target = "RGBA" if mode == "PA" or "transparency" in img.info else "RGB"
        img = img.convert(target)
        notes.append(f"palette converted to {target}")
    elif mode in ("CMYK", "YCbCr", "1"):
        img = img.convert("L" if mode == "1" else "RGB")
        notes.append(f"{mode} converted to {img.mode}")
    arr = np.asarray(img)
    mode = img.mode
    if mode == "L":
        return arr * np.float32(1.0 / 255.0), 0.0
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_grey(arr, header, notes), 0.0
    if header.bit_depth == 16:
        notes.append(f"16-bit {mode} samples reduced to 8 bits by Pillow")
    if mode == "RGB":
        notes.append("RGB converted to grey (ITU-R 601 luma)")
        return grey_and_colourfulness(arr, 255.0)
    if mode in ("LA", "RGBA", "RGBX"):
        return _drop_or_composite_alpha(arr, mode, notes)
    raise UnsupportedImageError(
        name, f"Pillow mode {mode!r} is not supported; expected grey, RGB, RGBA, palette or CMYK pixels"
    )


def _sixteen_bit_grey(arr: NDArray, header: _Header, notes: list[str]) -> NDArray[np.float32]:
    grey = arr.astype(np.float32) * np.float32(1.0 / 65535.0)
    np.clip(grey, 0.0, 1.0, out=grey)
    notes.append("16-bit samples scaled by the full 16-bit range (65535)")
    if header.sbit:
        notes.append(f"sBIT: {header.sbit[0]} significant bits")
    peak = int(arr.max())
    if peak < 4096:
        notes.append(f"max sample {peak} < 4096: 12-bit data stored without scaling? (decoded as stored)")
    return grey


def _drop_or_composite_alpha(
    arr: NDArray[np.uint8], mode: str, notes: list[str]
) -> tuple[NDArray[np.float32], float]:
    colour, alpha = arr[..., :-1], arr[..., -1]
    weights: NDArray[np.uint8] | None = None
    if mode == "RGBX" or bool((alpha == 255).all()):
        notes.append("alpha dropped (every pixel opaque)" if mode != "RGBX" else "padding channel dropped")
    else:
        count = int(np.count_nonzero(alpha < 255))
        notes.append(f"alpha composited over black ({count} of {alpha.size} pixels not opaque)")
        weights = alpha
    if mode == "LA":
        scale = np.float32(1.0 / 255.0)
        if weights is None:
            return colour[..., 0] * scale, 0.0
        return (colour[..., 0] * (weights * scale)) * scale, 0.0
    notes.append("RGB converted to grey (ITU-R 601 luma)")
    return grey_and_colourfulness(colour, 255.0, weights)


def _read_exact(fh: BinaryIO, count: int, name: str, what: str) -> bytes:
    data = fh.read(count)
    if len(data) != count:
        raise CorruptImageError(name, f"file ends inside the {what}; expected a complete image file")
    return data


def _png_header(fh: BinaryIO, name: str) -> _Header:
    """IHDR size and depth plus sBIT, walking chunk headers up to the first IDAT (no pixel data)."""
    fh.seek(len(PNG_SIGNATURE))
    ihdr: tuple[int, ...] | None = None
    sbit: tuple[int, ...] = ()
    for _ in range(10_000):
        length, ctype = struct.unpack(">I4s", _read_exact(fh, 8, name, "PNG chunk header"))
        if ctype == b"IHDR" and length == 13:
            ihdr = struct.unpack(">IIBBBBB", _read_exact(fh, 13, name, "PNG IHDR chunk"))
            fh.seek(4, io.SEEK_CUR)
        elif ctype == b"sBIT" and length <= 4:
            sbit = tuple(_read_exact(fh, length, name, "PNG sBIT chunk"))
            fh.seek(4, io.SEEK_CUR)
        elif ctype in (b"IDAT", b"IEND"):
            break
        else:
            fh.seek(length + 4, io.SEEK_CUR)
    if ihdr is None:
        raise CorruptImageError(name, "PNG has no valid IHDR header chunk; expected a valid PNG file")
    width, height, bit_depth, colour_type = ihdr[:4]
    return _Header(width, height, bit_depth, f"colour type {colour_type}", sbit)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: Arithmetic-coded frames (SOF9-11, SOF13-15). libjpeg decodes a file of them cut short without a
#: warning and without the flat grey fill that gives a cut-short Huffman JPEG away
#: (cxr_core.jpeg_integrity), so damage in them cannot be detected: they are refused.
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(fh: BinaryIO, name: str) -> _Header:
    """Size and precision from the JPEG frame header (SOFn), walking marker segments only."""
    fh.seek(2)
    for _ in range(10_000):
        byte = _read_exact(fh, 1, name, "JPEG marker segments")
        if byte != b"\xff":
            raise CorruptImageError(name, f"JPEG marker expected, found byte {byte!r}; expected a valid JPEG")
        marker = _read_exact(fh, 1, name, "JPEG marker segments")[0]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            if marker == 0xFF:
                fh.seek(-1, io.SEEK_CUR)  # fill byte
            continue
        if marker in (0xD9, 0xDA):
            raise CorruptImageError(
                name, "JPEG has no frame header (SOF) before its scan data; expected a valid JPEG"
            )
        (length,) = struct.unpack(">H", _read_exact(fh, 2, name, "JPEG segment length"))
        if marker in _SOF_MARKERS:
            precision, height, width = struct.unpack(">BHH", _read_exact(fh, 5, name, "JPEG frame header"))
            if precision != 8 or marker in (0xC3, 0xC7, 0xCB, 0xCF):
                raise UnsupportedImageError(
                    name,
                    f"JPEG with {precision}-bit samples, frame type SOF{marker - 0xC0} (lossless or "
                    "12-bit) cannot be decoded by Pillow; expected an 8-bit baseline or progressive JPEG",
                )
            if marker in _ARITHMETIC_SOF:
                raise UnsupportedImageError(
                    name,
                    f"arithmetic-coded JPEG (frame type SOF{marker - 0xC0}): a damaged or cut-short "
                    "file of this kind decodes without an error, so it cannot be checked; expected a "
                    "baseline or progressive (Huffman-coded) JPEG; save the image as PNG or as an "
                    "ordinary JPEG",
                )
            return _Header(width, height, precision, f"SOF{marker - 0xC0}")
        fh.seek(length - 2, io.SEEK_CUR)
    raise CorruptImageError(name, "JPEG frame header (SOF) not found; expected a valid JPEG")
