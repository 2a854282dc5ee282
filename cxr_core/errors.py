"""Exception types of cxr-edge.

Every error names the value it received and what was expected, so a clinician's
screen or a log line says exactly what is wrong (docs/architecture.md, "Conventions").
"""

from __future__ import annotations

from pathlib import Path


class CxrEdgeError(Exception):
    """Base class of every error cxr-edge raises on purpose."""


class ImageDecodeError(CxrEdgeError, ValueError):
    """A file could not be turned into a grey image.

    ``path`` names the file, ``reason`` says what was wrong and what was expected.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        from cxr_core.text import printable

        self.path = str(path)
        self.reason = reason
        super().__init__(f"{printable(self.path)}: {reason}")


class UnsupportedImageError(ImageDecodeError):
    """The file is not an image format cxr-edge reads (PNG, JPEG, DICOM)."""


class ImageTooLargeError(ImageDecodeError):
    """The image is larger than the decompression-bomb pixel limit."""


class ImageSizeError(ImageDecodeError):
    """The image has zero or implausible dimensions."""


class MultiFrameImageError(ImageDecodeError):
    """The file holds several frames where one radiograph was expected."""


class PreprocessSpecError(CxrEdgeError, ValueError):
    """A PreprocessSpec field has an invalid value."""


class PreprocessInputError(CxrEdgeError, ValueError):
    """An image handed to preprocessing is not a finite 2-D array, is empty, or does not fit the spec."""


class ScoreInputError(CxrEdgeError, ValueError):
    """Labels, scores or probabilities given to a metric, calibration or aggregation have the wrong
    shape or invalid values (NaN, labels other than 0/1, probabilities outside [0, 1])."""


class DatasetError(CxrEdgeError, ValueError):
    """A dataset on disk does not match its expected layout (missing columns, labels or files)."""


class MissingDependencyError(CxrEdgeError, ImportError):
    """An optional dependency is not installed; the message carries the pip command that fixes it."""
