"""The few images both sides score with ``cxr-predict``: drawn phantoms as PNG, JPEG and DICOM.

Drawn on the host with :func:`training.data.phantom.render_phantom` (numpy and Pillow, no torch),
one file per container so that every decoder of the device path runs on arm64: Pillow's PNG and
libjpeg-turbo (SIMD code differs between x86 and ARM) and pydicom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tools.arm64_check.errors import StepFailedError

#: (findings drawn, container) of each phantom, in order; ``--phantoms N`` takes the first N.
PLAN: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Cardiomegaly",), "png"),
    (("Effusion", "Atelectasis"), "jpeg"),
    ((), "dicom"),
    (("Pneumothorax",), "png"),
    (("Mass", "Nodule"), "jpeg"),
    (("Edema",), "dicom"),
)
MAX_PHANTOMS = len(PLAN)


def _write_dicom(path: Path, pixels: NDArray[np.uint8]) -> None:
    from cxr_core.optional import require

    require("pydicom", "dicom", "writing the DICOM phantom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.ViewPosition = "PA"
    ds.PatientID = "PHANTOM"
    stored = (pixels.astype(np.uint16) * 16).astype(np.uint16)  # 12-bit stored in 16
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_phantoms(folder: Path, count: int, size: int = 320) -> list[Path]:
    """Write the first ``count`` phantoms of :data:`PLAN` into ``folder``; their paths, in order."""
    if not 1 <= count <= MAX_PHANTOMS:
        raise StepFailedError(f"--phantoms {count}: expected 1..{MAX_PHANTOMS}")
    from training.data.phantom import render_phantom

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (findings, container) in enumerate(PLAN[:count]):
        pixels = render_phantom(findings, seed=100 + index, size=size).image
        suffix = {"png": "png", "jpeg": "jpg", "dicom": "dcm"}[container]
        path = folder / f"phantom_{index:02d}.{suffix}"
        if container == "dicom":
            _write_dicom(path, pixels)
        else:
            Image.fromarray(pixels).save(path, **({"quality": 92} if container == "jpeg" else {}))
        paths.append(path)
    return paths
