"""Render the app's main screens offscreen and save them as PNGs (docs/screenshots/).

    python -m edge_app.tools.screenshots --bundle path/to/bundle [--out docs/screenshots]

Runs the real app in an offscreen OpenGL window (edge_app.headless) -- no display needed -- and
saves: the first-run screen (no bundle), a result with its heat map (desktop landscape and phone
portrait), the PNG report exported from it, a refusal, the kiosk layout, and the photo flow (the
confirm screen with the film's corners, and the report of the scored photo) when
``training.data.photo_render`` can draw a phone photo of a phantom film. The sample
radiograph is a synthetic phantom from ``training.data.phantom`` when the training package is
importable (no torch needed), else a simple drawn one; ``--image`` uses your own file. The
colour "photo" that gets refused is drawn here. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LANDSCAPE = (1280, 800)
PORTRAIT = (540, 1080)


def sample_radiograph(path: Path, size: int = 512) -> Path:
    """A phantom chest film with cardiomegaly and an effusion (or a drawn stand-in), as a PNG."""
    try:
        from training.data.phantom import render_phantom

        pixels = np.asarray(render_phantom(["Cardiomegaly", "Effusion"], seed=3, size=size).image)
    except ImportError:
        y, x = np.mgrid[0:size, 0:size] / size
        lungs = np.exp(-(((x - 0.32) / 0.15) ** 2 + ((y - 0.5) / 0.28) ** 2))
        lungs += np.exp(-(((x - 0.68) / 0.15) ** 2 + ((y - 0.5) / 0.28) ** 2))
        pixels = np.clip(0.8 - 0.5 * lungs + 0.2 * np.exp(-(((x - 0.52) / 0.1) ** 2)), 0, 1)
    grey = np.asarray(pixels, dtype=np.float64)
    if grey.max() > 1.0:
        grey = grey / 255.0
    Image.fromarray(np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def sample_photo(path: Path, size: int = 512) -> Path:
    """A colourful picture (sky, grass, sun): what the input gate must refuse."""
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.zeros((size, size, 3))
    rgb[..., 0] = 0.3 + 0.5 * (y > 0.6)
    rgb[..., 1] = 0.5 + 0.4 * (y > 0.6)
    rgb[..., 2] = 0.95 - 0.8 * (y > 0.6)
    sun = ((x - 0.75) ** 2 + (y - 0.25) ** 2) < 0.01
    rgb[sun] = (1.0, 0.85, 0.2)
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(path, quality=92)
    return path


def sample_film_photo(path: Path, seed: int = 0) -> Path | None:
    """A phone photo of a phantom film on a light box (training.data.photo_render), as a JPEG; None
    when the training package is not importable."""
    try:
        from training.data.photo_render import render_photo
    except ImportError:
        return None
    film = Image.open(sample_radiograph(path.with_suffix(".film.png"), 560)).convert("L")
    film = film.resize((480, 560), Image.Resampling.BILINEAR)
    photo = render_photo(np.asarray(film), np.random.default_rng(seed), kind="lightbox")
    if photo.jpeg:
        path.write_bytes(photo.jpeg)
    else:
        Image.fromarray(photo.rgb).save(path, quality=90)
    return path


def _photo_shots(app, session, photo: Path, out: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """The confirm screen with the detected corners, and the report of the photo scored with them."""
    app.go_home()
    app.open_photo(photo)
    session.wait_until(lambda: not app.busy and app.screens.current != "start", 120, "photo screen")
    if app.screens.current != "photo":
        return []
    saved = [session.save_screenshot(out / "photo-confirm.png")]
    app.confirm_photo()
    session.wait_until(lambda: not app.busy and app.screens.current != "photo", 120, "photo scored")
    if app.prediction is None:
        return saved
    import io

    from edge_app.report import render_report
    from edge_app.storage import write_atomic

    view = app.photo_view
    buffer = io.BytesIO()
    render_report(
        app.prediction,
        app.selected_label,
        float(app.overlay_opacity),
        app.bundle_title,
        view.display,
        view.photo_size[0],
    ).save(buffer, format="PNG", optimize=True)
    saved.append(write_atomic(out / "photo-report.png", buffer.getvalue()))
    return saved


def _session(options: dict, size: tuple[int, int]):  # type: ignore[no-untyped-def]
    from edge_app.app import CxrEdgeApp
    from edge_app.headless import HeadlessSession
    from edge_app.options import AppOptions

    app = CxrEdgeApp(options=AppOptions(**options))
    return app, HeadlessSession(app, size=size).start()


def _scored(app, session, image: Path) -> None:  # type: ignore[no-untyped-def]
    session.wait_until(lambda: app.model_ready, 120, "bundle loaded")
    app.open_path(image)
    session.wait_until(lambda: not app.busy and app.screens.current != "start", 120, "result")


def _report(app, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The exported PNG report of the shown result (drawn from the Prediction, not the screen)."""
    import io

    from edge_app.report import render_report
    from edge_app.storage import write_atomic

    buffer = io.BytesIO()
    render_report(app.prediction, app.selected_label, float(app.overlay_opacity), app.bundle_title).save(
        buffer, format="PNG", optimize=True
    )
    return write_atomic(path, buffer.getvalue())


def capture(bundle: Path, out: Path, image: Path | None = None) -> list[Path]:
    """Save the screenshots into ``out``; return their paths."""
    work = Path(tempfile.mkdtemp(prefix="cxr-edge-shots-"))
    image = image or sample_radiograph(work / "phantom_pa.png")
    photo = sample_photo(work / "holiday_photo.jpg")
    film_photo = sample_film_photo(work / "film_on_lightbox.jpg")
    saved = []

    app, session = _session({"data_dir": work / "empty"}, LANDSCAPE)
    session.wait_until(lambda: app.screens.current == "first_run", 60, "first-run screen")
    saved.append(session.save_screenshot(out / "first-run.png"))
    session.stop()

    app, session = _session({"data_dir": work / "data", "bundle": bundle}, LANDSCAPE)
    _scored(app, session, image)
    saved.append(session.save_screenshot(out / "result-landscape.png"))
    saved.append(_report(app, out / "report.png"))
    session.resize(*PORTRAIT)
    saved.append(session.save_screenshot(out / "result-phone-portrait.png"))
    session.resize(*LANDSCAPE)
    app.go_home()
    _scored(app, session, photo)
    saved.append(session.save_screenshot(out / "refusal.png"))
    if film_photo is not None:
        saved += _photo_shots(app, session, film_photo, out)
    session.stop()

    watch = work / "usb"
    watch.mkdir()
    app, session = _session(
        {"data_dir": work / "kiosk", "bundle": bundle, "kiosk": True, "watch": watch}, LANDSCAPE
    )
    session.wait_until(lambda: app.model_ready, 120, "bundle loaded")
    saved.append(session.save_screenshot(out / "kiosk-start.png"))
    _scored(app, session, image)
    saved.append(session.save_screenshot(out / "kiosk-result.png"))
    # The study log's history: the kiosk's watch folder gets an image and a refused photo.
    shutil.copyfile(image, watch / f"scan{image.suffix}")
    shutil.copyfile(photo, watch / f"phone{photo.suffix}")
    session.wait_until(lambda: len(app.study_log.studies()) == 2, 120, "two studies logged")
    session.wait_until(lambda: app.study_log.health().queued == 0 and not app.busy, 120, "studies done")
    session.wait_idle()
    app.show_history()
    saved.append(session.save_screenshot(out / "kiosk-history.png"))
    session.stop()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_app.tools.screenshots", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--image", type=Path, help="radiograph to show (default: a synthetic phantom)")
    args = parser.parse_args(argv)
    from edge_app.headless import prepare_environment

    prepare_environment()
    for path in capture(args.bundle, args.out, args.image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
