"""edge-bench and bundle trust: an unsigned bundle is refused before anything is measured, unless
``--allow-untrusted``, and then the opt-in is recorded in the results' bundle block."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cli import build_parser, config_from_args
from benchmarks.cli import main as bench_main
from benchmarks.results import _bundle_block
from cxr_core.bundle import load_bundle


def test_unsigned_bundle_is_refused_before_measuring(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle_copy / "manifest.sig").unlink()
    out = tmp_path / "bench"
    code = bench_main([str(bundle_copy), "--threads", "1", "--runs", "1", "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not signed" in err and "--allow-untrusted" in err
    assert not (out / "results.json").exists()


def test_allow_untrusted_reaches_the_config_and_the_results(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.sig").unlink()
    config = config_from_args(build_parser().parse_args([str(bundle_copy), "--allow-untrusted"]))
    assert config.allow_untrusted and not config_from_args(build_parser().parse_args(["b"])).allow_untrusted
    block = _bundle_block(load_bundle(bundle_copy, allow_untrusted=True))
    assert block["trust"] == "UNSIGNED bundle (loaded with --allow-untrusted)"
