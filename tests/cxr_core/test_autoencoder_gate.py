"""The autoencoder signal of the learned gate: numpy SSIM, one input derivation at both ends, the files
in the bundle (hashed, golden-checked), and refusals of images unlike the training data (no torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.autoencoder_gate import (
    SIGNAL,
    AutoencoderGateError,
    AutoencoderSignal,
    autoencoder_input,
    reconstruction_score,
    smooth,
    ssim,
)
from cxr_core.bundle import AutoencoderInfo, Bundle, BundleError, BundleIntegrityError, load_bundle
from cxr_core.gate_signals import learned_gate_for
from cxr_core.imaging import decode_image
from cxr_core.preprocess import PreprocessSpec, preprocess

REPO = Path(__file__).resolve().parents[2]


def _textured(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.clip(
        0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.05 * rng.standard_normal((size, size)), 0, 1
    )


def test_ssim_is_one_on_itself_symmetric_and_drops_with_noise_and_blur() -> None:
    x = _textured()
    rng = np.random.default_rng(1)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    noisy = [float(ssim(x, np.clip(x + s * rng.standard_normal(x.shape), 0, 1))) for s in (0.02, 0.1, 0.3)]
    assert 1.0 > noisy[0] > noisy[1] > noisy[2] > -1.0
    blurred = [float(ssim(x, smooth(x[None], s)[0])) for s in (0.5, 1.5, 3.0)]
    assert 1.0 > blurred[0] > blurred[1] > blurred[2]
    batch = ssim(np.stack([x, y]), np.stack([x, x]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(1.0) and batch[1] < 1.0
    with pytest.raises(AutoencoderGateError, match="expected two equal shapes"):
        ssim(x, x[:32])
    with pytest.raises(AutoencoderGateError, match="at least 11 px"):
        ssim(x[:8, :8], x[:8, :8])


def test_ssim_matches_scikit_image_when_installed() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _textured(0), _textured(1)
    reference = metrics.structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(x, y) == pytest.approx(reference, abs=1e-6)


def test_smoothing_matches_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _textured(2)
    np.testing.assert_allclose(smooth(x[None], 1.0)[0], ndimage.gaussian_filter(x, 1.0), atol=1e-12)


def test_the_gate_score_in_float32_is_the_float64_score() -> None:
    """The score runs in float32 (beside the classifier, where its time slows the model); it must give
    the float64 reference's SSIM, on good and bad reconstructions and on flat and noise images."""
    rng = np.random.default_rng(5)
    flat = np.full((64, 64), 0.5)
    noise = rng.random((64, 64))
    inputs = np.stack([_textured(4), _textured(5), flat, noise, _textured(6)])
    recon = np.stack(
        [
            np.clip(inputs[0] + 0.02 * rng.standard_normal((64, 64)), 0, 1),  # a good redraw
            smooth(inputs[1][None], 3.0)[0],  # a blurred one
            np.clip(flat + 0.1 * rng.standard_normal((64, 64)), 0, 1),
            smooth(noise[None], 2.0)[0],
            1.2 - inputs[4],  # out of range: the score clips it to [0, 1]
        ]
    )
    score = reconstruction_score(inputs.astype(np.float32), recon.astype(np.float32), 1.0)
    clipped = np.clip(recon, 0, 1)
    both = smooth(np.concatenate([clipped, inputs]), 1.0)  # float64 throughout
    reference = ssim(both[:5], both[5:])
    assert score.dtype == np.float64 and score.shape == (5,)
    np.testing.assert_allclose(score, reference, atol=5e-5)
    assert score[0] > score[1] and score[0] > 0.9 and score[4] < 0.5


def test_the_input_is_the_same_from_either_layout_and_normalisation() -> None:
    grey = _textured(3, 150)
    nchw = PreprocessSpec(input_size=128, resize_to=140)
    nhwc = replace(nchw, layout="NHWC")
    ranged = replace(nchw, normalization="range", value_range=(-1.0, 1.0))
    a = autoencoder_input(preprocess(grey, nchw)[None], nchw)
    b = autoencoder_input(preprocess(grey, nhwc)[None], nhwc)
    c = autoencoder_input(preprocess(grey, ranged)[None], ranged)
    assert a.shape == (1, 1, 64, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-5)
    with pytest.raises(AutoencoderGateError, match="expected \\(N, 3, 128, 128\\)"):
        autoencoder_input(np.zeros((1, 3, 64, 64), np.float32), nchw)


def test_the_input_is_the_plain_numpy_expression_bit_for_bit() -> None:
    """The input is built in one buffer, channel by channel: it must equal the plain expression
    (``(x * std + mean).mean(axis=1)``, clipped, 2 x 2 block mean) to the bit, or the thresholds of
    bundles exported before would no longer describe what the device computes."""
    from cxr_core.autoencoder_gate import _channel_mean

    rng = np.random.default_rng(8)
    for channels in (1, 3, 4):
        batch = rng.normal(0.0, 1.5, (2, channels, 32, 32)).astype(np.float32)
        assert np.array_equal(_channel_mean(batch), batch.mean(axis=1))
        view = np.ascontiguousarray(batch.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC memory
        assert np.array_equal(_channel_mean(view), view.mean(axis=1))
    spec = PreprocessSpec(input_size=128, resize_to=140)
    batch = preprocess(_textured(5, 150), spec)[None]
    batch[0, :, :4] = 9.0  # out of range after undoing the normalisation: clipped
    mean = np.asarray(spec.mean, np.float32)[None, :, None, None]
    std = np.asarray(spec.std, np.float32)[None, :, None, None]
    grey = np.clip((batch * std + mean).mean(axis=1), 0.0, 1.0)
    half = (grey[:, 0::2, 0::2] + grey[:, 1::2, 0::2] + grey[:, 0::2, 1::2] + grey[:, 1::2, 1::2]) * 0.25
    assert np.array_equal(autoencoder_input(batch, spec), np.clip(half, 0.0, 1.0)[:, None])


def test_the_autoencoder_travels_in_the_bundle_hashed_with_a_threshold_per_model(gated_bundle: Path) -> None:
    bundle = load_bundle(gated_bundle)
    info = bundle.manifest.autoencoder
    assert info is not None and info.signal == SIGNAL and info.input_size == 64
    assert info.models == {"onnx": "onnx", "onnx-int8": "onnx-int8"}  # FP32 with FP32, INT8 with INT8
    assert set(info.thresholds) == {"onnx", "onnx-int8"} and all(0 < t < 1 for t in info.thresholds.values())
    assert "training split" in info.fitted_on and info.train_images > 40 and info.epochs >= 1
    for part in info.files.values():
        assert part.file in bundle.manifest.files and len(part.golden_ssim) == bundle.manifest.golden.images
    assert info.files["onnx-int8"].quantization["calibration_images"] > 0
    assert AutoencoderInfo.from_dict(info.to_dict(), "autoencoder") == info
    broken = {**info.to_dict(), "models": {"onnx": "tflite"}}
    with pytest.raises(BundleError, match="autoencoder.models.onnx: got 'tflite'"):
        AutoencoderInfo.from_dict(broken, "autoencoder")


def test_device_and_export_derive_the_same_input(gated_bundle: Path) -> None:
    """The golden images' scores recorded at export (from the export's tensors) are what the device
    computes from the files themselves (decode, preprocess, autoencoder_input, the same file)."""
    bundle = load_bundle(gated_bundle)
    root = Path(bundle.manifest.calibration["root"])
    for model in ("onnx", "onnx-int8"):
        signal = AutoencoderSignal.from_bundle(bundle, model)
        assert signal is not None
        part = bundle.manifest.autoencoder.files[bundle.manifest.autoencoder.models[model]]
        for name, recorded in zip(bundle.manifest.golden.files, part.golden_ssim, strict=True):
            batch = preprocess(decode_image(root / name).pixels, bundle.spec)[None]
            assert float(signal.scores(batch)[0]) == pytest.approx(recorded, abs=1e-5)


def test_a_tampered_autoencoder_file_is_refused(gated_bundle: Path, tmp_path: Path) -> None:
    from quantize.verify import verify_bundle

    report = verify_bundle(gated_bundle, allow_untrusted=True)
    assert [row["status"] for row in report["autoencoder"]] == ["pass", "pass"]
    copy = Path(shutil.copytree(gated_bundle, tmp_path / "b"))
    data = bytearray((copy / "autoencoder-int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "autoencoder-int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="autoencoder-int8.onnx"):
        load_bundle(copy)
    with pytest.raises(BundleIntegrityError, match="autoencoder-int8.onnx"):
        verify_bundle(copy, allow_untrusted=True)


def _test_phantoms(bundle: Path) -> list[Path]:
    root = Path(load_bundle(bundle).manifest.calibration["root"])
    names = set((root / "test_list.txt").read_text().split())
    return sorted(p for p in root.rglob("*.png") if p.name in names)


def _ood_images(folder: Path) -> dict[str, Path]:
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(5)
    images = {
        "noise": rng.integers(0, 256, (300, 300), dtype=np.uint8),
        "flat": np.full((300, 300), 128, np.uint8),
        "photo": np.asarray(Image.fromarray(load_sample_image("china.jpg")).convert("L")),
    }
    paths = {}
    for name, array in images.items():
        Image.fromarray(array).save(folder / f"{name}.png")
        paths[name] = folder / f"{name}.png"
    return paths


@pytest.mark.parametrize("model", ["onnx", "onnx-int8"])
def test_unlike_images_are_refused_with_the_reason_and_phantoms_pass(
    gated_bundle: Path, tmp_path: Path, model: str
) -> None:
    bundle = load_bundle(gated_bundle)
    gate = learned_gate_for(bundle, model)
    assert SIGNAL in gate.signals and not gate.warnings
    (signal,) = [s for s in gate.image_signals if s.name == SIGNAL]

    def decide(path: Path):  # noqa: ANN202
        decoded = decode_image(path)
        (decision,) = signal.evaluate(decoded, preprocess(decoded.pixels, bundle.spec)[None])
        return decision

    phantoms = [decide(p) for p in _test_phantoms(gated_bundle)]
    accepted = sum(d.accepted for d in phantoms)
    assert accepted >= 0.8 * len(phantoms) and len(phantoms) >= 10, (accepted, len(phantoms))
    for name, path in _ood_images(tmp_path).items():
        decision = decide(path)
        assert not decision.accepted and decision.score < decision.threshold, (name, decision)
        assert decision.refuse_above is False and decision.learned
        assert "redraws this image with structural similarity" in decision.reason
        assert "unlike the images this model was trained on" in decision.reason


def test_a_model_without_an_autoencoder_of_its_runtime_says_so(gated_bundle: Path) -> None:
    bundle = load_bundle(gated_bundle)
    info = bundle.manifest.autoencoder
    trimmed = replace(info, models={"onnx": "onnx"}, thresholds={"onnx": info.thresholds["onnx"]})
    partial = Bundle(bundle.root, replace(bundle.manifest, autoencoder=trimmed), bundle.trust)
    gate = learned_gate_for(partial, "onnx-int8")
    assert SIGNAL not in gate.signals
    assert any("runs without the reconstruction check" in w for w in gate.warnings)
    assert SIGNAL in learned_gate_for(partial, "onnx").signals


def test_the_signal_runs_with_torch_unimportable(gated_bundle: Path, tmp_path: Path) -> None:
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)).save(noise)
    code = f"""
import sys, json
sys.modules["torch"] = None
from cxr_core.bundle import load_bundle
from cxr_core.autoencoder_gate import AutoencoderSignal
from cxr_core.imaging import decode_image
from cxr_core.preprocess import preprocess
bundle = load_bundle({str(gated_bundle)!r}, allow_untrusted=True)
signal = AutoencoderSignal.from_bundle(bundle, "onnx-int8")
decoded = decode_image({str(noise)!r})
(decision,) = signal.evaluate(decoded, preprocess(decoded.pixels, bundle.spec)[None])
print(json.dumps({{"accepted": decision.accepted, "torch": sys.modules["torch"] is None}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"accepted": False, "torch": True}


def test_the_image_signals_run_beside_the_model_and_every_verdict_comes_back(gated_bundle: Path) -> None:
    """The Predictor runs the quality checks and the autoencoder on its gate thread while the model
    runs; the result carries every signal's verdict, and a failing model still waits for the gate."""
    import threading

    from cxr_core.input_gate import InputGate
    from cxr_core.predictor import Predictor
    from cxr_core.runtime import open_backend

    path = _test_phantoms(gated_bundle)[0]  # the fixture's small phantoms: no size rule here
    bundle = load_bundle(gated_bundle)
    backend = open_backend(bundle, model="onnx-int8", threads=2)
    with Predictor(bundle, backend, gate=InputGate([])) as predictor:
        threads: list[str] = []
        before = predictor.learned_gate.before_inference

        def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            threads.append(threading.current_thread().name)
            return before(*args, **kwargs)

        predictor.learned_gate.before_inference = recording  # type: ignore[method-assign]
        prediction = predictor.predict_file(path)
        assert threads and threads[0].startswith("cxr-gate") and threads[0] != threading.current_thread().name
        signals = {d.signal for d in prediction.gate_signals}
        assert {SIGNAL, "feature_mahalanobis"} <= signals, signals
        assert prediction.timings_ms["learned_gate"] >= 0 and prediction.timings_ms["inference"] > 0

        finished = threading.Event()

        def slow_gate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            threading.Event().wait(0.2)
            finished.set()
            return before(*args, **kwargs)

        def failing_model(batch):  # noqa: ANN001, ANN202
            raise RuntimeError("model failed")

        predictor.learned_gate.before_inference = slow_gate  # type: ignore[method-assign]
        real_backend = predictor.backend
        predictor.backend = failing_model  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="model failed"):
            predictor.predict_file(path)
        assert finished.is_set()  # the gate's work was waited for, not left running
        predictor.backend = real_backend


def test_a_large_image_starts_its_quality_checks_before_preprocessing(
    gated_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From EARLY_IMAGE_SIGNAL_PIXELS on, the quality checks run on the gate thread while the image is
    preprocessed; the verdicts are the same, each once, in the same order, and a failure while
    preprocessing still waits for them."""
    import threading

    import cxr_core.predictor as predictor_module
    from cxr_core.imaging_common import DecodedImage
    from cxr_core.input_gate import InputGate
    from cxr_core.predictor import EARLY_IMAGE_SIGNAL_PIXELS, Predictor
    from cxr_core.runtime import open_backend

    small = decode_image(_test_phantoms(gated_bundle)[0])
    side = int(np.ceil(np.sqrt(EARLY_IMAGE_SIGNAL_PIXELS)))
    big = Image.fromarray(small.pixels, mode="F").resize((side, side), Image.Resampling.BILINEAR)
    large = DecodedImage(np.asarray(big, dtype=np.float32), small.provenance)
    assert large.pixels.size >= EARLY_IMAGE_SIGNAL_PIXELS
    bundle = load_bundle(gated_bundle)
    backend = open_backend(bundle, model="onnx-int8", threads=2)
    with Predictor(bundle, backend, gate=InputGate([])) as predictor:
        gate = predictor.learned_gate
        assert gate.has_image_only_signals
        calls: list[tuple[str, str, bool]] = []
        image_only, before = gate.image_only, gate.before_inference

        def record_image_only(image):  # noqa: ANN001, ANN202
            calls.append(("image_only", threading.current_thread().name, False))
            return image_only(image)

        def record_before(image, batch, *, image_only_done=False):  # noqa: ANN001, ANN202
            calls.append(("before_inference", threading.current_thread().name, image_only_done))
            return before(image, batch, image_only_done=image_only_done)

        monkeypatch.setattr(gate, "image_only", record_image_only)
        monkeypatch.setattr(gate, "before_inference", record_before)
        early = predictor.predict_image(large, "large.png", override_gate=True)
        assert [c[0] for c in calls] == ["image_only", "before_inference"]
        assert all(c[1].startswith("cxr-gate") for c in calls) and calls[1][2] is True

        calls.clear()  # the same image with the switch above its size: everything beside the model
        monkeypatch.setattr(predictor_module, "EARLY_IMAGE_SIGNAL_PIXELS", large.pixels.size + 1)
        late = predictor.predict_image(large, "large.png", override_gate=True)
        assert [c[0] for c in calls] == ["before_inference"] and calls[0][2] is False
        assert [d.signal for d in early.gate_signals] == [d.signal for d in late.gate_signals]
        assert len({d.signal for d in early.gate_signals}) == len(early.gate_signals)
        assert any(d.signal.startswith("quality_") for d in early.gate_signals)
        assert [d.accepted for d in early.gate_signals] == [d.accepted for d in late.gate_signals]

        monkeypatch.setattr(predictor_module, "EARLY_IMAGE_SIGNAL_PIXELS", 1)
        finished = threading.Event()

        def slow_image_only(image):  # noqa: ANN001, ANN202
            threading.Event().wait(0.2)
            finished.set()
            return image_only(image)

        def failing_preprocess(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise RuntimeError("preprocessing failed")

        monkeypatch.setattr(gate, "image_only", slow_image_only)
        monkeypatch.setattr(predictor_module, "preprocess", failing_preprocess)
        with pytest.raises(RuntimeError, match="preprocessing failed"):
            predictor.predict_image(large, "large.png", override_gate=True)
        assert finished.is_set()  # the early checks were waited for, not left running
