"""libjpeg's own verdict on a JPEG's data: a strict decode that refuses the file on any warning.

libjpeg meets most damage to entropy-coded data (a Huffman code that does not decode, a scan that
ends before its last block, bytes left over before the next marker) as a *warning*, fills in what
is missing and carries on; Pillow drops the warning and returns the pixels. The structural and
pixel checks of :mod:`cxr_core.jpeg_integrity` see part of that damage. This module sees what the
decoder itself noticed: it decodes the file a second time with ``simplejpeg`` (libjpeg-turbo,
``strict=True``: the first warning becomes an error) and refuses the file with libjpeg's message,
e.g. ``Corrupt JPEG data: premature end of data segment`` or ``Corrupt JPEG data: 12 extraneous
bytes before marker 0xd9``.

* **A check, not the decoder.** The pixels still come from Pillow (EXIF orientation, MPO, colour
  handling and their tests stay as they are); the strict decode runs at 1/8 scale
  (:data:`CHECK_SCALE`), which entropy-decodes every coefficient of every component, as a full
  decode does, and skips most of the inverse DCT and all colour conversion. Measured in
  docs/reliability.md: the same files are refused at full and at 1/8 scale; 1/8 saves about 40 %
  of a baseline file's check (a progressive file's check is nearly all entropy decoding).
* **Every warning refuses**, except one that says nothing about the image data: an unknown JFIF
  revision number in the APP0 segment that follows SOI. For that one the check is run again on a
  copy whose JFIF major version reads 1, so the rest of the file is still checked. A fatal libjpeg
  error (a file the strict decoder cannot read at all) refuses too: libjpeg-turbo is also what
  Pillow decodes with, so such a file is damaged, not merely unusual.
* **DICOM too.** The JPEG frame of a JPEG Baseline DICOM (or 8-bit JPEG Extended), which pydicom
  decodes through Pillow just as silently, goes through the same check
  (:mod:`cxr_core.imaging_dicom`).
* **Optional at run time.** ``simplejpeg`` ships wheels for Linux x86_64 and aarch64 (the Pi),
  Windows and macOS, and is in the ``runtime`` and ``pi`` extras. Where it cannot be imported
  (Android's python-for-android has no recipe for it; 32-bit ARM has no wheel) the check is skipped,
  the reason is logged once, and the checks of :mod:`cxr_core.jpeg_integrity` still run.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

from cxr_core.errors import MissingDependencyError
from cxr_core.imaging_common import CorruptImageError
from cxr_core.optional import require

logger = logging.getLogger(__name__)

#: The one libjpeg warning that is about metadata, not image data (``JWRN_JFIF_MAJOR``).
JFIF_REVISION_WARNING = "Warning: unknown JFIF revision number"
#: The strict decode's scale: 1/8 (one pixel per 8x8 block) still entropy-decodes every coefficient.
CHECK_SCALE = 8
_JFIF_APP0 = b"\xff\xd8\xff\xe0"
_JFIF_ID = b"JFIF\x00"


@functools.cache
def strict_decoder() -> ModuleType | None:
    """``simplejpeg``, or None (logged once, with the reason and how to install it) when it is missing."""
    try:
        return require("simplejpeg", extra="runtime", purpose="The strict JPEG integrity check")
    except MissingDependencyError as exc:
        logger.warning(
            "JPEG strict integrity check skipped: %s. The structural and pixel checks of "
            "cxr_core.jpeg_integrity still run, but damaged scan data that leaves no visible mark "
            "is not refused without it.",
            exc,
        )
        return None


def first_warning(decoder: ModuleType, data: bytes, scale: int = CHECK_SCALE) -> str | None:
    """libjpeg's first warning or error decoding ``data`` strictly at 1/``scale`` of its size (None: the
    file decodes cleanly)."""
    try:
        colourspace = decoder.decode_jpeg_header(data)[2]
        # simplejpeg picks the smallest size of at least min_height x min_width (and at least
        # min_factor times smaller): 1 x 1 with factor 8 is libjpeg's smallest, 1/8; 0 x 0 is full size
        least = 1 if scale > 1 else 0
        decoder.decode_jpeg(
            data,
            colorspace="CMYK" if colourspace in ("CMYK", "YCCK") else "GRAY",
            strict=True,
            min_height=least,
            min_width=least,
            min_factor=scale,
        )
    except ValueError as exc:
        message = str(exc)
        if message.startswith(JFIF_REVISION_WARNING):
            patched = _jfif_major_one(data)
            if patched is not None:
                return first_warning(decoder, patched, scale)
        return message or "no message"
    return None


def _jfif_major_one(data: bytes) -> bytes | None:
    """``data`` with the JFIF major version of the APP0 segment after SOI set to 1 (None: no such
    segment, or it already says 1)."""
    version_at = len(_JFIF_APP0) + 2 + len(_JFIF_ID)
    if not data.startswith(_JFIF_APP0) or data[version_at - len(_JFIF_ID) : version_at] != _JFIF_ID:
        return None
    if version_at >= len(data) or data[version_at] == 1:
        return None
    return data[:version_at] + b"\x01" + data[version_at + 1 :]


def check_strict(data: bytes, name: str, what: str = "JPEG data") -> bool:
    """Refuse a JPEG that libjpeg warns about; return whether the check ran (False: no simplejpeg).

    ``what`` names the data in the message (a DICOM's JPEG frame, say)."""
    decoder = strict_decoder()
    if decoder is None:
        return False
    message = first_warning(decoder, data)
    if message is not None:
        raise CorruptImageError(
            name,
            f"libjpeg reports damaged {what} ({message}); the decoder would fill in or guess the "
            "damaged part. Expected an intact JPEG file",
        )
    return True
