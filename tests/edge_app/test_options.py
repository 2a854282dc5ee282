"""cxr-app's command line (parsed before Kivy is imported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.options import BUNDLE_ENV, DATA_DIR_ENV, DEFAULT_IDLE_RESET_S, parse_args


def test_defaults_and_environment(tmp_path: Path) -> None:
    options = parse_args([], environ={})
    assert options.bundle is None and not options.kiosk and options.idle_reset is None
    env = {BUNDLE_ENV: str(tmp_path / "b"), DATA_DIR_ENV: str(tmp_path / "d")}
    options = parse_args(["--kiosk"], environ=env)
    assert options.bundle == tmp_path / "b" and options.data_dir == tmp_path / "d"
    assert options.idle_reset == DEFAULT_IDLE_RESET_S
    assert parse_args(["--bundle", "x"], environ=env).bundle == Path("x")  # the flag wins


def test_kiosk_flags(tmp_path: Path) -> None:
    options = parse_args(
        [
            "--kiosk",
            "--watch",
            str(tmp_path),
            "--idle-reset",
            "30",
            "--size",
            "1024x600",
            "--watch-settle",
            "0.5",
            "scan.dcm",
        ],
        environ={},
    )
    assert options.watch == tmp_path and options.idle_reset == 30.0 and options.size == (1024, 600)
    assert options.watch_settle_s == 0.5 and options.open_image == Path("scan.dcm")
    assert parse_args(["--kiosk", "--idle-reset", "0"], environ={}).idle_reset is None
    assert parse_args(["--watch", str(tmp_path / "not-plugged-in")], environ={}).watch is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "10x10"], "too small"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--idle-reset", "-1"], "negative"),
        (["--threads", "0"], "a number of threads from 1 to"),
        (["--threads", "1000"], "a number of threads from 1 to"),
    ],
)
def test_bad_flags_name_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, environ={})
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_watch_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "x.png"
    file.write_bytes(b"x")
    with pytest.raises(SystemExit):
        parse_args(["--watch", str(file)], environ={})
    assert "is a file" in capsys.readouterr().err
