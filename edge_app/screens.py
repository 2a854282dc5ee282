"""Screens of the app (layouts in ``kv/screens.kv``, ``kv/portrait.kv``, ``kv/landscape.kv``).

The result screen owns three panels -- the radiograph (zoom/pan, overlay controls), the findings
list and the actions -- and places them into one of two layouts: :class:`PortraitResult`
(phones: image on top, findings below) or :class:`LandscapeResult` (kiosks, desktops: image
left, findings right). :meth:`ResultScreen.apply_layout` re-parents the same panel instances, so
switching on a window resize or rotation keeps the state (selection, zoom, textures).
"""

from __future__ import annotations

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
    ``signals_text``: each learned signal's score against its threshold.
    """

    kind = StringProperty("refused")  # "refused" | "decode" | "error"
    title = StringProperty("")
    reasons = ListProperty([])
    source = StringProperty("")
    reasons_text = StringProperty("")
    overridable = BooleanProperty(False)
    signals_text = StringProperty("")

    def on_reasons(self, _instance: object, reasons: list) -> None:
        self.reasons_text = "\n".join(f"- {reason}" for reason in reasons)


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
