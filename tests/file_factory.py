"""Write real PNG, JPEG and DICOM files for tests (Pillow and pydicom, no mocks).

Every writer takes the destination path and returns it as a :class:`~pathlib.Path`. Arrays are
the *stored* values: integers are written as they are; float arrays in [0, 1] are scaled to the
full range of the requested bit depth. Import from any test::

    from tests.file_factory import write_png, write_jpeg, write_dicom
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, PngImagePlugin

#: Short names accepted by :func:`write_dicom` for ``transfer_syntax``.
TRANSFER_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg_baseline": "1.2.840.10008.1.2.4.50",
    "jpeg2000_lossless": "1.2.840.10008.1.2.4.90",
    "jpeg2000": "1.2.840.10008.1.2.4.91",
    "jpeg_lossless": "1.2.840.10008.1.2.4.70",
}
_SOP_CLASSES = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def as_uint(array: NDArray, bits: int) -> NDArray:
    """Integers unchanged (cast to uint8/uint16); floats in [0, 1] scaled to ``2**bits - 1``."""
    arr = np.asarray(array)
    dtype = np.uint8 if bits <= 8 else np.uint16
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(np.clip(arr, 0.0, 1.0) * (2**bits - 1))
    return arr.astype(dtype)


def gradient(height: int = 64, width: int = 48, bits: int = 8) -> NDArray:
    """A left-to-right ramp plus a top-to-bottom ramp: distinct values everywhere, no symmetry."""
    y, x = np.mgrid[0:height, 0:width]
    return as_uint((0.7 * x / max(width - 1, 1) + 0.3 * y / max(height - 1, 1)), bits)


def _exif(orientation: int | None) -> bytes | None:
    if orientation is None:
        return None
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write_png(
    path: str | Path,
    array: NDArray,
    *,
    bits: int = 8,
    mode: str | None = None,
    palette: Sequence[tuple[int, int, int]] | None = None,
    transparency: int | None = None,
    sbit: int | None = None,
    exif_orientation: int | None = None,
) -> Path:
    """Write a PNG. ``array`` (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB, (H, W, 4) RGBA.

    ``bits=16`` writes 16-bit grey. ``mode="P"`` takes (H, W) palette indices and ``palette``
    (RGB triples; ``transparency`` = index of a transparent entry). ``mode="1"`` writes bilevel.
    ``sbit`` adds an sBIT chunk; ``exif_orientation`` an eXIf chunk.
    """
    path = Path(path)
    if mode == "P":
        img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").convert("P")
        flat = [c for rgb in (palette or [(i, i, i) for i in range(256)]) for c in rgb]
        img.putpalette(flat)
    elif mode == "1":
        img = Image.fromarray(np.asarray(array).astype(bool))
    elif bits == 16:
        img = Image.fromarray(as_uint(array, 16))
    else:
        img = Image.fromarray(as_uint(array, 8))
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    kwargs: dict[str, Any] = {"pnginfo": info}
    if transparency is not None:
        kwargs["transparency"] = transparency
    if exif_orientation is not None:
        kwargs["exif"] = _exif(exif_orientation)
    img.save(path, format="PNG", **kwargs)
    return path


def write_animated_png(path: str | Path, frames: Sequence[NDArray]) -> Path:
    """Write an APNG with one frame per 8-bit array."""
    path = Path(path)
    images = [Image.fromarray(as_uint(f, 8)) for f in frames]
    images[0].save(path, format="PNG", save_all=True, append_images=images[1:], duration=100)
    return path


def write_jpeg(
    path: str | Path,
    array: NDArray,
    *,
    mode: str | None = None,
    quality: int = 95,
    exif_orientation: int | None = None,
    **save_options: Any,
) -> Path:
    """Write an 8-bit JPEG: (H, W) grey, (H, W, 3) RGB, or (H, W, 4) with ``mode="CMYK"``.

    ``save_options`` go to Pillow (``progressive=True``, ``restart_marker_rows=1``, ...)."""
    path = Path(path)
    img = Image.fromarray(as_uint(array, 8))
    if mode is not None and img.mode != mode:
        img = Image.frombuffer(mode, img.size, as_uint(array, 8).tobytes())
    kwargs: dict[str, Any] = {"quality": quality, **save_options}
    if exif_orientation is not None:
        kwargs["exif"] = _exif(exif_orientation)
    img.save(path, format="JPEG", **kwargs)
    return path


def write_mpo(path: str | Path, primary: NDArray, secondary: NDArray) -> Path:
    """Write a multi-picture JPEG (MPO), as phone cameras do: a photo plus a second image."""
    path = Path(path)
    first, second = Image.fromarray(as_uint(primary, 8)), Image.fromarray(as_uint(secondary, 8))
    first.save(path, format="MPO", save_all=True, append_images=[second])
    return path


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def write_png_claiming_size(
    path: str | Path, width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0
) -> Path:
    """A tiny PNG whose valid IHDR claims ``width`` x ``height`` (decompression-bomb and size tests)."""
    path = Path(path)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    data += _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def write_jpeg_claiming_size(path: str | Path, width: int, height: int) -> Path:
    """A small real JPEG whose SOF0 frame header is patched to claim ``width`` x ``height``."""
    path = Path(path)
    buf = io.BytesIO()
    Image.fromarray(gradient(16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def truncate_copy(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src`` to ``dst`` (a file cut off mid-transfer)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ----------------------------------------------------------------------------- DICOM


def write_dicom(
    path: str | Path,
    array: NDArray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    bits_allocated: int | None = None,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | tuple[Sequence[float], Sequence[float]] | None = None,
    voi_lut_function: str | None = None,
    voi_lut: tuple[int, int, Sequence[int]] | None = None,
    presentation_lut_shape: str | None = None,
    modality: str = "DX",
    body_part: str | None = "CHEST",
    view: str | None = "PA",
    transfer_syntax: str = "explicit",
    frames: int = 1,
    preamble: bool = True,
    pixel_data: bool = True,
    encapsulated_frames: Sequence[bytes] | None = None,
    overrides: Mapping[str, Any] | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write a DICOM file with pydicom from stored values ``array``.

    ``array``: (H, W) grey, (H, W, 3) RGB (photometric RGB or YBR_FULL; YBR_FULL_422 with JPEG
    Baseline), or (F, H, W) frames; ``frames > 1`` with a 2-D array repeats it.
    ``rescale`` = (slope, intercept); ``window`` = (center, width), single values or lists;
    ``voi_lut`` = (first mapped value, bits per entry, table).
    ``transfer_syntax``: a key of :data:`TRANSFER_SYNTAXES` or a UID. explicit/implicit/deflated are
    written uncompressed, rle via ``Dataset.compress``, jpeg_baseline (8-bit) and jpeg2000[_lossless]
    by encoding with Pillow and encapsulating. Any other UID needs ``encapsulated_frames`` (raw
    codestream bytes written as they are). ``preamble=False`` writes a bare implicit-VR dataset with
    no preamble and no File Meta. ``overrides`` sets any keyword last (e.g. ``{"Rows": 9000}``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    arr = np.asarray(array)
    if frames > 1 and arr.ndim == 2:
        arr = np.stack([arr] * frames)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    if bits_allocated is None:
        bits_allocated = 8 if bits_stored <= 8 else 16
    ts = UID(TRANSFER_SYNTAXES.get(transfer_syntax, transfer_syntax))

    ds = Dataset()
    sop_class = _SOP_CLASSES.get(modality, _SECONDARY_CAPTURE)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.Modality = modality
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view is not None:
        ds.ViewPosition = view
    rows, cols = arr.shape[1:3] if frames > 1 else arr.shape[:2]
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if colour and photometric != "PALETTE COLOR" else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    _add_luts(ds, rescale, window, voi_lut_function, voi_lut, presentation_lut_shape)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    if pixel_data:
        _add_pixels(ds, arr, ts, signed, bits_allocated, photometric, encapsulated_frames, jpeg_quality)
    for keyword, value in (overrides or {}).items():
        setattr(ds, keyword, value)

    path = Path(path)
    if preamble:
        # A UID pydicom does not know as a transfer syntax needs the dataset encoding spelled out.
        encoding = {} if ts.is_transfer_syntax else {"implicit_vr": False, "little_endian": True}
        ds.save_as(path, enforce_file_format=True, **encoding)
    else:  # a bare dataset: no preamble, no File Meta, implicit VR little endian
        bare = Dataset()
        bare.update(ds)
        bare.save_as(path, implicit_vr=True, little_endian=True)
    return path


def _add_luts(
    ds: Any, rescale: Any, window: Any, function: str | None, voi_lut: Any, shape: str | None
) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if function is not None:
        ds.VOILUTFunction = function
    if voi_lut is not None:
        first, bits, table = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(table), first, bits]
        item["LUTDescriptor"].VR = "US"
        item.LUTData = [int(v) for v in table]
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = DicomSequence([item])
    if shape is not None:
        ds.PresentationLUTShape = shape


def _add_pixels(
    ds: Any,
    arr: NDArray,
    ts: Any,
    signed: bool,
    bits_allocated: int,
    photometric: str,
    encapsulated: Sequence[bytes] | None,
    quality: int,
) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import convert_color_space
    from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
    stored = arr.astype(dtype[(bits_allocated, signed)])
    if encapsulated is not None:
        ds.PixelData = encapsulate(list(encapsulated))
        ds["PixelData"].VR = "OB"
        return
    if ts == JPEGBaseline8Bit:
        ds.PixelData = encapsulate([_pillow_encode(f, "JPEG", quality=quality) for f in _frames(ds, stored)])
        ds["PixelData"].VR = "OB"
        return
    if ts in (JPEG2000, JPEG2000Lossless):
        kwargs = {"no_jp2": True, "irreversible": ts == JPEG2000}
        ds.PixelData = encapsulate([_pillow_encode(f, "JPEG2000", **kwargs) for f in _frames(ds, stored)])
        ds["PixelData"].VR = "OB"
        return
    if photometric == "YBR_FULL":
        stored = convert_color_space(stored, "RGB", "YBR_FULL")
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    if ts == RLELossless:  # pydicom's own RLE encoder; compress() expects uncompressed File Meta
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, generate_instance_uid=False)


def _frames(ds: Any, stored: NDArray) -> list[NDArray]:
    return list(stored) if int(ds.get("NumberOfFrames") or 1) > 1 else [stored]


def _pillow_encode(frame: NDArray, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt, **kwargs)
    return buf.getvalue()
