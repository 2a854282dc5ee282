"""cxr-export: export through main(), verify in a subprocess where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quantize.cli import main
from tests.bundle_fixtures import write_checkpoint

#: Run ``quantize.cli.main(argv)`` with torch, torchvision and onnx made unimportable.
NO_TORCH = """
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'onnx'):
            raise ImportError('blocked by test: ' + name)
        return None
sys.meta_path.insert(0, Refuse())
from quantize.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules)
print('LOADED=' + json.dumps(heavy))
sys.exit(code)
"""


def _run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_verify_passes_on_a_fresh_bundle_without_torch(session_bundle: Path) -> None:
    result = _run_without_torch("verify", str(session_bundle), "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "LOADED=[]"
    report = json.loads("\n".join(lines[:-1]))
    assert {row["model"]: row["status"] for row in report["golden"]} == {"onnx": "pass", "onnx-int8": "pass"}
    assert "model-int8.onnx" in report["files"] and "golden.npz" in report["files"]


def test_verify_reports_a_modified_model_without_torch(bundle_copy: Path) -> None:
    model = bundle_copy / "model-int8.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    result = _run_without_torch("verify", str(bundle_copy))
    assert result.returncode == 2
    assert "model-int8.onnx" in result.stderr and "sha256" in result.stderr


def test_export_cli_with_calibration_dir(
    checkpoint_factory: Callable, calibration_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxr_core.bundle.signing import generate_key

    out = tmp_path / "bundle"
    key = generate_key(tmp_path / "exporter" / "key.pem")  # --signing-key: not the suite's trusted key
    code = main(
        [
            str(checkpoint_factory("dgc")),
            "--out",
            str(out),
            "--formats",
            "onnx",
            "--calibration-dir",
            str(calibration_dir),
            "--calibration-images",
            "3",
            "--golden-images",
            "2",
            "--json",
            "--signing-key",
            str(key),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["formats"][0]["status"] == "ok"
    assert printed["signed_by"] == key.with_suffix(".pub").read_text().split()[2]  # the key is named
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["files"] == ["img_00.png", "img_04.png", "img_07.png"]
    assert manifest["golden"]["images"] == 2
    assert main(["verify", str(out)]) == 2  # signed by a key this "device" does not trust
    assert f"signed by key {printed['signed_by']}, which is not among" in capsys.readouterr().err
    assert main(["verify", str(out), "--allow-untrusted"]) == 0
    assert f"UNTRUSTED key {printed['signed_by']}" in capsys.readouterr().out


def test_export_cli_gate_exit_status(
    checkpoint_factory: Callable, calibration_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    code = main(
        [
            str(checkpoint_factory("chexnet")),
            "--out",
            str(out),
            "--calibration-dir",
            str(calibration_dir),
            "--max-delta-p",
            "0",
            "--formats",
            "onnx,onnx-int8",
        ]
    )
    assert code == 3
    captured = capsys.readouterr()
    assert "parity gate refused" in captured.err and "onnx-int8" in captured.out
    assert not out.exists()
    code = main(
        [
            str(checkpoint_factory("chexnet")),
            "--out",
            str(out),
            "--calibration-dir",
            str(calibration_dir),
            "--max-delta-p",
            "0",
            "--no-parity-gate",
            "--formats",
            "onnx,onnx-int8",
        ]
    )
    assert code == 0 and (out / "manifest.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["parity"]["gate_enforced"] is False


def test_default_calibration_is_the_checkpoint_validation_split(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.data.synthetic import generate_chestxray14

    data = tmp_path / "data"
    generate_chestxray14(data, n_images=24, image_size=64, seed=0, progress=False, overwrite=True, workers=1)
    run = TrainConfig(
        dataset="synthetic",
        data_root=str(data),
        out_dir=str(tmp_path / "run"),
        val_fraction=0.25,
        input_size=64,
        resize_to=72,
    )
    checkpoint = write_checkpoint(tmp_path / "ckpt.pt", "chexnet", run.to_dict())
    out = tmp_path / "bundle"
    assert main([str(checkpoint), "--out", str(out), "--formats", "onnx", "--calibration-images", "4"]) == 0
    calibration = json.loads((out / "manifest.json").read_text())["calibration"]
    assert calibration["source"].startswith("validation split of synthetic")
    assert calibration["count"] == 4
    assert all(name.startswith("images_") and name.endswith(".png") for name in calibration["files"])


def test_export_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "b")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    checkpoint = write_checkpoint(tmp_path / "c.pt", "chexnet")
    assert main([str(checkpoint), "--out", str(tmp_path / "b")]) == 2
    assert "records no dataset" in capsys.readouterr().err
    assert main([str(checkpoint), "--out", str(tmp_path / "b"), "--formats", "onnx-in8"]) == 2
    assert "did you mean 'onnx-int8'" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--out", str(tmp_path / "b"), "--autoencoder-seed", "-1"])
    assert exit_info.value.code == 2
    assert "-1 is outside 0..2**32 - 1; expected a seed" in capsys.readouterr().err
