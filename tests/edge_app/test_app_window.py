"""Run the real-window app tests (``window/``) in a child process and require them all to pass.

Why a child process: see ``tests/edge_app/conftest.py`` (TensorFlow and Mesa's OpenGL cannot share
a process here). The child gets the parent's tiny bundle, so it is exported once per session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.edge_app.conftest import BUNDLE_ENV, GATED_BUNDLE_ENV, WINDOW_ENV

REPO = Path(__file__).resolve().parents[2]
WINDOW_TESTS = Path(__file__).resolve().parent / "window"


def test_app_in_a_real_offscreen_window(session_bundle: Path, gated_bundle: Path) -> None:
    env = {
        **os.environ,
        WINDOW_ENV: "1",
        BUNDLE_ENV: str(session_bundle),
        GATED_BUNDLE_ENV: str(gated_bundle),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(WINDOW_TESTS),
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=5",
        "-W",
        "ignore::DeprecationWarning",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    print("\n".join(summary[-1:]))
    assert result.returncode == 0, output[-6000:]
    passed = re.search(r"(\d+) passed", summary[-1])
    assert passed and int(passed.group(1)) >= 30  # every window test ran
    assert "failed" not in summary[-1] and "skipped" not in summary[-1] and "error" not in summary[-1]
