"""Desktop and Raspberry Pi: Kivy's own file chooser in a popup (layout in ``kv/pickers.kv``).

There is no camera route on desktop: a kiosk gets its images from the watch folder, and a phone
photo of a film is opened as a file (*Open a photo*: JPEG or PNG, then the corner editor).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kivy.factory import Factory
from kivy.properties import ListProperty, ObjectProperty, StringProperty
from kivy.uix.popup import Popup

from edge_app.platform.base import OnPicked, PickResult, PlatformAdapter
from edge_app.watch import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

#: What *Open a photo* lists: what phone cameras and screenshot tools write.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


class FilePickerPopup(Popup):
    """A popup with a file chooser; :meth:`confirm` hands the selection to ``on_picked``."""

    start_path = StringProperty("")
    filters = ListProperty([])
    dirselect = ObjectProperty(False)
    picked_callback = ObjectProperty(None, allownone=True)

    def confirm(self) -> None:
        chooser = self.ids.chooser
        selection = list(chooser.selection)
        if self.dirselect and not selection:
            selection = [chooser.path]  # "use this folder"
        if not selection:
            return
        self._finish(PickResult(path=Path(selection[0])))

    def cancel(self) -> None:
        self._finish(PickResult())

    def _finish(self, result: PickResult) -> None:
        callback, self.picked_callback = self.picked_callback, None
        self.dismiss(animation=False)  # gone at once: a fading popup would still swallow touches
        if callback is not None:
            callback(result)


Factory.register("FilePickerPopup", cls=FilePickerPopup)


class DesktopAdapter(PlatformAdapter):
    """File chooser popups; no camera."""

    name = "desktop"

    def __init__(self) -> None:
        self.popup: FilePickerPopup | None = None

    @property
    def can_capture(self) -> bool:
        return False

    def _open(
        self,
        title: str,
        on_picked: OnPicked,
        start_dir: Path | None,
        dirselect: bool,
        suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    ) -> None:
        self.dismiss()
        start = Path(start_dir) if start_dir and Path(start_dir).is_dir() else Path.home()
        patterns = [f"*{s}" for s in suffixes] + [f"*{s.upper()}" for s in suffixes]
        filters = [] if dirselect else patterns
        self.popup = FilePickerPopup(
            title=title,
            start_path=str(start),
            filters=filters,
            dirselect=dirselect,
            picked_callback=on_picked,
        )
        self.popup.open()

    def pick_image(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        self._open("Open a chest radiograph (PNG, JPEG or DICOM)", on_picked, start_dir, dirselect=False)

    def pick_photo(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        title = "Open a phone photo of a film (JPEG or PNG)"
        self._open(title, on_picked, start_dir, dirselect=False, suffixes=PHOTO_SUFFIXES)

    def pick_folder(self, on_picked: OnPicked, start_dir: Path | None = None) -> None:
        title = "Choose a model bundle folder (it holds manifest.json)"
        self._open(title, on_picked, start_dir, dirselect=True)

    def dismiss(self) -> None:
        if self.popup is not None:
            popup, self.popup = self.popup, None
            popup.picked_callback = None
            popup.dismiss(animation=False)
