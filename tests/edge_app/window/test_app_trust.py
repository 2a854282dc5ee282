"""The real app and bundle trust: an unsigned bundle is refused with the remedy, and the opt-in
(the ``allow_untrusted_bundles`` setting) loads it with the status in the header for all to see."""

from __future__ import annotations

from pathlib import Path

from tests.edge_app.window.conftest import start_app


def test_unsigned_bundle_is_refused_then_shown_when_opted_in(
    app_bundle_copy: Path, tmp_path: Path, image_files
) -> None:  # type: ignore[no-untyped-def]
    (app_bundle_copy / "manifest.sig").unlink()
    app, session = start_app(tmp_path / "data", bundle=app_bundle_copy)
    try:
        session.wait_until(lambda: app.screens.current == "first_run", 60, "first-run screen")
        text = app.screens.get_screen("first_run").ids.first_run_text.text
        assert "is not signed" in text and "--allow-untrusted" in text
        assert not app.model_ready and app.bundle_title == "no model bundle"

        app.settings.allow_untrusted_bundles = True  # the saved setting a kiosk admin would set
        app.reload_bundle()
        session.wait_until(lambda: app.model_ready, 60, "bundle loaded with the opt-in")
        assert "UNSIGNED bundle (loaded with --allow-untrusted)" in app.bundle_title
        app.open_path(image_files["png"])
        session.wait_until(lambda: app.prediction is not None and not app.busy, 60, "prediction")
        assert app.screens.current == "result", (app.screens.current, app.last_outcome)
        assert any(w.startswith("bundle trust: UNSIGNED") for w in app.prediction.warnings)
        assert "bundle trust: UNSIGNED" in app.warnings_text  # the visible warnings line
    finally:
        session.stop()
