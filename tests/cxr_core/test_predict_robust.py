"""cxr-predict survives any file (issue 15): damaged files mid-batch, a bug on one file (exit 4),
the JSON Lines stream (complete, and cut by kill -9), escaped file names, stale temp files."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxr_core import predict_cli
from cxr_core.atomic import clean_stale_temps
from cxr_core.cli_common import EXIT_FAILED, EXIT_INTERNAL, EXIT_OK
from cxr_core.input_gate import InputGate, default_checks
from cxr_core.predict_stream import read_stream
from cxr_core.predictor import Predictor
from cxr_core.text import printable
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_png
from tests.fuzz_corpus import crafted_cases

#: Cases of the issue that crashed the whole batch or were scored silently before.
DAMAGED = (
    "dicom WindowWidth NaN",
    "dicom WindowWidth text",
    "dicom RescaleSlope inf",
    "dicom Rows empty",
    "dicom VOI LUT 0 bits",
    "dicom NumberOfFrames text",
    "dicom unknown VR XX",
    "dicom Rows smaller than pixel data",
    "dicom WindowWidth 1e30",
    "jpeg truncated 40% + EOI",
)


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    """A folder: good PNGs first, middle and last, the damaged files between them."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = [write_png(folder / f"{name}.png", chest(320, 288)) for name in ("a_good", "m_good", "z_good")]
    cases = {c.name: c for c in crafted_cases()}
    bad = []
    for i, name in enumerate(DAMAGED):
        path = folder / f"{'b' if i < 5 else 'n'}_bad{i}{cases[name].suffix}"
        path.write_bytes(cases[name].data)
        bad.append(path)
    return folder, good, bad


def test_bad_files_mid_batch_are_failure_records_and_the_good_are_scored(
    session_bundle: Path,
    mixed: tuple[Path, list[Path], list[Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, good, bad = mixed
    out_json, out_jsonl = tmp_path / "out" / "r.json", tmp_path / "out" / "r.jsonl"
    argv = [str(folder), "--bundle", str(session_bundle), "--json", str(out_json), "--jsonl", str(out_jsonl)]
    code = predict_cli.main([*argv, "--threads", "1"])
    capsys.readouterr()
    assert code == EXIT_FAILED
    document = json.loads(out_json.read_text())
    assert [r["source"] for r in document["results"]] == [str(p) for p in good]
    failures = {f["file"]: f for f in document["failures"]}
    assert set(failures) == {str(p) for p in bad}
    for failure in failures.values():  # the decoder's own error, with a reason naming the problem
        assert failure["error"] in ("CorruptImageError", "ImageSizeError"), failure
        assert failure["reasons"] and "expected" in failure["reasons"][0], failure
    stream = read_stream(out_jsonl)
    assert stream.complete and stream.run is not None and stream.run["labels"] == document["labels"]
    assert [r["source"] for r in stream.results] == [r["source"] for r in document["results"]]
    assert {f["file"] for f in stream.failures} == set(failures)
    assert stream.summary == {"scored": 3, "failed": len(bad), "complete": True}
    assert stream.results[0]["findings"] == document["results"][0]["findings"]


def test_an_unexpected_error_on_one_file_is_its_record_and_exit_4(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate check with a bug (a real InputGate extension) breaks one file; the batch goes on."""
    for name in ("a", "b", "c"):
        write_png(tmp_path / f"{name}.png", chest(320, 288))

    class Buggy:
        name = "buggy"

        def __call__(self, image):  # type: ignore[no-untyped-def]
            if image.provenance.path.endswith("b.png"):
                return {}["missing"]  # KeyError: a bug, not a deliberate refusal
            return []

    gate = InputGate([*default_checks(), Buggy()])
    monkeypatch.setattr(predict_cli.Predictor, "load", functools.partial(Predictor.load, gate=gate))
    out = tmp_path / "r.json"
    code = predict_cli.main([str(tmp_path), "--bundle", str(session_bundle), "--json", str(out)])
    _, err = capsys.readouterr()
    assert code == EXIT_INTERNAL
    document = json.loads(out.read_text())
    assert [Path(r["source"]).name for r in document["results"]] == ["a.png", "c.png"]
    (failure,) = document["failures"]
    assert failure["error"] == "InternalError" and "KeyError" in failure["reasons"][0]
    assert "b.png" in err


def test_names_with_newlines_and_escape_codes_are_printed_escaped(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "x\nscored ok\x1b[2J.png"
    evil.write_bytes(b"not an image at all")
    write_png(tmp_path / "good.png", chest(320, 288))
    code = predict_cli.main([str(evil), str(tmp_path / "good.png"), "--bundle", str(session_bundle)])
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "\x1b" not in out + err and "\nscored ok" not in err
    assert f"skipped {printable(evil)}:" in err and "\\x0a" in err and "\\x1b[2J" in err


def test_printable_escapes_only_what_cannot_be_printed() -> None:
    assert printable("/data/ok name é.png") == "/data/ok name é.png"
    assert printable("a\nb\x1b[31m\\c\u2028") == "a\\x0ab\\x1b[31m\\\\c\\u2028"


def test_stale_temp_files_are_cleaned_and_nothing_else(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    old_time = time.time() - 3600
    stale, fresh = out / ".r.json.abcd1234.tmp", out / ".r.json.efgh5678.tmp"
    mine, other = out / ".notes.tmp", out / "r.json.abcd1234.tmp"  # not the pattern: left alone
    for path in (stale, fresh, mine, other):
        path.write_text("x")
    for path in (stale, mine, other):
        os.utime(path, (old_time, old_time))
    write_png(tmp_path / "good.png", chest(320, 288))
    code = predict_cli.main(
        [str(tmp_path / "good.png"), "--bundle", str(session_bundle), "--json", str(out / "r.json")]
    )
    capsys.readouterr()
    assert code == EXIT_OK
    assert not stale.exists() and fresh.exists() and mine.exists() and other.exists()
    assert clean_stale_temps(tmp_path / "missing") == []


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_9_mid_batch_keeps_every_finished_image_in_the_jsonl(
    session_bundle: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        write_png(folder / f"img{i:02d}.png", chest(320, 288))
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = [sys.executable, "-m", "cxr_core.predict_cli", str(folder), "--bundle", str(session_bundle)]
    proc = subprocess.Popen(
        [*argv, "--jsonl", str(out), "--threads", "1"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().count('"record":"result"') >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    stream = read_stream(out)
    assert not stream.complete and stream.summary is None
    assert 3 <= len(stream.results) < 40
    assert [Path(r["source"]).name for r in stream.results] == [
        f"img{i:02d}.png" for i in range(len(stream.results))
    ]


def test_help_documents_the_exit_codes_and_what_survives_a_crash() -> None:
    text = " ".join(predict_cli.build_parser().format_help().split())
    for code in ("0 every image was scored", "1 some input", "2 usage error", "4 internal error"):
        assert code in text
    assert "--jsonl survives a crash" in text and "--json is written atomically at the end" in text


def test_folders_symlinked_in_are_followed_once_and_a_loop_ends(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    write_png(root / "sub" / "a.png", chest(320, 288))
    write_png(elsewhere / "b.png", chest(320, 288))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    files, failures = predict_cli.expand_inputs([root])
    assert failures == [] and sorted(p.name for p in files) == ["a.png", "b.png"]
