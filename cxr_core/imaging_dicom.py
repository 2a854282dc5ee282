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
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import MultiFrameImageError, UnsupportedImageError
from cxr_core.imaging import (
    CorruptImageError,
    DecodedImage,
    DecodeLimits,
    ImageProvenance,
    check_dimensions,
    colourfulness,
    rgb_to_grey,
)
from cxr_core.optional import require

logger = logging.getLogger(__name__)

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
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
    photometric = _check_header(ds, name, limits)
    ts = _transfer_syntax(ds, name, notes)
    pixels = _decode_pixels(ds, ts, name)
    if photometric in MONOCHROME:
        grey = monochrome_to_unit(pixels, ds, notes)
        colour = 0.0
    else:
        full_scale = float(2 ** int(ds.BitsStored) - 1)
        if photometric != "RGB":
            notes.append(f"{photometric} converted to RGB")
        notes.append("RGB converted to grey (ITU-R 601 luma)")
        grey, colour = rgb_to_grey(pixels, full_scale), colourfulness(pixels, full_scale)
    prov = ImageProvenance(
        path=name,
        format="dicom",
        width=int(ds.Columns),
        height=int(ds.Rows),
        bit_depth=int(ds.BitsStored),
        source_mode=photometric,
        colourfulness=colour,
        modality=_text(ds, "Modality"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        notes=tuple(notes),
        transfer_syntax=ts.name,
    )
    return DecodedImage(np.ascontiguousarray(grey, dtype=np.float32), prov)


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
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise MultiFrameImageError(
            name, f"DICOM holds {frames} frames (NumberOfFrames); expected a single-frame radiograph"
        )
    check_dimensions(name, int(ds.Columns), int(ds.Rows), limits)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = int(ds.get("SamplesPerPixel") or 1)
    expected = {1: MONOCHROME, 3: COLOUR}.get(samples, ())
    if photometric not in expected:
        raise UnsupportedImageError(
            name,
            f"DICOM PhotometricInterpretation {photometric!r} with SamplesPerPixel {samples} is not "
            f"supported; expected MONOCHROME1/MONOCHROME2 (1 sample) or {'/'.join(COLOUR)} (3 samples)",
        )
    if "BitsStored" not in ds:
        ds.BitsStored = int(ds.BitsAllocated)
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
    if ts == _JPEG_EXTENDED and int(ds.BitsStored) > 8 and only_pillow:
        raise UnsupportedImageError(
            name,
            f"{label} with {int(ds.BitsStored)}-bit samples cannot be decoded "
            f"by Pillow, the only plugin installed here (install one of: {needs}); "
            f"expected {_DECODABLE}",
        )
    return ts


def _decode_pixels(ds: Any, ts: Any, name: str) -> NDArray:
    try:
        return ds.pixel_array
    except Exception as exc:  # decoder plugins raise RuntimeError, ValueError, OSError, ...
        reason = (
            f"DICOM pixel data cannot be decoded with transfer syntax {ts.name} "
            f"({type(exc).__name__}: {exc}); expected complete, valid pixel data"
        )
        raise CorruptImageError(name, reason) from exc


def stored_range(ds: Any) -> tuple[float, float]:
    """The possible range of stored values for BitsStored and PixelRepresentation."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def monochrome_to_unit(pixels: NDArray, ds: Any, notes: list[str]) -> NDArray[np.float32]:
    """Modality LUT, VOI (LUT or window) or range normalisation, then MONOCHROME1 inversion: [0, 1]."""
    values, low, high = _modality(pixels, ds, notes)
    unit = _voi(values, ds, notes)
    if unit is None:
        unit = (values - np.float32(low)) * np.float32(1.0 / (high - low))
        notes.append(f"no VOI window; normalised by the BitsStored range [{low:g}, {high:g}] after rescale")
    np.clip(unit, 0.0, 1.0, out=unit)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), unit, out=unit)
        notes.append("MONOCHROME1 inverted")
    elif shape == "INVERSE":
        np.subtract(np.float32(1.0), unit, out=unit)
        notes.append("Presentation LUT Shape INVERSE applied")
    return unit


def _modality(pixels: NDArray, ds: Any, notes: list[str]) -> tuple[NDArray[np.float32], float, float]:
    """Apply the modality LUT; return values and the possible output range (low < high)."""
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        values, bits = apply_lut(pixels, ds.ModalityLUTSequence[0], ds)
        notes.append("Modality LUT applied")
        return values, 0.0, float(2**bits - 1)
    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
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


def _voi(values: NDArray[np.float32], ds: Any, notes: list[str]) -> NDArray[np.float32] | None:
    """Map through the VOI LUT or window onto [0, 1]; None when the file has no usable VOI."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        out, bits = apply_lut(values, ds.VOILUTSequence[0], ds)
        out *= np.float32(1.0 / (2**bits - 1))
        notes.append(f"VOI LUT applied (1 of {len(ds.VOILUTSequence)}, {bits}-bit entries)")
        return out
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    return window(values, center, width, function, notes)


def apply_lut(values: NDArray, item: Any, ds: Any) -> tuple[NDArray[np.float32], int]:
    """Map ``values`` through a LUT item (LUTDescriptor + LUTData, PS3.3 C.11.1.1 / C.11.2.1.1).

    Values below the first mapped value take the first entry, above the last take the last entry.
    Returns the mapped values and the bits per entry. (Written here because pydicom 3.0.2's
    ``apply_voi`` indexes with the LUT's dtype and wraps inputs above 255 for 8-bit tables.)
    """
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        big = str(ds.file_meta.get("TransferSyntaxUID", "")) == "1.2.840.10008.1.2.2"
        table = np.frombuffer(data, dtype=">u2" if big else "<u2")
        if len(table) < entries and bits == 8:
            table = np.frombuffer(data, dtype=np.uint8)
    else:
        table = np.atleast_1d(np.asarray(data, dtype=np.int64))
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
