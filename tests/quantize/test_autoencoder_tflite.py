"""The gate's autoencoder beside TFLite classifiers: FP32 with FP32, INT8 with INT8, run by LiteRT (slow:
two onnx2tf conversions of the classifier and two of the autoencoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.autoencoder_gate import SIGNAL
from cxr_core.bundle import load_bundle
from cxr_core.gate_signals import learned_gate_for
from cxr_core.imaging import decode_image
from cxr_core.preprocess import preprocess
from tests.bundle_fixtures import TFLITE_SPEC, TINY_AUTOENCODER_EPOCHS, write_checkpoint

pytestmark = pytest.mark.slow


def test_tflite_models_get_the_autoencoder_of_their_precision(tmp_path: Path) -> None:
    pytest.importorskip("onnx2tf")
    pytest.importorskip("ai_edge_litert")
    from quantize.pipeline import ExportRequest, export_bundle
    from quantize.verify import verify_bundle
    from training.data.synthetic import generate_chestxray14

    root = tmp_path / "phantoms"
    generate_chestxray14(root, n_images=120, image_size=64, seed=0, progress=False, overwrite=True)
    run = {"dataset": "synthetic", "data_root": str(root), "val_fraction": 0.3}
    checkpoint = write_checkpoint(tmp_path / "chexnet.pt", "chexnet", run, spec=TFLITE_SPEC)
    out = tmp_path / "bundle"
    export_bundle(
        ExportRequest(
            checkpoint,
            out,
            formats=("tflite", "tflite-int8"),
            calibration_images=8,
            time_formats=False,
            enforce_gate=False,
            autoencoder_epochs=TINY_AUTOENCODER_EPOCHS,
        )
    )
    bundle = load_bundle(out)
    info = bundle.manifest.autoencoder
    assert info is not None and info.models == {"tflite": "tflite", "tflite-int8": "tflite-int8"}
    assert {p.runtime for p in info.files.values()} == {"litert"}
    rows = verify_bundle(out, allow_untrusted=True)["autoencoder"]
    assert [r["status"] for r in rows] == ["pass", "pass"]
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)).save(noise)
    decoded = decode_image(noise)
    for model in ("tflite", "tflite-int8"):
        gate = learned_gate_for(bundle, model)
        (signal,) = [s for s in gate.image_signals if s.name == SIGNAL]
        (decision,) = signal.evaluate(decoded, preprocess(decoded.pixels, bundle.spec)[None])
        assert not decision.accepted
