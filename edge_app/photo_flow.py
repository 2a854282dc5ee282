"""The app's photo flow (a mixin of ``CxrEdgeApp``): pick or take a photo, confirm the corners, score.

1. *Open a photo* (a file chooser on desktop and Pi, the system picker on Android) or *Photograph a
   film* (Android's camera app) gives a local photo file.
2. The worker reads it and looks for the film (``PredictionService.open_photo``:
   ``cxr_core.capture.load_photo`` + ``find_film``). Found: the confirm screen shows the photo with
   the film outlined. Not found (or two candidates): the refusal screen says why and what to do,
   and offers *Place the corners by hand*, which opens the confirm screen on the photo's inset
   rectangle.
3. The clinician drags the corners (the straightened preview follows) and taps *Score this film*:
   the worker runs ``Predictor.predict_photo(path, corners=...)`` -- capture's quality checks, then
   the same preprocessing, input gate and learned gate as any file. A photo capture refuses
   (glare, blur, tilt, too far...) shows the reason and the fix, with *Adjust the corners*; a
   refusal by the learned gate offers *Score anyway* as for a file, with the same corners.
4. The result screen is the usual one (the straightened film is the image); the exported report
   shows the photo with its outline and the straightened film, and records the corners (detected
   and confirmed) and the quality figures.
5. Every judged photo (scored or refused) is a study in the study log (the history screen), with
   its ``input``: the corners, the quality figures and how the corners were confirmed
   (``StudyLog.record_judged``: judged again, e.g. with other corners, the same study is updated).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge_app.kiosk_engine import file_sha256, summarise
from edge_app.photo import corners_list, max_shift
from edge_app.platform import PickResult
from edge_app.studylog import REFUSED, SCORED
from edge_app.worker import Failed, Outcome, PhotoLoaded, Refused, Scored

logger = logging.getLogger(__name__)

NO_FILM_TITLE = "No film found in this photo"
PHOTO_REFUSED_TITLE = "This photo was not scored"
HAND_PLACEMENT = "Place the corners by hand"
ADJUST_CORNERS = "Adjust the corners"


class PhotoFlowMixin:
    """Photo picking, the confirm screen and photo scoring; see the module docstring."""

    adapter: Any
    service: Any
    busy: bool
    model_ready: bool
    photo_view: Any = None  # edge_app.photo.PhotoView of the photo being confirmed or shown
    photo_record: dict[str, Any] | None = None  # how the scored photo's corners were confirmed

    # ------------------------------------------------------------------ picking

    def pick_photo(self) -> None:
        """*Open a photo*: a photo of a film from the file chooser / system picker."""
        self.adapter.pick_photo(self._on_photo_picked, start_dir=self._last_dir)

    def capture_photo(self) -> None:
        """*Photograph a film*: the camera (Android); the photo goes to the corner editor."""
        self.adapter.capture_image(self._on_photo_picked)

    def _on_photo_picked(self, result: PickResult) -> None:
        if result.path is not None:
            self._last_dir = result.path.parent
            self.open_photo(result.path)
        elif result.error:
            self._show_message("error", "The photo could not be opened", (result.error,), "")

    def open_photo(self, path: Path) -> None:
        """Read the photo ``path`` and find the film (on the worker), then confirm its corners."""
        self._last_activity = time.monotonic()
        if not self.model_ready:
            self._no_bundle(self.first_run_text or "No model bundle is loaded; choose one first.")
            return
        if self.busy:
            return
        self._set_busy(f"Looking for the film in {Path(path).name} ...")
        self.service.open_photo(Path(path), self._on_photo_loaded)

    def _on_photo_loaded(self, outcome: Outcome) -> None:
        self._set_busy(None)
        self.last_outcome = outcome
        if isinstance(outcome, PhotoLoaded):
            view = outcome.view
            self.photo_view = view
            if view.detected:
                self.show_photo_screen()
            else:
                self._show_message(
                    "refused",
                    NO_FILM_TITLE,
                    (view.refusal or "no film was found in the photo",),
                    view.source,
                    fix=view.fix,
                    photo_action=HAND_PLACEMENT,
                )
        elif isinstance(outcome, Failed):
            self._show_message(outcome.kind, outcome.title, (outcome.message,), outcome.source)
        elif isinstance(outcome, Refused):  # a photo the capture refused before any corner was shown
            self._show_message(
                "refused", PHOTO_REFUSED_TITLE, outcome.reasons, outcome.source, fix=outcome.fix
            )

    # ------------------------------------------------------------------ confirm screen

    def show_photo_screen(self, corners: Any = None, hand: bool = False) -> None:
        """The confirm screen on the current photo (``corners``: photo pixels; default: the detected)."""
        screen = self.screens.get_screen("photo")
        screen.show_photo(self.photo_view, corners, hand=hand)
        self.show("photo")

    def edit_photo_corners(self) -> None:
        """From a photo's refusal screen back to the corner editor (by hand, or the corners used)."""
        if self.photo_view is None:
            return
        outcome = self.last_outcome
        if isinstance(outcome, Refused) and outcome.corners is not None:
            self.show_photo_screen(outcome.corners, hand=not self.photo_view.detected)
        else:
            self.show_photo_screen(self.photo_view.corners, hand=True)

    def confirm_photo(self) -> None:
        """*Score this film*: score the photo with the corners on the confirm screen (worker)."""
        screen = self.screens.get_screen("photo")
        view = self.photo_view
        if view is None or self.busy or not self.model_ready or screen.problem:
            return
        corners = screen.photo_corners()
        self.photo_record = {
            "detected_corners": corners_list(view.corners) if view.detected else None,
            "confirmed_corners": corners_list(corners),
            "placed_by_hand": not view.detected,
            "moved_by_clinician_px": round(max_shift(view.corners, corners), 2),
            "photo_size": list(view.photo_size),
            "detection_confidence": round(float(view.confidence), 4) if view.detected else None,
            "detection_refusal": view.refusal or None,
        }
        self._last_activity = time.monotonic()
        self._set_busy(f"Scoring the film in {Path(view.source).name} ...")
        self.service.predict_photo(Path(view.source), corners, self._on_photo_outcome)

    def score_photo_anyway(self, outcome: Refused) -> None:
        """Score anyway for a photo the learned gate refused, with the corners it was refused with."""
        self.service.predict_photo(
            Path(outcome.source), outcome.corners, self._on_photo_outcome, override_gate=True
        )

    def _on_photo_outcome(self, outcome: Outcome) -> None:
        self.log_photo(outcome)
        self._on_outcome(outcome)

    def log_photo(self, outcome: Outcome) -> int | None:
        """Record a judged photo in the study log (history): outcome, corners, quality, confirmation."""
        log = getattr(self, "study_log", None)
        if log is None or not isinstance(outcome, Scored | Refused):
            return None
        fields = summarise(outcome)
        state = fields.pop("state")
        record = dict(fields.pop("input") or {"kind": "photo"})
        record["confirmation"] = self.photo_record
        identity = getattr(self, "_bundle_identity", None)
        try:
            sha256, size, mtime_ns = file_sha256(Path(outcome.source))
            study_id = log.record_judged(
                outcome.source,
                sha256,
                size,
                mtime_ns,
                SCORED if state == SCORED else REFUSED,
                gate=fields.get("gate"),
                findings=fields.get("findings"),
                error=fields.get("error"),
                input=record,
                bundle_sha256=None if identity is None else identity.sha256,
                bundle_revision=None if identity is None else identity.revision,
            )
        except Exception as exc:  # noqa: BLE001 -- the result is shown whatever the log does
            logger.error("the photo %s could not be recorded in the study log: %s", outcome.source, exc)
            return None
        if self.options.watch is not None:  # the kiosk's status strip counts every study
            self._update_health()
        return study_id

    def photo_refusal_message(self, outcome: Refused) -> dict[str, Any]:
        """The refusal screen's extras for a photo: the fix, and the way back to the corners."""
        if not outcome.photo:
            return {}
        return {"fix": outcome.fix, "photo_action": ADJUST_CORNERS if self.photo_view is not None else ""}

    def photo_export(self, prediction: Any) -> dict[str, Any]:
        """``export_report``'s photo arguments for the shown result (empty for an image file)."""
        view = self.photo_view
        if (
            view is None
            or self.photo_record is None
            or prediction is None
            or view.source != prediction.source
        ):
            return {}
        return {"photo": self.photo_record, "photo_rgb": view.display}

    def forget_photo(self) -> None:
        self.photo_view = None
        self.photo_record = None
        self.screens.get_screen("photo").clear()
