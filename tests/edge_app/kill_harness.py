"""kill -9 the headless kiosk at random moments during a burst of files, restarting it each time.

Used by ``test_kiosk_engine.py`` (a few kills in the default suite, 50 in the slow one) and runnable
alone for the figures: ``python -m tests.edge_app.kill_harness BUNDLE --files 200 --kills 50``.
The kiosk runs as ``python -m edge_app.kiosk_engine`` (the real worker, the real Predictor, no
window) in a child process; the harness copies the files into the watch folder the way a scanner
or a USB copy does (a hidden partial file renamed into place), independently of the kills, so
some arrive while the kiosk is down.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]


@dataclass
class KillFigures:
    files: int
    kills: int
    kills_while_processing: int = 0  # kills that cut a study short (its attempt counted, no outcome)
    interrupted_studies: int = 0  # studies cut short at least once
    given_up: int = 0  # studies cut short MAX_ATTEMPTS times: the kiosk must mark them failed
    expected_states: dict[str, int] = field(default_factory=dict)  # from the kills the harness saw
    attempt_mismatches: list[str] = field(default_factory=list)  # log rows that disagree with them
    rows: int = 0
    distinct_paths: int = 0
    states: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    integrity: str = ""
    report_pngs: int = 0
    temp_files_left: int = 0
    recovery_s: list[float] = field(default_factory=list)  # restart -> next study finished
    total_s: float = 0.0
    final_run_files_per_s: float | None = None


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` different radiograph-like PNGs (distinct content, so none is linked to another)."""
    from tests.edge_app.conftest import radiograph
    from tests.file_factory import write_png

    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(folder / f"study_{i:04d}.png", radiograph(seed=1000 + i)) for i in range(count)]


def _app_command(data: Path, watch: Path, bundle: Path) -> list[str]:
    """The real app: kiosk mode, an offscreen window (``app_env``), the watch folder."""
    cmd = [sys.executable, "-m", "edge_app.main", "--kiosk", "--bundle", str(bundle), "--data-dir", str(data)]
    return cmd + ["--watch", str(watch), "--watch-interval", "0.1", "--watch-settle", "0", "--threads", "1"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a kiosk child process: this checkout first on PYTHONPATH, then ``extra``."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra or {})
    return env


def app_env(root: Path) -> dict[str, str]:
    from edge_app.headless import OFFSCREEN_ENV

    return {**OFFSCREEN_ENV, "KIVY_HOME": str(root / "kivy-home")}


def _command(data: Path, watch: Path, bundle: Path, exit_when_idle: bool, app: bool = False) -> list[str]:
    if app:
        return _app_command(data, watch, bundle)
    cmd = [sys.executable, "-m", "edge_app.kiosk_engine", "--data-dir", str(data), "--watch", str(watch)]
    cmd += ["--bundle", str(bundle), "--settle", "0", "--interval", "0.05", "--threads", "1"]
    return cmd + (["--exit-when-idle"] if exit_when_idle else [])


def _read(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the study log; none while it does not exist or has no table yet (the
    kiosk is creating it, or was killed while creating it)."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def _in_progress(db: Path) -> dict[int, int]:
    """Attempts of each pending study that was started at least once: while a kiosk runs, the study
    in hand; while none runs, the studies cut short."""
    rows = _read(db, "SELECT id, attempts FROM studies WHERE state = 'pending' AND attempts > 0")
    return {int(i): int(a) for i, a in rows}


def _finished(db: Path) -> int:
    """Finished studies, read from the log while the kiosk runs."""
    rows = _read(db, "SELECT COUNT(*) FROM studies WHERE state != 'pending'")
    return int(rows[0][0]) if rows else 0


def run(bundle: Path, root: Path, files: int = 200, kills: int = 50, seed: int = 0,
        burst_s: float = 2.0, max_kill_delay_s: float = 1.2, app: bool = False) -> KillFigures:  # fmt: skip
    """``kills`` SIGKILLs during a burst of ``files`` files, then one run to the end; the figures.

    ``app``: kill the real app (kiosk mode, offscreen window) instead of the headless kiosk; its
    restarts take longer (Kivy and the window), so give it a longer ``max_kill_delay_s``.
    """
    rng = random.Random(seed)
    images = make_images(root / "source", files)
    watch, data = root / "watch", root / "data"
    watch.mkdir(parents=True, exist_ok=True)
    db = data / "studies.sqlite"
    env = child_env()
    if app:
        env.update(app_env(root))
    figures = KillFigures(files=files, kills=kills)
    logs = (root / "kiosk.log").open("ab")

    def copy_burst() -> None:
        for image in images:
            partial = watch / f".{image.name}.part"
            shutil.copyfile(image, partial)
            os.replace(partial, watch / image.name)
            time.sleep(burst_s / max(1, files))

    start = time.monotonic()
    copier = threading.Thread(target=copy_burst, daemon=True)
    copier.start()
    cut_short: dict[int, int] = {}  # study id -> kills that landed while it was being analysed
    for _ in range(kills):
        before = _finished(db)
        started_before = _in_progress(db)
        child = subprocess.Popen(
            _command(data, watch, bundle, False, app), cwd=REPO, env=env, stdout=logs, stderr=logs
        )
        started = time.monotonic()
        deadline = started + rng.uniform(0.05, max_kill_delay_s)
        recovered = False
        while time.monotonic() < deadline:
            if not recovered:
                done = _finished(db)
                if done > before:
                    figures.recovery_s.append(round(time.monotonic() - started, 3))
                    recovered = True
            time.sleep(0.01)
        child.kill()  # SIGKILL: no clean-up of any kind
        child.wait()
        # The study this kiosk started and did not finish (one worker: at most one per kill).
        for study_id, attempts in _in_progress(db).items():
            if attempts > started_before.get(study_id, 0):
                cut_short[study_id] = cut_short.get(study_id, 0) + 1
                figures.kills_while_processing += 1
    copier.join()
    final_start = time.monotonic()
    done_before = _finished(db)
    if app:  # the app does not stop by itself: wait until every file has its outcome, then close it
        child = subprocess.Popen(
            _command(data, watch, bundle, False, app), cwd=REPO, env=env, stdout=logs, stderr=logs
        )
        deadline = time.monotonic() + 600
        while _finished(db) < files and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        child.terminate()
        child.wait(30)
    else:
        subprocess.run(_command(data, watch, bundle, True), cwd=REPO, env=env, stdout=logs, stderr=logs,
                       check=True, timeout=600)  # fmt: skip
    final_s = time.monotonic() - final_start
    figures.total_s = round(time.monotonic() - start, 2)
    logs.close()

    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, name, path, state, attempts, error FROM studies").fetchall()
    figures.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    figures.rows = len(rows)
    paths = {r[2] for r in rows}
    figures.distinct_paths = len(paths)
    for row in rows:
        figures.states[row[3]] = figures.states.get(row[3], 0) + 1
    _expect_from_kills(figures, cut_short, [(i, name, state, a, e) for i, name, _p, state, a, e in rows])
    expected = {str(watch / image.name) for image in images}
    figures.lost = len(expected - {r[2] for r in rows if r[3] != "pending"})
    figures.duplicated = len(rows) - figures.distinct_paths + len(paths - expected)
    figures.report_pngs = len(list((data / "reports").glob("*.png")))
    figures.temp_files_left = len(list(data.rglob("*.tmp")))
    if final_s > 0 and files > done_before:
        figures.final_run_files_per_s = round((files - done_before) / final_s, 2)
    return figures


def _expect_from_kills(
    figures: KillFigures, cut_short: dict[int, int], rows: list[tuple[int, str, str, int, str | None]]
) -> None:
    """What the log must say given the kills the harness saw: a study cut short ``MAX_ATTEMPTS``
    times is given up (failed, naming the interruptions); every other study is scored, and its
    attempts are the kills that cut it short plus the one that finished it."""
    from edge_app.studylog import MAX_ATTEMPTS

    figures.interrupted_studies = len(cut_short)
    figures.given_up = sum(1 for n in cut_short.values() if n >= MAX_ATTEMPTS)
    figures.expected_states = {"scored": figures.files - figures.given_up}
    if figures.given_up:
        figures.expected_states["failed"] = figures.given_up
    for study_id, name, state, attempts, error in rows:
        kills = cut_short.get(study_id, 0)
        if kills >= MAX_ATTEMPTS:
            ok = state == "failed" and attempts == kills and f"interrupted {kills} times" in (error or "")
        else:
            ok = state == "scored" and attempts == kills + 1
        if not ok:
            figures.attempt_mismatches.append(f"{name}: {state}, {attempts} attempts, cut short {kills}x")


def burst_throughput(bundle: Path, root: Path, files: int = 200) -> dict[str, float]:
    """Files per second of one uninterrupted kiosk run over ``files`` files already in the folder."""
    images = make_images(root / "source", files)
    watch, data = root / "watch", root / "data"
    watch.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copyfile(image, watch / image.name)
    env = child_env()
    start = time.monotonic()
    subprocess.run(_command(data, watch, bundle, True), cwd=REPO, env=env, check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.monotonic() - start
    conn = sqlite3.connect(data / "studies.sqlite")
    first, last = conn.execute("SELECT MIN(processed_at), MAX(processed_at) FROM studies").fetchone()
    conn.close()
    from datetime import datetime

    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return {
        "files": files,
        "wall_s_incl_start": round(wall, 2),
        "files_per_s": round((files - 1) / span, 2) if span > 0 else float("nan"),
        "ms_per_file": round(1000 * span / max(1, files - 1), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import tempfile

    root = args.root or Path(tempfile.mkdtemp(prefix="kill-harness-"))
    figures = run(args.bundle, root / "kills", args.files, args.kills, args.seed)
    out = asdict(figures)
    rec = np.asarray(figures.recovery_s or [np.nan])
    out["recovery_s_median"], out["recovery_s_max"] = float(np.median(rec)), float(np.max(rec))
    out["throughput"] = burst_throughput(args.bundle, root / "burst", args.files)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
