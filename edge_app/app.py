"""The Kivy application: state, screen flow and wiring; layout lives in ``edge_app/kv/*.kv``.

Everything that touches a model goes through :class:`~edge_app.worker.PredictionService` (a
worker thread calling cxr_core); outcomes come back on the UI thread via ``Clock.schedule_once``.
The UI itself never decodes, preprocesses, infers or computes a heat map.

Flow: start -> load the bundle (busy) -> start screen (or the first-run screen when there is no
usable bundle) -> a picked image (file chooser / watch folder / command line) -> busy ->
result screen, or a message screen with the refusal's reasons or the decode error. A photo of a
film (file chooser / camera) goes through the confirm screen first (``edge_app.photo_flow``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.lang import Builder
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty, NumericProperty, StringProperty

from edge_app import corner_editor, screens, widgets  # noqa: F401  (registers the widget classes used by kv)
from edge_app.bundles import BUNDLES_DIRNAME, BundleInfo, choose_bundle, describe_bundle, discover_bundles
from edge_app.diagnostics import SelfTestMixin
from edge_app.gate_text import override_text, signals_text
from edge_app.history import HistoryMixin
from edge_app.kiosk import KioskMixin
from edge_app.options import AppOptions
from edge_app.photo_flow import PhotoFlowMixin
from edge_app.platform import PickResult, PlatformAdapter, get_adapter
from edge_app.report import photo_input, photo_summary, shown_warnings
from edge_app.storage import AppSettings
from edge_app.watch import FolderWatcher
from edge_app.worker import Exported, Failed, Loaded, Outcome, PredictionService, Refused, Rendered, Scored

logger = logging.getLogger(__name__)

KV_DIR = Path(__file__).parent / "kv"
KV_FILES = ("widgets.kv", "pickers.kv", "screens.kv", "photo.kv", "portrait.kv", "landscape.kv", "root.kv")
NOTICE = "Decision support only - not a diagnosis. A clinician must review every image."
KIOSK_UI_SCALE = 1.5
_kv_loaded = False


def load_kv() -> None:
    """Load the kv rules once per process (loading twice would duplicate every rule's children)."""
    global _kv_loaded
    if not _kv_loaded:
        for name in KV_FILES:
            Builder.load_file(str(KV_DIR / name))
        _kv_loaded = True


class CxrEdgeApp(PhotoFlowMixin, KioskMixin, HistoryMixin, SelfTestMixin, App):
    """cxr-edge: open a chest radiograph, see 14 findings with heat maps (decision support only)."""

    title = "cxr-edge"
    bundle_title = StringProperty("no model bundle")
    #: The loaded bundle's notices (the synthetic-data mark), shown in a band under the header. It is
    #: set from the bundle only: no setting or option can clear it while that bundle is loaded.
    bundle_notice = StringProperty("")
    #: Training data, validation AUC and threshold reliability of the loaded bundle (settings, reports).
    bundle_provenance = StringProperty("")
    bundle_path = StringProperty("")
    bundles_dir = StringProperty("")
    reports_dir = StringProperty("")
    model_ready = BooleanProperty(False)
    busy = BooleanProperty(False)
    busy_text = StringProperty("")
    status_text = StringProperty("")
    watch_text = StringProperty("")
    kiosk_health_text = StringProperty("")  # queue, last study, failing file (watch folder only)
    first_run_text = StringProperty("")
    warnings_text = StringProperty("")
    #: The shown result was scored at the user's request although the input gate refused it ("" if not).
    override_text = StringProperty("")
    #: Each learned input-gate signal's score of the shown result, one per line ("" without a gate).
    gate_text = StringProperty("")
    #: What the shown result was scored from when it is not a plain file (a photo of a film).
    input_text = StringProperty("")
    report_text = StringProperty("")
    selftest_summary = StringProperty("")
    selftest_state = StringProperty("")  # "" | "running" | "pass" | "fail" (edge_app.diagnostics)
    notice_text = StringProperty(NOTICE)
    selected_label = StringProperty("")
    selected_title = StringProperty("")
    overlay_opacity = NumericProperty(0.6)
    show_overlay = BooleanProperty(True)
    portrait = BooleanProperty(False)
    kiosk = BooleanProperty(False)
    can_capture = BooleanProperty(False)
    ui_scale = NumericProperty(1.0)
    touch_height = NumericProperty(dp(48))
    row_height = NumericProperty(dp(34))
    font_size = NumericProperty(sp(15))

    def __init__(
        self,
        options: AppOptions | None = None,
        adapter: PlatformAdapter | None = None,
        started_at: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.options = options or AppOptions()
        self.adapter = adapter
        self.prediction: Any = None
        self.display: Any = None
        self.last_outcome: Outcome | None = None
        self.last_export: Any = None
        self.service: PredictionService | None = None
        self.settings = AppSettings()
        self.watcher: FolderWatcher | None = None
        self.study_log = None
        self.study_queue = None
        self._watch_queue: list[Path] = []
        self._last_activity = time.monotonic()
        self._last_dir: Path | None = None
        self._started_at = started_at if started_at is not None else time.perf_counter()
        self._window_ready_at = self._started_at
        self._bundle_load_ms: float | None = None
        self._events: list[Any] = []
        self.bind(ui_scale=self._scale_metrics, overlay_opacity=self._remember, show_overlay=self._remember)

    # ------------------------------------------------------------------ set-up

    @property
    def data_dir(self) -> Path:
        return Path(self.options.data_dir) if self.options.data_dir else Path(self.user_data_dir)

    def build(self) -> Any:
        load_kv()
        self.kiosk = self.options.kiosk
        self.ui_scale = KIOSK_UI_SCALE if self.kiosk else 1.0
        self._scale_metrics()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bundles_dir = str(self.data_dir / BUNDLES_DIRNAME)
        self.reports_dir = str(self.data_dir / "reports")
        self.settings = AppSettings.load(self.data_dir)
        self.overlay_opacity = self.settings.overlay_opacity
        self.show_overlay = self.settings.show_overlay
        if self.adapter is None:
            self.adapter = get_adapter()
        self.can_capture = self.adapter.can_capture
        root = Factory.RootLayout()
        self.root = root
        return root

    def on_start(self) -> None:
        self._window_ready_at = time.perf_counter()
        if self.options.size:
            Window.size = self.options.size
        if self.kiosk:
            Window.show_cursor = False
        Window.bind(size=self._on_window_size, on_touch_down=self._touched, on_key_down=self._touched)
        self._on_window_size(Window, Window.size)
        self.service = PredictionService(
            post=lambda fn: Clock.schedule_once(lambda _dt: fn(), 0),
            loader=self.adapter.predictor_loader(),
            opener=self.adapter.model_opener(),
        )
        Path(self.bundles_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.adapter.install_packaged_bundles(Path(self.bundles_dir))
        except Exception:  # a broken APK asset must not stop the app; the first-run screen explains
            logger.exception("installing the packaged bundles failed")
        self._events += self.start_kiosk_services()
        self.reload_bundle()

    def on_stop(self) -> None:
        self.remove_stop_signal()
        for event in self._events:
            event.cancel()
        self._events.clear()
        Window.unbind(size=self._on_window_size, on_touch_down=self._touched, on_key_down=self._touched)
        if self.service is not None:
            self.service.shutdown(timeout=2.0)
        self.close_study_log()

    def _scale_metrics(self, *_args: Any) -> None:
        self.touch_height = dp(48) * self.ui_scale
        self.row_height = dp(34) * self.ui_scale
        self.font_size = sp(15) * self.ui_scale

    def _on_window_size(self, _window: Any, size: tuple[int, int]) -> None:
        self.portrait = size[1] > size[0]

    def on_selected_label(self, _instance: Any, label: str) -> None:
        self.selected_title = label.replace("_", " ")

    def _remember(self, *_args: Any) -> None:
        self.settings.overlay_opacity = float(self.overlay_opacity)
        self.settings.show_overlay = bool(self.show_overlay)

    @property
    def screens(self) -> Any:
        return self.root.ids.screens

    def show(self, name: str) -> None:
        self.screens.current = name

    # ------------------------------------------------------------------ bundle

    def reload_bundle(self) -> None:
        """Choose the bundle (command line, settings, default folder) and load it on the worker."""
        choice = choose_bundle(self.options.bundle, self.settings.bundle, Path(self.bundles_dir))
        if choice.path is None:
            self._no_bundle(choice.reason)
            return
        self._load_bundle(choice.path)

    def choose_bundle(self, path: str) -> None:
        """Use the bundle folder ``path`` (from the settings list or the folder picker) and remember it."""
        self.settings.bundle = str(path)
        self._save_settings()
        self.options = _replace_bundle(self.options)
        self._load_bundle(Path(path))

    def allow_untrusted_bundles(self) -> bool:
        """The opt-in for unsigned / untrusted bundles: ``--allow-untrusted`` or the saved setting."""
        return bool(self.options.allow_untrusted or self.settings.allow_untrusted_bundles)

    def _load_bundle(self, path: Path) -> None:
        info = describe_bundle(path)
        if not info.ok:
            self._no_bundle(f"The bundle {path} cannot be used: {info.error}")
            return
        self.model_ready = False
        self._set_busy(f"Loading model bundle {info.title} ...")
        options = self.options
        kwargs = {
            "model": options.model,
            "runtime": options.runtime,
            "threads": options.threads,
            "allow_untrusted": self.allow_untrusted_bundles(),
        }
        self.service.load(path, lambda outcome: self._on_loaded(outcome, info), **kwargs)

    def _on_loaded(self, outcome: Outcome, info: BundleInfo) -> None:
        self._set_busy(None)
        if isinstance(outcome, Loaded):
            self._bundle_load_ms = outcome.load_ms
            if str(outcome.bundle) != self.bundle_path:
                self.clear_selftest()
            self.bundle_path = str(outcome.bundle)
            self.bundle_title = f"{info.title} | {outcome.model_name} on {outcome.runtime}"
            if outcome.trust:  # loaded only because the user opted in: say so in the header and reports
                self.bundle_title += f" | {outcome.trust}"
            self.bundle_notice = "  |  ".join(n.upper() for n in outcome.notices)
            self.bundle_provenance = "\n".join(outcome.provenance)
            self.on_bundle_ready(outcome.bundle, outcome.model_name, outcome.runtime)
            self.model_ready = True
            self.status_text = ""
            self.show("start")
            if self.options.open_image is not None:
                self.open_path(Path(self.options.open_image))
            return
        message = outcome.message if isinstance(outcome, Failed) else str(outcome)
        self._no_bundle(f"The bundle {info.path} cannot be used: {message}")

    def _no_bundle(self, reason: str) -> None:
        self.model_ready = False
        self.bundle_title = "no model bundle"
        self.bundle_notice = ""
        self.bundle_provenance = ""
        self.bundle_path = ""
        self.clear_selftest()
        self.first_run_text = reason
        self.show("first_run")
        if self.options.exit_after_result:
            self._report_cold_start(Failed("", "bundle", "No model bundle", reason))

    def pick_bundle_folder(self) -> None:
        self.adapter.pick_folder(self._on_bundle_folder, start_dir=Path(self.bundles_dir))

    def _on_bundle_folder(self, result: PickResult) -> None:
        if result.path is not None:
            self.choose_bundle(str(result.path))
        elif result.error:
            self.first_run_text = result.error

    def show_settings(self) -> None:
        screen = self.screens.get_screen("settings")
        screen.show_bundles(discover_bundles(self.bundles_dir), self.bundle_path or None)
        self.show("settings")

    def _save_settings(self) -> None:
        try:
            self.settings.save(self.data_dir)
        except OSError as exc:
            logger.warning("settings cannot be saved in %s: %s", self.data_dir, exc)

    # ------------------------------------------------------------------ images

    def pick_image(self) -> None:
        self.adapter.pick_image(self._on_image_picked, start_dir=self._last_dir)

    def capture_image(self) -> None:
        self.adapter.capture_image(self._on_image_picked)

    def _on_image_picked(self, result: PickResult) -> None:
        if result.path is not None:
            self._last_dir = result.path.parent
            self.open_path(result.path)
        elif result.error:
            self._show_message("error", "The image could not be opened", (result.error,), "")

    def open_path(self, path: Path) -> None:
        """Analyse the image file ``path`` (every route -- picker, camera, watch folder -- ends here)."""
        self._last_activity = time.monotonic()
        if not self.model_ready:
            self._no_bundle(self.first_run_text or "No model bundle is loaded; choose one first.")
            return
        if self.busy:
            self._watch_queue.append(Path(path))
            return
        self._set_busy(f"Analysing {Path(path).name} ...")
        self.service.predict(Path(path), self._on_outcome)

    def _on_outcome(self, outcome: Outcome) -> None:
        self._set_busy(None)
        self._last_activity = time.monotonic()
        self.last_outcome = outcome
        if isinstance(outcome, Scored):
            self._show_result(outcome)
        elif isinstance(outcome, Refused):
            self._show_message(
                "refused",
                "This photo was not scored" if outcome.photo else "This image was not scored",
                outcome.reasons,
                outcome.source,
                overridable=outcome.overridable,
                signals=signals_text(outcome.signals),
                **self.photo_refusal_message(outcome),
            )
        elif isinstance(outcome, Failed):
            self._show_message(outcome.kind, outcome.title, (outcome.message,), outcome.source)
        if self.options.exit_after_result:
            self._report_cold_start(outcome)
        elif self._watch_queue:
            self.open_path(self._watch_queue.pop(0))

    def _show_result(self, outcome: Scored) -> None:
        self.prediction = outcome.prediction
        self.display = outcome.display
        self.selected_label = outcome.display.label
        self.warnings_text = "; ".join(shown_warnings(outcome.prediction))
        self.override_text = override_text(outcome.prediction.gate_override)
        self.gate_text = signals_text(outcome.prediction.gate_signals)
        self.input_text = photo_summary(outcome.prediction) if photo_input(outcome.prediction) else ""
        self.report_text = ""
        screen = self.screens.get_screen("result")
        screen.radiograph.view.reset_view()
        screen.radiograph.view.image.set_images(outcome.display)
        screen.findings.findings_list.show(outcome.prediction.ranked(), outcome.display.label)
        self.status_text = ""
        self.show("result")

    def _show_message(
        self,
        kind: str,
        title: str,
        reasons: Any,
        source: str,
        overridable: bool = False,
        signals: str = "",
        fix: str = "",
        photo_action: str = "",
    ) -> None:
        screen = self.screens.get_screen("message")
        screen.kind, screen.title, screen.reasons, screen.source = kind, title, list(reasons), source
        screen.overridable, screen.signals_text = overridable, signals
        screen.fix, screen.photo_action = fix, photo_action
        self.prediction = None
        self.show("message")

    def score_anyway(self) -> None:
        """The user's explicit choice to score an image only the learned input gate refused.

        The result is marked on screen, in its report and (for a kiosk study) in the study log; a
        refusal by the rules on the file (modality, size, colour) offers no such choice.
        """
        screen = self.screens.get_screen("message")
        outcome = self.last_outcome
        if not (screen.overridable and isinstance(outcome, Refused) and outcome.overridable):
            return
        if self.busy or not self.model_ready:
            return
        logger.warning("%s: the user chose to score it although the input gate refused it", outcome.source)
        self._last_activity = time.monotonic()
        self._set_busy(f"Scoring {Path(outcome.source).name} anyway ...")
        if outcome.photo:  # a photo of a film: scored again with the same corners
            self.score_photo_anyway(outcome)
        elif not self.score_study_anyway(outcome):  # a kiosk study: scored, reported and logged
            self.service.predict(Path(outcome.source), self._on_outcome, override_gate=True)

    def select_finding(self, label: str) -> None:
        """Show the heat map of ``label`` (computed on the worker thread)."""
        if self.prediction is None or label == self.selected_label:
            return
        self.selected_label = label
        self.service.render(self.prediction, label, self._on_rendered)

    def _on_rendered(self, outcome: Outcome) -> None:
        if isinstance(outcome, Rendered) and outcome.prediction is self.prediction:
            if outcome.display.label == self.selected_label:
                self.display = outcome.display
                self.screens.get_screen("result").radiograph.view.image.set_overlay(outcome.display)
        elif isinstance(outcome, Failed):
            self.status_text = outcome.message

    def export_current(self) -> None:
        """Write the PNG + JSON report of the shown result into the reports folder."""
        if self.prediction is None:
            return
        self._set_busy("Writing the report ...")
        self.service.export(
            self.prediction,
            Path(self.reports_dir),
            self.selected_label,
            float(self.overlay_opacity),
            self.bundle_title,
            self._on_exported,
            **self.photo_export(self.prediction),
        )

    def _on_exported(self, outcome: Outcome) -> None:
        self._set_busy(None)
        if isinstance(outcome, Exported):
            self.last_export = outcome.report
            self.report_text = f"Report saved: {outcome.report.png.name} and .json in {self.reports_dir}"
        elif isinstance(outcome, Failed):
            self.report_text = f"Report not saved: {outcome.message}"

    def go_home(self) -> None:
        """Back to the start screen; forget the shown image (a kiosk must not keep it on screen)."""
        self.adapter.dismiss()
        self.prediction = None
        self.display = None
        self.override_text = self.gate_text = self.input_text = ""
        screen = self.screens.get_screen("result")
        screen.radiograph.view.image.set_images(None)
        self.forget_photo()
        self._save_settings()
        self.show("start" if self.model_ready else "first_run")

    def _set_busy(self, text: str | None) -> None:
        self.busy = text is not None
        self.busy_text = text or ""

    def _report_cold_start(self, outcome: Outcome) -> None:
        """``--exit-after-result``: print timings as one JSON line and quit."""
        record = {
            "outcome": type(outcome).__name__,
            "main_to_result_s": round(time.perf_counter() - self._started_at, 3),
            "main_to_window_s": round(self._window_ready_at - self._started_at, 3),
            "bundle_load_ms": None if self._bundle_load_ms is None else round(self._bundle_load_ms, 1),
            "timings_ms": getattr(getattr(outcome, "prediction", None), "timings_ms", None),
        }
        print(json.dumps(record), flush=True)
        self.stop()


def _replace_bundle(options: AppOptions) -> AppOptions:
    """The options without an explicit bundle (a bundle chosen in the settings takes over)."""
    from dataclasses import replace

    return replace(options, bundle=None)
