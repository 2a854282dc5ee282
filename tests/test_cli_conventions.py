"""What every command line shares (cxr_core.cli_common): --version, exit codes in --help, one progress
flag, and a one-line error naming the pip extra when an optional dependency is missing."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

import cxr_core
from cxr_core.cli_common import optional_dependencies, version
from cxr_core.errors import MissingDependencyError
from cxr_core.optional import install_hint, require

REPO = Path(__file__).resolve().parents[1]

#: (prog, module whose main() is the entry point, leading argv selecting a subcommand)
CLIS = [
    ("cxr-synth", "training.data.synthetic_cli", []),
    ("cxr-train", "training.cli", []),
    ("cxr-demo", "cxr_demo.main_job", []),
    ("cxr-export", "quantize.cli", []),
    ("cxr-export verify", "quantize.cli", ["verify"]),
    ("cxr-predict", "cxr_core.predict_cli", []),
    ("cxr-calibrate", "cxr_core.calibrate_cli", []),
    ("cxr-app", "edge_app.main", []),
    ("edge-bench", "benchmarks.cli", []),
    ("edge-bench compare", "benchmarks.cli", ["compare"]),
]


def _call_main(module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``module.main(argv)`` in-process; argparse's SystemExit becomes the returned status."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # cxr-train/cxr-demo set it; keep the suite's env
    main = importlib.import_module(module).main
    try:
        return int(main(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_version_comes_from_the_distribution_or_cxr_core() -> None:
    try:
        expected = metadata.version("cxr-edge")
    except metadata.PackageNotFoundError:
        expected = cxr_core.__version__
    assert version() == expected
    assert version().split(".")[0].isdigit()


@pytest.mark.parametrize(("prog", "module", "lead"), CLIS, ids=[c[0] for c in CLIS])
def test_version_prints_prog_and_version(
    prog: str,
    module: str,
    lead: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _call_main(module, [*lead, "--version"], monkeypatch) == 0
    assert capsys.readouterr().out == f"{prog} {version()}\n"


HELPS = [(prog, module, lead) for prog, module, lead in CLIS] + [
    ("cxr-train train", "training.cli", ["train"]),
    ("cxr-train evaluate", "training.cli", ["evaluate"]),
]


@pytest.mark.parametrize(("prog", "module", "lead"), HELPS, ids=[h[0] for h in HELPS])
def test_help_lists_exit_codes_version_and_progress(
    prog: str,
    module: str,
    lead: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _call_main(module, [*lead, "--help"], monkeypatch) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 " in text and "; 2 " in text, text[-600:]
    if prog != "cxr-train":  # cxr-train takes the flag after its subcommand (train, evaluate)
        assert "--progress, --no-progress" in text
    if prog not in ("cxr-train train", "cxr-train evaluate"):  # the version flag sits on the top level
        assert "--version" in text


def _parsers() -> dict[str, Callable[[list[str]], argparse.Namespace]]:
    from benchmarks.cli import build_compare_parser
    from benchmarks.cli import build_parser as bench_parser
    from cxr_core.calibrate_cli import build_parser as calibrate_parser
    from cxr_core.predict_cli import build_parser as predict_parser
    from cxr_demo.main_job import build_parser as demo_parser
    from edge_app.options import parse_args as app_args
    from quantize.cli import _export_parser, _verify_parser
    from training.cli import build_parser as train_parser
    from training.data.synthetic_cli import build_parser as synth_parser

    return {
        "cxr-synth": lambda extra: synth_parser().parse_args(["out", *extra]),
        "cxr-train train": lambda extra: train_parser().parse_args(["train", *extra]),
        "cxr-train evaluate": lambda extra: train_parser().parse_args(
            ["evaluate", "--checkpoint", "c", *extra]
        ),
        "cxr-demo": lambda extra: demo_parser().parse_args(extra),
        "cxr-export": lambda extra: _export_parser().parse_args(["c.pt", "--out", "b", *extra]),
        "cxr-export verify": lambda extra: _verify_parser().parse_args(["b", *extra]),
        "cxr-predict": lambda extra: predict_parser().parse_args(["i.png", "--bundle", "b", *extra]),
        "cxr-calibrate": lambda extra: calibrate_parser().parse_args(
            ["b", "--data", "d", "--site", "s", *extra]
        ),
        "cxr-app": lambda extra: app_args(extra, environ={}),  # type: ignore[return-value]
        "edge-bench": lambda extra: bench_parser().parse_args(["b", *extra]),
        "edge-bench compare": lambda extra: build_compare_parser().parse_args(["r.json", *extra]),
    }


#: The default each command had before the flag was unified (kept).
DEFAULTS = {
    "cxr-synth": True,
    "cxr-train evaluate": True,
    "cxr-demo": True,
    "cxr-export": False,
    "cxr-export verify": False,
    "cxr-predict": False,
    "cxr-calibrate": False,
    "cxr-app": True,
    "edge-bench": True,
    "edge-bench compare": False,
}


@pytest.mark.parametrize("name", sorted(_parsers()))
def test_progress_flag_is_accepted_both_ways(name: str) -> None:
    parse = _parsers()[name]
    assert parse(["--progress"]).progress is True
    assert parse(["--no-progress"]).progress is False
    if name in DEFAULTS:
        assert parse([]).progress is DEFAULTS[name]


def test_old_quiet_spelling_still_turns_edge_bench_progress_off(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.cli import build_parser

    assert build_parser().parse_args(["b", "--quiet"]).progress is False
    build_parser().print_help()
    assert "--quiet" not in capsys.readouterr().out  # a hidden alias, not a second documented flag


def test_install_hint_is_one_wording_for_checkouts_and_wheels() -> None:
    hint = install_hint("train")
    assert "pip install -e '.[train]'" in hint and "cxr_edge-<version>-py3-none-any.whl[train]'" in hint
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[dicom\]'"):
        require("cxr_edge_no_such_module", extra="dicom", purpose="a test")


def test_optional_dependencies_names_the_extra_and_passes_other_errors() -> None:
    with pytest.raises(
        MissingDependencyError, match=r"cxr-x needs the Python package 'torch'.*'\.\[train\]'"
    ):
        with optional_dependencies("cxr-x"):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
    with pytest.raises(MissingDependencyError, match=r"'\.\[export\]'"):
        with optional_dependencies("cxr-x", extra="export"):
            raise ModuleNotFoundError("No module named 'onnx.helper'", name="onnx.helper")
    with pytest.raises(ModuleNotFoundError):  # not an optional dependency of cxr-edge: a real bug
        with optional_dependencies("cxr-x"):
            raise ModuleNotFoundError("No module named 'numpyy'", name="numpyy")


# ----------------------------------------------------------------------------- missing extras, for real

#: Runs ``<module>.main(argv)`` with some top-level packages made unimportable, as if not installed.
BLOCKED_RUN = """
import importlib, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(','))
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))
"""


def _run_blocked(blocked: str, module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "KIVY_NO_FILELOG": "1"}
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, blocked, module, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], prog: str, extra: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert f"pip install -e '.[{extra}]'" in errors[0], errors[0]


def test_cxr_train_without_torch_names_the_train_extra(tmp_path: Path) -> None:
    result = _run_blocked(
        "torch,torchvision", "training.cli", "evaluate", "--checkpoint", "x.pt", cwd=tmp_path
    )
    _assert_one_line_error(result, "cxr-train", "train")
    assert "'torch'" in result.stderr


def test_cxr_export_without_torch_names_the_export_extra(tmp_path: Path) -> None:
    result = _run_blocked("torch,torchvision,onnx", "quantize.cli", "x.pt", "--out", "b", cwd=tmp_path)
    _assert_one_line_error(result, "cxr-export", "export")


def test_cxr_demo_without_torch_names_an_extra(tmp_path: Path) -> None:
    result = _run_blocked(
        "torch,torchvision", "cxr_demo.main_job", "--out", str(tmp_path / "d"), cwd=tmp_path
    )
    _assert_one_line_error(result, "cxr-demo", "export")


def test_cxr_app_without_kivy_names_the_app_extra(tmp_path: Path) -> None:
    result = _run_blocked("kivy", "edge_app.main", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    _assert_one_line_error(result, "cxr-app", "app")
    assert "'kivy'" in result.stderr


def test_cxr_synth_contact_sheet_runs_without_the_training_extras(tmp_path: Path) -> None:
    """cxr-synth needs numpy and Pillow only: blocking torch, tqdm and yaml changes nothing."""
    sheet = tmp_path / "sheet.png"
    result = _run_blocked(
        "torch,torchvision,tqdm,yaml",
        "training.data.synthetic_cli",
        "--contact-sheet",
        str(sheet),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sheet.is_file()


def test_a_refused_option_is_one_error_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cxr-synth used to catch ValueError itself; its refusals are CxrEdgeErrors now, same outcome."""
    assert _call_main("training.data.synthetic_cli", [str(tmp_path / "d"), "--images", "0"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err == "cxr-synth: error: n_images=0; expected at least 1\n"
