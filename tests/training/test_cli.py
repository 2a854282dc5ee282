"""cxr-train and cxr-demo command lines: train (default), evaluate, resume, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from training import cli, demo


def _flags(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--dataset",
        "synthetic",
        "--data-root",
        str(root),
        "--out-dir",
        str(out),
        "--encoder",
        "tiny-densenet",
        "--input-size",
        "32",
        "--resize-to",
        "36",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--val-fraction",
        "0.25",
        "--no-progress",
        "--max-train-batches",
        "2",
        "--threads",
        "1",
        *extra,
    ]


def test_train_is_the_default_then_resume_extends_and_evaluate_reports(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert cli.main(_flags(phantom_root, out, "--epochs", "1", "--lr", "2e-3")) == 0
    printed = capsys.readouterr().out
    assert "epoch 1: train loss" in printed and "val mean AUC" in printed and "images/s" in printed
    assert str(out / "best.pt") in printed and str(out / "summary.md") in printed

    assert cli.main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    history = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2] and history[0]["lr"] == pytest.approx(2e-3)
    capsys.readouterr()

    assert (
        cli.main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "best.pt"),
                "--split",
                "test",
                "--no-progress",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("test: mean AUC")
    for name in ("evaluation.json", "roc.png", "pr.png", "summary.md", "metrics.csv"):
        assert (tmp_path / "eval" / name).is_file()


def test_preset_from_the_command_line_with_overrides(phantom_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "preset"
    argv = _flags(phantom_root, out, "--preset", "dgc-paper", "--epochs", "1", "--latent-dim", "16")
    assert cli.main(["train", *argv]) == 0
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert (stored["architecture"], stored["lr"], stored["loss"], stored["augment"]) == (
        "dgc",
        1e-5,
        "batch-balanced-bce",
        "none",
    )
    assert (stored["epochs"], stored["encoder"], stored["batch_size"]) == (1, "tiny-densenet", 8)


def test_user_errors_exit_2_with_a_useful_message(
    phantom_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_flags(phantom_root, tmp_path / "a", "--scheduler", "platau")) == 2
    assert "did you mean 'plateau'" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text("learning_rte: 0.1\n")
    assert cli.main(_flags(phantom_root, tmp_path / "b", "--config", str(config))) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rte'" in err and str(config) in err
    assert cli.main(["train", "--resume", str(tmp_path), "--preset", "dgc-paper"]) == 2
    assert "--resume uses the run's stored config" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["-v", "--out-dir", str(tmp_path / "c"), "--data-root", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err  # -v first, then flags: still the train command
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--no-such-flag"])
    assert info.value.code == 2


def test_console_script_is_installed() -> None:
    exe = shutil.which("cxr-train")
    assert exe is not None, "cxr-train is not on PATH: pip install -e . declares it"
    proc = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--early-stopping-patience" in proc.stdout and "--preset" in proc.stdout


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code = demo.main(
        [
            "--out",
            str(out),
            "--images",
            "96",
            "--size",
            "64",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--encoder",
            "tiny-densenet",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "test mean AUC" in printed and "artefacts:" in printed
    for name in ("run/best.pt", "run/summary.md", "run/roc.png", "run/eval-test/summary.md", "data"):
        assert (out / name).exists(), name
        assert str(out / name) in printed
    # Enough images that the validation split has positives: the demo's figures must be real numbers.
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["best_mean_auc"] <= 1.0
