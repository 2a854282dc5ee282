"""Screens of the app (layouts in ``kv/screens.kv``, ``kv/portrait.kv``, ``kv/landscape.kv``).

The result screen owns three panels -- the radiograph (zoom/pan, overlay controls), the findings
list and the actions -- and places them into one of two layouts: :class:`PortraitResult`
(phones: image on top, findings below) or :class:`LandscapeResult` (kiosks, desktops: image
left, findings right). :meth:`ResultScreen.apply_layout` re-parents the same panel instances, so
switching on a window resize or rotation keeps the state (selection, zoom, textures).
"""

from __future__ import annotations

from pathlib import Path

from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget


class StartScreen(Screen):
    """Open an image (or take a photo); in kiosk mode it also says which folder is watched."""


class FirstRunScreen(Screen):
    """Shown when no usable model bundle is found: says why, where to put one, and offers to choose."""


class MessageScreen(Screen):
    """A refusal or an error instead of scores: a title, the reasons, the file.

    ``overridable``: only the learned input gate refused the image, so "Score anyway" is offered;
    ``signals_text``: each learned signal's score against its threshold. For a photo of a film:
    ``fix`` says what to do ("avoid the reflection"...), and ``photo_action`` names the button back
    to the corner editor ("Place the corners by hand" when no film was found, else "Adjust the
    corners"; "" for other inputs).
    """

    kind = StringProperty("refused")  # "refused" | "decode" | "error"
    title = StringProperty("")
    reasons = ListProperty([])
    source = StringProperty("")
    reasons_text = StringProperty("")
    overridable = BooleanProperty(False)
    signals_text = StringProperty("")
    fix = StringProperty("")
    photo_action = StringProperty("")

    def on_reasons(self, _instance: object, reasons: list) -> None:
        self.reasons_text = "\n".join(f"- {reason}" for reason in reasons)


class PhotoScreen(Screen):
    """Confirm a photographed film: drag its corners on the photo, see the straightened film, score it.

    :meth:`show_photo` takes an ``edge_app.photo.PhotoView`` (the photo and the detected corners,
    or the inset rectangle to place them by hand). Every corner release (and, while dragging, at
    most every 0.15 s) redraws the preview with ``cxr_core.capture.rectify`` on a 512 px copy of
    the photo at :data:`~edge_app.photo.PREVIEW_SIDE` px, and checks that the corners can outline a
    film (``problem``; the confirm button waits for it to clear). :meth:`photo_corners` are the corners
    in the original photo's pixels, for ``Predictor.predict_photo``.
    """

    title = StringProperty("")
    hint = StringProperty("")
    problem = StringProperty("")
    info = StringProperty("")
    preview_texture = ObjectProperty(None, allownone=True)
    preview_ms = NumericProperty(0.0)
    view = ObjectProperty(None, allownone=True)
    start_corners = None  # what "Reset corners" goes back to (photo pixels)
    _preview_source = None  # (a small copy of the photo, its pixels per photo pixel)

    def on_kv_post(self, base_widget: Widget) -> None:
        from kivy.clock import Clock

        self._preview_trigger = Clock.create_trigger(lambda _dt: self.update_preview(), 0.15)

    @property
    def editor(self):  # type: ignore[no-untyped-def]
        return self.ids.editor

    def show_photo(self, view, corners=None, hand: bool = False) -> None:  # type: ignore[no-untyped-def]
        """Show ``view``'s photo with ``corners`` (photo pixels; default: the view's own corners)."""
        from edge_app.photo import as_corners
        from edge_app.widgets import texture_from_rgb

        self.view = view
        self._preview_source = view.preview_source()
        start = as_corners(view.corners if corners is None else corners)
        self.start_corners = start
        editor = self.editor
        editor.texture = texture_from_rgb(view.display)
        editor.image_size = list(view.display_size)
        self.set_corners(start)
        name = Path(view.source).name
        if view.detected and not hand:
            self.title = f"Check the film's corners: {name}"
            self.hint = (
                "The outline is where the film was found. Drag a corner if it is off; the yellow "
                "side is the top of the film. Then score the straightened film."
            )
        else:
            self.title = f"Place the film's corners: {name}"
            self.hint = (
                "Drag the four corners onto the film's corners (the yellow side is its top), check "
                "the straightened film on the right, then score it."
            )
        self.info = "" if not view.refusal else f"No film was found automatically: {view.refusal}"

    def set_corners(self, corners) -> None:  # type: ignore[no-untyped-def]
        display = self.view.to_display(corners)
        self.editor.corners = [float(v) for v in display.reshape(-1)]
        self.corners_changed()

    def photo_corners(self):  # type: ignore[no-untyped-def]
        """The editor's corners in the original photo's pixels, (4, 2)."""
        import numpy as np

        return self.view.to_photo(np.asarray(self.editor.corners, dtype=np.float64).reshape(4, 2))

    def rotate(self) -> None:
        """Read the film a quarter turn clockwise (the top side moves to the next edge)."""
        from edge_app.photo import rotate_reading

        self.set_corners(rotate_reading(self.photo_corners()))

    def reset(self) -> None:
        if self.start_corners is not None:
            self.set_corners(self.start_corners)

    def schedule_preview(self) -> None:
        self._preview_trigger()

    def corners_changed(self) -> None:
        self._preview_trigger.cancel()
        self.update_preview()

    def update_preview(self) -> None:
        """Check the corners; redraw the straightened film from the displayed photo."""
        import time

        from cxr_core.capture import rectify
        from edge_app.photo import PREVIEW_SIDE, preview_pixels, quad_problem
        from edge_app.widgets import texture_from_rgb

        view = self.view
        if view is None:
            return
        width, height = view.photo_size
        corners = self.photo_corners()
        self.problem = quad_problem(corners, width, height) or ""
        if self.problem:
            return
        start = time.perf_counter()
        small, scale = self._preview_source
        rectified = rectify(small, corners * scale, long_side=PREVIEW_SIDE)
        self.preview_texture = texture_from_rgb(preview_pixels(rectified))
        self.preview_ms = (time.perf_counter() - start) * 1000.0

    def clear(self) -> None:
        self.view = None
        self.start_corners = self._preview_source = None
        self.preview_texture = None
        self.editor.texture = None
        self.editor.corners = []


class SettingsScreen(Screen):
    """Pick the model bundle (the ones found in the default folder, or any folder); run the self-test."""

    def show_bundles(self, infos: list, current: str | None) -> None:
        box = self.ids.bundle_list
        box.clear_widgets()
        for info in infos:
            text = f"{info.name}  {info.version}" if info.ok else f"{info.name}: not usable ({info.error})"
            button = Factory.BundleButton(text=text)
            button.bundle_path = str(info.path)  # kv-declared properties: set after construction
            button.usable = info.ok
            button.chosen = current is not None and str(info.path) == str(current)
            box.add_widget(button)
        if not infos:
            box.add_widget(Factory.AppLabel(text="No bundles in the default folder."))

    def show_selftest(self, lines: list) -> None:
        """One row per model of the self-test (``edge_app.diagnostics.SelfTestLine``); [] clears."""
        box = self.ids.selftest_list
        box.clear_widgets()
        for line in lines:
            row = Factory.SelfTestRow()
            row.model, row.runtime = line.model, line.runtime  # kv-declared properties
            row.status, row.figures = line.status, line.figures
            box.add_widget(row)


class HistoryScreen(Screen):
    """The study log by day (newest first), filtered by state and finding (``edge_app.history``)."""

    retention = StringProperty("")
    message = StringProperty("")
    findings = ListProperty([])
    shown = ListProperty([])  # the study ids listed, in order

    def show_studies(self, studies: list, findings: list) -> None:
        from edge_app.history import day_heading, row_text

        self.findings = findings
        box = self.ids.study_list
        box.clear_widgets()
        heading = None
        for study in studies:
            day = day_heading(study.arrived_at)
            if day != heading:
                heading = day
                box.add_widget(Factory.DayHeading(text=day))
            row = Factory.StudyRow(text=row_text(study))
            row.study_id = study.id  # kv-declared property: set after construction
            row.state_name = study.state
            box.add_widget(row)
        if not studies:
            box.add_widget(Factory.AppLabel(text="No studies match."))
        self.shown = [s.id for s in studies]

    def rows(self) -> list:
        return [w for w in reversed(self.ids.study_list.children) if hasattr(w, "study_id")]


class StudyScreen(Screen):
    """One logged study reopened: its report image (radiograph, heat map, findings) and its record."""

    study_id = NumericProperty(0)
    title = StringProperty("")
    details = StringProperty("")
    report = StringProperty("")  # the report PNG, "" when there is none (refused, deleted)
    source = StringProperty("")  # the image, while it still holds the study's content ("" otherwise)

    def show_study(self, study_id: int, title: str, details: str, report: str) -> None:
        self.study_id, self.title, self.details, self.report = study_id, title, details, report
        image = self.ids.report_image
        if report:
            image.source = report
            image.reload()


class ResultLayout(BoxLayout):
    """Base of the two arrangements; kv gives each three slots: viewer, findings, actions."""


class PortraitResult(ResultLayout):
    pass


class LandscapeResult(ResultLayout):
    pass


class ResultScreen(Screen):
    """The image with its overlay, the ranked findings and the actions, in a portrait or landscape layout."""

    portrait = BooleanProperty(False)
    radiograph = ObjectProperty(None, allownone=True)
    findings = ObjectProperty(None, allownone=True)
    actions = ObjectProperty(None, allownone=True)
    layout = ObjectProperty(None, allownone=True)

    def on_kv_post(self, base_widget: Widget) -> None:
        self.radiograph = Factory.RadiographPanel()
        self.findings = Factory.FindingsPanel()
        self.actions = Factory.ResultActions()
        self.apply_layout(self.portrait)

    def on_portrait(self, _instance: object, portrait: bool) -> None:
        self.apply_layout(portrait)

    def apply_layout(self, portrait: bool) -> None:
        """Place the three panels into a fresh :class:`PortraitResult` or :class:`LandscapeResult`."""
        if self.radiograph is None:
            return
        wanted = PortraitResult if portrait else LandscapeResult
        if isinstance(self.layout, wanted):
            return
        layout = wanted()
        for panel, slot in (
            (self.radiograph, "viewer_slot"),
            (self.findings, "findings_slot"),
            (self.actions, "actions_slot"),
        ):
            if panel.parent is not None:
                panel.parent.remove_widget(panel)
            layout.ids[slot].add_widget(panel)
        container = self.ids.container
        container.clear_widgets()
        container.add_widget(layout)
        self.layout = layout
