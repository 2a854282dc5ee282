"""``cxr-app`` as a process: the real entry point, offscreen, from process start to the first result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp_path: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SDL_VIDEODRIVER": "offscreen",
        "KIVY_NO_FILELOG": "1",
        "KIVY_NO_CONFIG": "1",
        "KIVY_HOME": str(tmp_path / "kivy"),
    }
    env.pop("CXR_EDGE_BUNDLE", None)
    code = "import sys; from edge_app.main import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cold_start_to_first_result(tmp_path: Path, session_bundle: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = _run(
        [
            "--bundle",
            str(session_bundle),
            "--data-dir",
            str(tmp_path / "data"),
            "--size",
            "800x600",
            "--exit-after-result",
            str(image_files["dicom"]),
        ],
        tmp_path,
    )
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert record["outcome"] == "Scored" and set(record["timings_ms"]) >= {"decode", "inference"}
    print(
        f"cxr-app cold start (tiny bundle): {record['main_to_result_s']:.2f} s from main() to the first "
        f"result, {wall:.2f} s process start to exit"
    )


def test_refused_start_image_exits_cleanly(tmp_path: Path, session_bundle: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    result = _run(
        [
            "--bundle",
            str(session_bundle),
            "--data-dir",
            str(tmp_path / "data"),
            "--exit-after-result",
            str(image_files["photo"]),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["outcome"] == "Refused"


def test_bad_flags(tmp_path: Path) -> None:
    result = _run(["--size", "12x12"], tmp_path)
    assert result.returncode == 2 and "too small" in result.stderr
    assert "kivy" not in result.stderr.lower()  # rejected before Kivy was imported


def test_configure_kivy_for_kiosk() -> None:
    from kivy.config import Config

    from edge_app.main import configure_kivy

    keys = [("graphics", name) for name in ("fullscreen", "show_cursor", "width", "height")]
    saved = {key: Config.get(*key) for key in keys}
    try:
        configure_kivy(kiosk=True, size=(1024, 600))
        assert Config.get("graphics", "fullscreen") == "auto"
        assert Config.get("graphics", "show_cursor") == "0"
        assert (Config.get("graphics", "width"), Config.get("graphics", "height")) == ("1024", "600")
    finally:
        for (section, key), value in saved.items():
            Config.set(section, key, value)
