"""The whole learned gate runs with torch, onnx and tensorflow unimportable: same decisions, same scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_core.bundle import load_bundle
from cxr_core.gate_signals import GateRefusedError
from cxr_core.input_gate import InputGate, default_checks
from cxr_core.predictor import Predictor, clear_bundle_cache
from cxr_core.runtime import open_backend

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchvision", "onnx", "tensorflow", "tf_keras", "onnx2tf")
MODELS = ("onnx", "onnx-int8")

#: Runs in a fresh interpreter: the heavy packages are made unimportable before cxr_core is imported.
DEVICE_SIDE = """
import json, sys
BLOCKED = sys.argv[1].split(",")
for name in BLOCKED:
    sys.modules[name] = None  # "import torch" now raises ImportError
from cxr_core.bundle import load_bundle
from cxr_core.gate_signals import GateRefusedError
from cxr_core.input_gate import InputGate, default_checks
from cxr_core.predictor import Predictor
from cxr_core.runtime import open_backend

bundle = load_bundle(sys.argv[2])
report = {}
for model in sys.argv[3].split(","):
    backend = open_backend(bundle, model=model, threads=1)
    with Predictor(bundle, backend, gate=InputGate(default_checks(min_side=32))) as predictor:
        accepted = predictor.predict_file(sys.argv[4])
        try:
            predictor.predict_file(sys.argv[5])
        except GateRefusedError as exc:
            refused = [d.to_dict() for d in exc.decisions]
        else:
            refused = None
    report[model] = {"accepted": [d.to_dict() for d in accepted.gate_signals], "refused": refused}
report["imported"] = sorted(n for n in BLOCKED if sys.modules.get(n) is not None)
print(json.dumps(report))
"""


def _rows(decisions: object) -> list[dict]:
    return [d.to_dict() for d in decisions]  # type: ignore[attr-defined]


def test_the_gate_decides_the_same_with_torch_onnx_and_tensorflow_unimportable(
    gated_bundle: Path, tmp_path: Path
) -> None:
    clear_bundle_cache()
    bundle = load_bundle(gated_bundle)
    root = Path(bundle.manifest.calibration["root"])
    names = set((root / "test_list.txt").read_text().split())
    phantoms = sorted(p for p in root.rglob("*.png") if p.name in names)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (96, 96), dtype=np.uint8)).save(noise)

    # In this process (torch importable): a test phantom every model accepts, and its verdicts.
    expected: dict[str, dict] = {}
    predictors = {
        m: Predictor(
            bundle, open_backend(bundle, model=m, threads=1), gate=InputGate(default_checks(min_side=32))
        )
        for m in MODELS
    }
    try:
        for path in phantoms:
            try:
                accepted = {m: p.predict_file(path) for m, p in predictors.items()}
            except GateRefusedError:
                continue
            phantom = path
            break
        else:
            raise AssertionError("no test phantom passes the gate of every model")
        for model, predictor in predictors.items():
            refused = None
            try:
                predictor.predict_file(noise)
            except GateRefusedError as exc:
                refused = _rows(exc.decisions)
            expected[model] = {"accepted": _rows(accepted[model].gate_signals), "refused": refused}
    finally:
        for predictor in predictors.values():
            predictor.close()

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            DEVICE_SIDE,
            ",".join(BLOCKED),
            str(gated_bundle),
            ",".join(MODELS),
            str(phantom),
            str(noise),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("imported") == []
    for model in MODELS:
        got = report[model]
        assert got["accepted"] and all(
            row["accepted"] for row in got["accepted"]
        )  # the signals ran and passed
        assert got["refused"] is not None and not all(row["accepted"] for row in got["refused"])
        assert "feature_mahalanobis" in {row["signal"] for row in got["accepted"]}
        for kind in ("accepted", "refused"):
            assert [r["signal"] for r in got[kind]] == [r["signal"] for r in expected[model][kind]]
            assert [r["accepted"] for r in got[kind]] == [r["accepted"] for r in expected[model][kind]]
            np.testing.assert_allclose(
                [r["score"] for r in got[kind]], [r["score"] for r in expected[model][kind]], rtol=1e-4
            )
