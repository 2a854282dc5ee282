"""The platform services the app needs, behind one small interface (docs/architecture.md, "Conventions").

The app asks its adapter to pick an image, capture one with the camera, or pick a folder; the
adapter answers through a callback, on the UI thread, with a local file path (content from an
Android document provider or the camera is first copied into the app's cache folder) or with an
error message. Desktop and Raspberry Pi use :mod:`edge_app.platform.desktop` (Kivy's own file
chooser); Android uses :mod:`edge_app.platform.android` (the system picker and camera via pyjnius).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PickResult:
    """What a picker returns: a local ``path``, or nothing with ``error`` (None when cancelled)."""

    path: Path | None = None
    error: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.path is None and self.error is None


OnPicked = Callable[[PickResult], None]


class PlatformAdapter(ABC):
    """File picking, camera capture and packaged bundles for one platform."""

    #: Short platform name for logs ("desktop", "android").
    name: str = "abstract"

    @property
    @abstractmethod
    def can_capture(self) -> bool:
        """Whether :meth:`capture_image` is available (a camera app on Android; not on desktop)."""

    @abstractmethod
    def pick_image(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        """Let the user choose an image file; ``on_picked`` gets the result on the UI thread."""

    @abstractmethod
    def pick_folder(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        """Let the user choose a folder (a model bundle); ``on_picked`` gets the result."""

    def pick_photo(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        """Let the user choose a phone photo of a film (JPEG or PNG); default: the image picker."""
        self.pick_image(on_picked, start_dir=start_dir)

    def capture_image(self, on_picked: OnPicked) -> None:
        """Take a photo of a radiograph with the camera (only where :attr:`can_capture`)."""
        on_picked(PickResult(error=f"camera capture is not available on {self.name}"))

    def install_packaged_bundles(self, destination: Path) -> list[Path]:
        """Copy bundles shipped inside the app package into ``destination``; desktop ships none."""
        return []

    def predictor_loader(self) -> Callable[..., Any] | None:
        """How to load a Predictor here; None = ``cxr_core.predictor.Predictor.load`` (desktop, Pi)."""
        return None

    def model_opener(self) -> Callable[..., Any] | None:
        """How the self-test opens one model here; None = ``cxr_core.runtime.open_model`` (desktop, Pi)."""
        return None

    def dismiss(self) -> None:  # noqa: B027  (optional hook: adapters without pickers need nothing)
        """Close any picker this adapter has open (the kiosk's inactivity reset calls it)."""
