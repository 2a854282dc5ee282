"""The DICOM part of :mod:`cxr_core.imaging` (pydicom is optional: the ``dicom`` extra).

The greyscale pipeline follows DICOM PS3.3 C.11 (modality LUT -> VOI LUT -> presentation):

1. **Modality LUT**: ``RescaleSlope * stored + RescaleIntercept`` (or a Modality LUT Sequence).
2. **VOI**: a VOI LUT Sequence if present (the manufacturer's tone curve, preferred as pydicom
   does), else the first WindowCenter/WindowWidth pair with VOILUTFunction LINEAR (default),
   LINEAR_EXACT or SIGMOID, mapping straight onto [0, 1].
3. **Without a VOI** the values are normalised by the *possible* range of the stored bits after
   rescale: ``[0, 2**BitsStored - 1]`` (or the signed range) pushed through slope/intercept - not
   by the image's own min/max. A fixed range keeps intensities comparable between images and
   deterministic: a per-image stretch would amplify noise on a flat image, jump with one hot
   pixel, and make the same anatomy look different from file to file.
4. **Presentation**: MONOCHROME1 is inverted (``1 - v``) after the VOI so that 1 is bright as
   displayed (bone bright). Presentation LUT Shape INVERSE on MONOCHROME2 inverts too;
   on MONOCHROME1 it describes that same inversion and is not applied twice.

Colour (RGB, YBR_*; SamplesPerPixel 3) becomes BT.601 luma over ``2**BitsStored - 1`` plus
colourfulness; PALETTE COLOR and other photometric interpretations are refused. A transfer syntax
whose decoder plugin is missing here (e.g. JPEG Lossless or JPEG-LS without pylibjpeg/gdcm, or
12-bit JPEG Extended with only Pillow) is refused with its name and the packages that would help.
Rows, Columns and NumberOfFrames are checked before the pixel data is decoded.

**A file the decoder cannot vouch for is refused** (:class:`~cxr_core.imaging_common.CorruptImageError`
naming the element, the value and what was expected), never decoded on a guess: an element with an
unknown VR or an unreadable value; a non-numeric, non-finite or out-of-range Rows, Columns,
BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel or NumberOfFrames; uncompressed
Pixel Data whose length is not ``Rows * Columns * frames * samples * BitsAllocated / 8`` (pydicom
would crop a longer one silently); a RescaleSlope/Intercept that is not finite, a slope of 0 or
beyond 1e6; a window whose centre or width is not finite, whose width is below 1 (LINEAR) or more
than 64 times the possible value range (a flat grey image), or that lies outside the value range;
a VOI or Modality LUT whose descriptor does not hold 3 values, has 0 or more than 16 bits per entry
or more entries than its data; a VOI that maps every pixel to one grey level; any non-finite value;
an 8-bit JPEG frame (JPEG Baseline or Extended) that libjpeg warns about (:mod:`cxr_core.jpeg_strict`:
pydicom decodes it through Pillow, which drops the warnings; skipped without simplejpeg).
"""

from __future__ import annotations

import logging
import math
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import MultiFrameImageError, UnsupportedImageError
from cxr_core.imaging_common import (
    CorruptImageError,
    DecodedImage,
    DecodeLimits,
    ImageProvenance,
    check_dimensions,
    grey_and_colourfulness,
)
from cxr_core.jpeg_strict import check_strict
from cxr_core.optional import require

logger = logging.getLogger(__name__)

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
#: Transfer syntaxes whose frames are 8-bit JPEG that libjpeg decodes: checked by jpeg_strict.
_LIBJPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", _JPEG_EXTENDED)
_DECODABLE = "an uncompressed, deflated, RLE, 8-bit JPEG Baseline or JPEG 2000 DICOM (decodable with Pillow)"


def decode_dicom(fh: BinaryIO, name: str, limits: DecodeLimits, *, preamble: bool) -> DecodedImage:
    """Decode a single-frame DICOM image read from ``fh``; ``name`` is used in messages."""
    pydicom = require("pydicom", extra="dicom", purpose="Reading DICOM files")
    notes: list[str] = []
    try:
        ds = pydicom.dcmread(fh, force=not preamble)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise CorruptImageError(
            name,
            f"DICOM dataset cannot be read ({type(exc).__name__}: {exc}); expected a complete DICOM file",
        ) from exc
    if not preamble:
        if not ("Rows" in ds and "Columns" in ds and "PixelData" in ds):
            raise UnsupportedImageError(
                name,
                "no 'DICM' preamble and the content is not a DICOM image "
                "dataset (no Rows/Columns/Pixel Data); expected a DICOM file",
            )
        notes.append("DICOM without preamble (read with force)")
    _check_elements(ds, name)
    photometric = _check_header(ds, name, limits)
    ts = _transfer_syntax(ds, name, notes)
    _check_pixel_length(ds, ts, name)
    pixels = _decode_pixels(ds, ts, name)
    _check_jpeg_frame(ds, ts, name)
    if photometric in MONOCHROME:
        grey = monochrome_to_unit(pixels, ds, notes, name)
        colour = 0.0
    else:
        full_scale = float(2 ** _int(ds, "BitsStored", name) - 1)
        if photometric != "RGB":
            notes.append(f"{photometric} converted to RGB")
        notes.append("RGB converted to grey (ITU-R 601 luma)")
        grey, colour = grey_and_colourfulness(pixels, full_scale)
    prov = ImageProvenance(
        path=name,
        format="dicom",
        width=_int(ds, "Columns", name),
        height=_int(ds, "Rows", name),
        bit_depth=_int(ds, "BitsStored", name),
        source_mode=photometric,
        colourfulness=colour,
        modality=_text(ds, "Modality"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        notes=tuple(notes),
        transfer_syntax=ts.name,
    )
    return DecodedImage(np.ascontiguousarray(grey, dtype=np.float32), prov)


def _check_elements(ds: Any, name: str) -> None:
    """Read every element once: an unknown VR or an unreadable value refuses the file here."""
    try:
        for _elem in ds.iterall():
            pass
    except Exception as exc:  # pydicom raises NotImplementedError, ValueError, KeyError, ...
        raise CorruptImageError(
            name, f"DICOM element cannot be read ({type(exc).__name__}: {exc}); expected valid DICOM elements"
        ) from exc


def _number(ds: Any, keyword: str, name: str, default: float | None = None) -> float:
    """The first value of ``keyword`` as a finite float; ``default`` when absent or empty."""
    value = ds.get(keyword) if keyword in ds else None
    if (
        value is None
        or value == ""
        or (hasattr(value, "__len__") and not isinstance(value, str) and not len(value))
    ):
        if default is None:
            raise CorruptImageError(name, f"DICOM {keyword} is empty; expected a number")
        return default
    try:
        number = _first(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptImageError(name, f"DICOM {keyword} is {str(value)[:40]!r}; expected a number") from exc
    if not math.isfinite(number):
        raise CorruptImageError(name, f"DICOM {keyword} is {number}; expected a finite number")
    return number


def _int(
    ds: Any, keyword: str, name: str, default: int | None = None, low: int = 0, high: int = 2**31
) -> int:
    """``keyword`` as an integer within ``[low, high]``; ``default`` when absent or empty."""
    number = _number(ds, keyword, name, None if default is None else float(default))
    if number != int(number) or not low <= number <= high:
        raise CorruptImageError(
            name, f"DICOM {keyword} is {number:g}; expected a whole number from {low} to {high}"
        )
    return int(number)


def _check_pixel_length(ds: Any, ts: Any, name: str) -> None:
    """Uncompressed Pixel Data must hold exactly Rows * Columns * frames * samples * bits / 8 bytes."""
    if ts.is_compressed:
        return
    rows, cols = _int(ds, "Rows", name), _int(ds, "Columns", name)
    frames = _int(ds, "NumberOfFrames", name, default=1, low=1)
    samples = _int(ds, "SamplesPerPixel", name, default=1, low=1, high=4)
    bits = _int(ds, "BitsAllocated", name)
    expected = (rows * cols * frames * samples * bits + 7) // 8
    actual = len(ds.PixelData)
    if actual not in (expected, expected + 1):  # one pad byte makes an odd length even
        raise CorruptImageError(
            name,
            f"DICOM Pixel Data holds {actual} bytes; expected {expected} for Rows {rows} x Columns {cols} "
            f"x {frames} frame(s) x {samples} sample(s) x {bits} bits (a wrong Rows/Columns or damaged data)",
        )


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _check_header(ds: Any, name: str, limits: DecodeLimits) -> str:
    """Refuse what cannot become one grey radiograph, from header elements only."""
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        found = f"it has {other[0]} only" if other else f"SOP class {_text(ds, 'SOPClassUID') or 'unknown'}"
        raise UnsupportedImageError(
            name,
            f"DICOM file has no Pixel Data element (7FE0,0010) ({found}); "
            "expected an image object such as DX or CR",
        )
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if k not in ds]
    if missing:
        raise CorruptImageError(
            name, f"DICOM image lacks required elements {missing}; expected an image pixel module"
        )
    frames = _int(ds, "NumberOfFrames", name, default=1, low=1)
    if frames > 1:
        raise MultiFrameImageError(
            name, f"DICOM holds {frames} frames (NumberOfFrames); expected a single-frame radiograph"
        )
    check_dimensions(name, _int(ds, "Columns", name), _int(ds, "Rows", name), limits)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = _int(ds, "SamplesPerPixel", name, default=1, low=1, high=4)
    expected = {1: MONOCHROME, 3: COLOUR}.get(samples, ())
    if photometric not in expected:
        raise UnsupportedImageError(
            name,
            f"DICOM PhotometricInterpretation {photometric!r} with SamplesPerPixel {samples} is not "
            f"supported; expected MONOCHROME1/MONOCHROME2 (1 sample) or {'/'.join(COLOUR)} (3 samples)",
        )
    allocated = _int(ds, "BitsAllocated", name)
    if allocated not in (1, 8, 16, 32):
        raise CorruptImageError(name, f"DICOM BitsAllocated is {allocated}; expected 1, 8, 16 or 32")
    if "BitsStored" not in ds or ds.BitsStored in (None, ""):
        ds.BitsStored = allocated
    _int(ds, "BitsStored", name, low=1, high=allocated)
    _int(ds, "PixelRepresentation", name, default=0, low=0, high=1)
    return photometric


def _transfer_syntax(ds: Any, name: str, notes: list[str]) -> Any:
    """The transfer syntax, checked against the decoders available here, before decoding."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ts = ImplicitVRLittleEndian if implicit else explicit
        ds.ensure_file_meta()
        ds.file_meta.TransferSyntaxUID = ts
        notes.append(f"no File Meta transfer syntax; inferred {ts.name}")
    ts = UID(ds.file_meta.TransferSyntaxUID)
    label = f"transfer syntax {ts.name} ({ts})"
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedImageError(
            name, f"{label} has no pixel data decoder in pydicom; expected {_DECODABLE}"
        ) from exc
    needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
    if not decoder.is_available:
        raise UnsupportedImageError(
            name,
            f"{label} cannot be decoded here: no decoder plugin is installed "
            f"(install one of: {needs}); expected {_DECODABLE}",
        )
    only_pillow = set(decoder.available_plugins) <= {"pillow"}
    if ts == _JPEG_EXTENDED and _int(ds, "BitsStored", name) > 8 and only_pillow:
        raise UnsupportedImageError(
            name,
            f"{label} with {int(ds.BitsStored)}-bit samples cannot be decoded "
            f"by Pillow, the only plugin installed here (install one of: {needs}); "
            f"expected {_DECODABLE}",
        )
    return ts


def _decode_pixels(ds: Any, ts: Any, name: str) -> NDArray:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # decoder plugins raise RuntimeError, ValueError, OSError, ...
        reason = (
            f"DICOM pixel data cannot be decoded with transfer syntax {ts.name} "
            f"({type(exc).__name__}: {exc}); expected complete, valid pixel data"
        )
        raise CorruptImageError(name, reason) from exc
    rows, cols = _int(ds, "Rows", name), _int(ds, "Columns", name)
    if tuple(pixels.shape[:2]) != (rows, cols):
        raise CorruptImageError(
            name, f"DICOM pixel data decodes to shape {pixels.shape}; expected Rows {rows} x Columns {cols}"
        )
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise CorruptImageError(name, "DICOM pixel data holds NaN or infinite values; expected finite values")
    return pixels


def _check_jpeg_frame(ds: Any, ts: Any, name: str) -> None:
    """libjpeg's warnings on the (single) JPEG frame of an 8-bit JPEG DICOM refuse it
    (:mod:`cxr_core.jpeg_strict`; skipped without simplejpeg)."""
    if str(ts) not in _LIBJPEG_SYNTAXES or _int(ds, "BitsAllocated", name) != 8:
        return
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for a damaged encapsulation
        raise CorruptImageError(
            name, f"DICOM encapsulated JPEG frame cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    check_strict(frame, name, what="JPEG pixel data in this DICOM")


def stored_range(ds: Any) -> tuple[float, float]:
    """The possible range of stored values for BitsStored and PixelRepresentation."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def monochrome_to_unit(
    pixels: NDArray, ds: Any, notes: list[str], name: str = "DICOM"
) -> NDArray[np.float32]:
    """Modality LUT, VOI (LUT or window) or range normalisation, then MONOCHROME1 inversion: [0, 1]."""
    values, low, high = _modality(pixels, ds, notes, name)
    unit = _voi(values, ds, notes, name, (low, high))
    voi = unit is not None
    if unit is None:
        unit = (values - np.float32(low)) * np.float32(1.0 / (high - low))
        notes.append(f"no VOI window; normalised by the BitsStored range [{low:g}, {high:g}] after rescale")
    if not np.isfinite(unit).all():
        raise CorruptImageError(
            name,
            "DICOM values are NaN or infinite after the modality and VOI transforms; expected finite values",
        )
    np.clip(unit, 0.0, 1.0, out=unit)
    if voi and unit.size > 1 and float(np.ptp(unit)) == 0.0 and float(np.ptp(values)) > 0.0:
        raise CorruptImageError(
            name,
            f"DICOM VOI maps every pixel to one grey level ({float(unit.flat[0]):g}) although the stored "
            "values vary; expected a window or VOI LUT that shows the image",
        )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), unit, out=unit)
        notes.append("MONOCHROME1 inverted")
    elif shape == "INVERSE":
        np.subtract(np.float32(1.0), unit, out=unit)
        notes.append("Presentation LUT Shape INVERSE applied")
    return unit


def _modality(
    pixels: NDArray, ds: Any, notes: list[str], name: str = "DICOM"
) -> tuple[NDArray[np.float32], float, float]:
    """Apply the modality LUT; return values and the possible output range (low < high)."""
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        values, bits = apply_lut(pixels, ds.ModalityLUTSequence[0], ds, name)
        notes.append("Modality LUT applied")
        return values, 0.0, float(2**bits - 1)
    slope = _number(ds, "RescaleSlope", name, default=1.0)
    intercept = _number(ds, "RescaleIntercept", name, default=0.0)
    if slope == 0.0 or not 1e-6 <= abs(slope) <= 1e6 or abs(intercept) > 1e9:
        raise CorruptImageError(
            name,
            f"DICOM RescaleSlope {slope:g} / RescaleIntercept {intercept:g} is degenerate; expected a "
            "non-zero slope with 1e-6 <= |slope| <= 1e6 and |intercept| <= 1e9",
        )
    low, high = stored_range(ds)
    values = pixels.astype(np.float32)
    if slope != 1.0 or intercept != 0.0:
        values *= np.float32(slope)
        values += np.float32(intercept)
        notes.append(f"rescale slope {slope:g} intercept {intercept:g} applied")
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    if high <= low:
        high = low + 1.0
    return values, low, high


def _voi(
    values: NDArray[np.float32],
    ds: Any,
    notes: list[str],
    name: str = "DICOM",
    value_range: tuple[float, float] | None = None,
) -> NDArray[np.float32] | None:
    """Map through the VOI LUT or window onto [0, 1]; None when the file has no VOI.

    A VOI that is present but degenerate refuses the file (CorruptImageError), see the module doc.
    """
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        out, bits = apply_lut(values, ds.VOILUTSequence[0], ds, name)
        out *= np.float32(1.0 / (2**bits - 1))
        notes.append(f"VOI LUT applied (1 of {len(ds.VOILUTSequence)}, {bits}-bit entries)")
        return out
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center, width = _number(ds, "WindowCenter", name), _number(ds, "WindowWidth", name)
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        notes.append(f"VOILUTFunction {function!r} not supported; window ignored")
        return None
    if (function == "LINEAR" and width < 1.0) or width <= 0.0:
        raise CorruptImageError(
            name,
            f"DICOM WindowWidth {width:g} is invalid for {function}; expected >= 1 (> 0 for LINEAR_EXACT)",
        )
    if value_range is not None:
        low, high = value_range
        span = max(high - low, 1.0)
        if width > 64.0 * span:
            raise CorruptImageError(
                name,
                f"DICOM WindowWidth {width:g} is more than 64 times the possible value range {span:g}: "
                "the image would be flat grey; expected a window on the stored values",
            )
        if center + width / 2.0 < low or center - width / 2.0 > high:
            raise CorruptImageError(
                name,
                f"DICOM window (center {center:g}, width {width:g}) lies outside the possible values "
                f"[{low:g}, {high:g}]: the image would be one flat grey; expected a window over the values",
            )
    return window(values, center, width, function, notes)


def apply_lut(values: NDArray, item: Any, ds: Any, name: str = "DICOM") -> tuple[NDArray[np.float32], int]:
    """Map ``values`` through a LUT item (LUTDescriptor + LUTData, PS3.3 C.11.1.1 / C.11.2.1.1).

    Values below the first mapped value take the first entry, above the last take the last entry.
    Returns the mapped values and the bits per entry. (Written here because pydicom 3.0.2's
    ``apply_voi`` indexes with the LUT's dtype and wraps inputs above 255 for 8-bit tables.)
    """
    descriptor = item.get("LUTDescriptor")
    try:
        numbers = [int(v) for v in descriptor] if descriptor is not None else []
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(
            name, f"DICOM LUTDescriptor {descriptor!r} is not numeric; expected 3 numbers"
        ) from exc
    if len(numbers) != 3:
        raise CorruptImageError(
            name,
            f"DICOM LUTDescriptor has {len(numbers)} values {numbers}; expected 3 (entries, first, bits)",
        )
    entries, first, bits = numbers
    entries = entries or 65536
    if not 8 <= bits <= 16:
        raise CorruptImageError(name, f"DICOM LUTDescriptor gives {bits} bits per entry; expected 8 to 16")
    data = item.get("LUTData")
    if data is None or (hasattr(data, "__len__") and not len(data)):
        raise CorruptImageError(name, "DICOM LUT has no LUTData; expected a table of entries")
    if isinstance(data, bytes | bytearray):
        big = str(ds.file_meta.get("TransferSyntaxUID", "")) == "1.2.840.10008.1.2.2"
        table = np.frombuffer(data, dtype=">u2" if big else "<u2")
        if len(table) < entries and bits == 8:
            table = np.frombuffer(data, dtype=np.uint8)
    else:
        table = np.atleast_1d(np.asarray(data, dtype=np.int64))
    if len(table) < entries:
        raise CorruptImageError(
            name, f"DICOM LUT data holds {len(table)} entries; its LUTDescriptor says {entries}"
        )
    table = table[:entries].astype(np.float32)
    index = np.rint(values).astype(np.int64)
    index -= first
    np.clip(index, 0, len(table) - 1, out=index)
    return table[index], bits


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def window(
    values: NDArray[np.float32], center: float, width: float, function: str, notes: list[str]
) -> NDArray[np.float32] | None:
    """DICOM PS3.3 C.11.2.1.2 window onto [0, 1]; None (with a note) for an invalid width or function."""
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        notes.append(f"VOILUTFunction {function!r} not supported; window ignored")
        return None
    if (function == "LINEAR" and width < 1.0) or width <= 0.0:
        notes.append(f"window width {width:g} invalid for {function}; window ignored")
        return None
    if function == "LINEAR":
        out = (values - np.float32(center - 0.5)) * np.float32(1.0 / max(width - 1.0, 1e-6))
        out += np.float32(0.5)
    elif function == "LINEAR_EXACT":
        out = (values - np.float32(center)) * np.float32(1.0 / width)
        out += np.float32(0.5)
    else:
        out = np.exp((values - np.float32(center)) * np.float32(-4.0 / width))
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
    notes.append(f"VOI window applied (center {center:g}, width {width:g}, {function})")
    return out.astype(np.float32, copy=False)
