"""cxr_core.predictor on the tiny CheXNet bundle (FP32 + INT8 ONNX, 64 px): real files, real onnxruntime."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

import cxr_core.bundle as bundle_module
from cxr_core import cam
from cxr_core.bundle import Bundle, BundleIntegrityError, load_bundle, load_golden
from cxr_core.calibrate import calibrate
from cxr_core.errors import ImageDecodeError
from cxr_core.imaging import decode_image
from cxr_core.input_gate import ImageRefusedError, InputGate, default_checks
from cxr_core.predictor import (
    NO_LEARNED_GATE_WARNING,
    Prediction,
    Predictor,
    UnknownFindingError,
    clear_bundle_cache,
    load_verified_bundle,
)
from cxr_core.preprocess import preprocess
from cxr_core.runtime import open_backend
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import truncate_copy, write_dicom, write_jpeg, write_png
from tests.signing import resign

STAGES = ("decode", "gate", "preprocess", "inference", "learned_gate", "calibrate")


@pytest.fixture(scope="module")
def predictor(session_bundle: Path) -> Predictor:
    with Predictor.load(session_bundle, model="onnx") as p:
        yield p


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real PNG, JPEG and DICOM chest-like images of different sizes, each with its own bright spot."""
    root = tmp_path_factory.mktemp("predict_images")
    out = []
    sizes = [(320, 288), (300, 420), (512, 512), (400, 300), (288, 288), (350, 500)]
    for i, (height, width) in enumerate(sizes):
        grey = chest(height, width)
        yy, xx = np.mgrid[0:height, 0:width]
        grey = np.clip(
            grey
            + 0.5
            * np.exp(
                -((yy - height * (0.2 + 0.1 * i)) ** 2 + (xx - width * 0.6) ** 2) / (0.01 * height * width)
            ),
            0,
            1,
        )
        writer = (write_png, write_jpeg, write_png)[i % 3]
        out.append(writer(root / f"img{i}.{'jpg' if writer is write_jpeg else 'png'}", grey))
    out.append(write_dicom(root / "img_dicom.dcm", chest(400, 360), bits_stored=12))
    return out


def _with_points(bundle_dir: Path, points: list[float]) -> None:
    """Edit the operating points of a private bundle copy and sign it again with the suite's key."""
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["operating_points"] = points
    manifest_path.write_text(json.dumps(manifest))
    resign(bundle_dir)


# ----------------------------------------------------------------------------- loading


def test_load_reports_model_runtime_labels_and_time(predictor: Predictor, session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    assert predictor.model_name == "onnx" and predictor.runtime == "onnxruntime"
    assert predictor.labels == bundle.labels and len(predictor.labels) == 14
    assert predictor.bundle.root == session_bundle.resolve()
    assert predictor.load_ms > 0.0


def test_automatic_choice_opens_a_model_of_the_bundle(session_bundle: Path) -> None:
    with Predictor.load(session_bundle) as p:
        assert p.model_name in {"onnx", "onnx-int8"} and p.runtime == "onnxruntime"


def test_bundle_is_verified_once_per_unchanged_bundle(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = bundle_module.verify_files

    def counting(root: Path, manifest: bundle_module.Manifest) -> list[str]:
        calls.append(Path(root))
        return real(root, manifest)

    monkeypatch.setattr(bundle_module.reader, "verify_files", counting)
    clear_bundle_cache()
    first = load_verified_bundle(bundle_copy)
    assert load_verified_bundle(bundle_copy) is first
    with Predictor.load(bundle_copy, model="onnx") as p:
        assert p.bundle is first
    assert len(calls) == 1
    manifest = bundle_copy / "manifest.json"
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_verified_bundle(bundle_copy) is not first
    assert len(calls) == 2, "a manifest with a new mtime is verified again"


def test_a_model_file_damaged_after_loading_is_caught_on_the_next_load(bundle_copy: Path) -> None:
    clear_bundle_cache()
    load_verified_bundle(bundle_copy)
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="model.onnx"):
        Predictor.load(bundle_copy, model="onnx")


def test_an_injected_backend_works(session_bundle: Path, images: list[Path]) -> None:
    """The Android app passes its own backend: anything with runtime, model_name and __call__."""

    class RecordingBackend:
        runtime = "litert-android"
        model_name = "onnx-int8"

        def __init__(self) -> None:
            self.inner = open_backend(load_bundle(session_bundle), model="onnx-int8")
            self.batches: list[tuple[int, ...]] = []

        def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            self.batches.append(batch.shape)
            return self.inner(batch)

    backend = RecordingBackend()
    p = Predictor(session_bundle, backend)
    pred = p.predict_file(images[0])
    assert backend.batches == [(1, 3, 64, 64)]
    assert pred.runtime == "litert-android" and pred.model_name == "onnx-int8"
    assert pred.heatmap(pred.ranked()[0].label).shape == (320, 288)
    p.close()  # the injected backend has no close(): nothing to call, no error


# ----------------------------------------------------------------------------- predictions


def test_prediction_fields_and_timings(predictor: Predictor, images: list[Path]) -> None:
    pred = predictor.predict_file(images[1])
    assert isinstance(pred, Prediction)
    assert pred.source == str(images[1]) and pred.image.pixels.shape == (300, 420)
    assert tuple(f.label for f in pred.findings) == predictor.labels
    assert pred.model_name == "onnx" and pred.runtime == "onnxruntime"
    assert pred.bundle_name == predictor.bundle.root.name
    assert set(pred.timings_ms) == set(STAGES) and all(v >= 0.0 for v in pred.timings_ms.values())
    assert pred.warnings == (NO_LEARNED_GATE_WARNING,)  # the tiny test bundles are exported from a folder
    ranked = pred.ranked()
    assert [f.score for f in ranked] == sorted((f.score for f in pred.findings), reverse=True)
    for finding in pred.findings:
        assert 0.0 <= finding.model_output <= 1.0 and 0.0 <= finding.score <= 100.0
        assert finding.above_operating_point == (finding.model_output >= finding.operating_point)
        assert finding.score >= 50.0 if finding.above_operating_point else finding.score <= 50.0


def test_predict_image_equals_predict_file(predictor: Predictor, images: list[Path]) -> None:
    from_file = predictor.predict_file(images[2])
    from_image = predictor.predict_image(decode_image(images[2]), "picked.png")
    assert from_image.source == "picked.png" and "decode" not in from_image.timings_ms
    np.testing.assert_allclose(
        [f.model_output for f in from_image.findings], [f.model_output for f in from_file.findings], rtol=1e-6
    )


def test_calibration_puts_each_operating_point_at_half_and_is_monotone(
    bundle_copy: Path, images: list[Path]
) -> None:
    """Operating points set to one image's raw probabilities: that image calibrates to exactly 0.5."""
    clear_bundle_cache()
    with Predictor.load(bundle_copy, model="onnx") as p:
        raw = [[f.model_output for f in p.predict_file(path).findings] for path in images]
    raw = np.array(raw)  # (images, labels)
    points = raw[0].tolist()
    points[1], points[2] = 0.05, 0.9  # two more operating points away from the image
    _with_points(bundle_copy, points)
    with Predictor.load(bundle_copy, model="onnx") as p:
        assert p.operating_points == tuple(points)
        preds = [p.predict_file(path) for path in images]
    calibrated = np.array([[f.score for f in pred.findings] for pred in preds]) / 100.0  # scores, 0.1 steps
    for label in range(raw.shape[1]):
        if label not in (1, 2):
            assert calibrated[0, label] == pytest.approx(0.5, abs=1e-6)
            assert preds[0].findings[label].above_operating_point
        order = np.argsort(raw[:, label], kind="stable")
        assert np.all(np.diff(calibrated[order, label]) >= 0), "calibration must keep the order of images"
    np.testing.assert_allclose(calibrated, calibrate(raw, points), atol=5e-4 + 1e-9)
    grid = np.linspace(0, 1, 201)[:, None].repeat(len(points), axis=1)
    mapped = calibrate(grid, points)
    assert np.all(np.diff(mapped, axis=0) >= 0)
    np.testing.assert_allclose(calibrate(np.array([points]), points), 0.5, atol=1e-6)


def test_a_bundle_without_operating_points_warns(bundle_copy: Path, images: list[Path]) -> None:
    _with_points(bundle_copy, None)
    clear_bundle_cache()
    with Predictor.load(bundle_copy, model="onnx") as p:
        pred = p.predict_file(images[0])
    assert all(f.operating_point == 0.5 for f in pred.findings)
    assert all(f.score == pytest.approx(100 * f.model_output, abs=0.05 + 1e-9) for f in pred.findings)
    assert all(f.threshold_note and "threshold unreliable" in f.threshold_note for f in pred.findings)
    warnings = [w for w in pred.warnings if w != NO_LEARNED_GATE_WARNING]
    assert len(warnings) == 1 and "no operating points" in warnings[0]


def _golden_files(bundle: Bundle) -> list[Path]:
    root = Path(bundle.manifest.calibration["root"])
    return [root / name for name in bundle.manifest.golden.files]


#: The session bundle's calibration (and golden) images are 80x90 px: below the gate's minimum.
SMALL_IMAGES_GATE = InputGate(default_checks(min_side=8))


def test_int8_agrees_with_fp32_within_the_bundle_tolerance_on_the_golden_files(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    tolerance = bundle.model("onnx-int8").golden_tolerance.max_abs_dp
    fp32 = Predictor(bundle, open_backend(bundle, model="onnx"), gate=SMALL_IMAGES_GATE)
    int8 = Predictor(bundle, open_backend(bundle, model="onnx-int8"), gate=SMALL_IMAGES_GATE)
    with fp32, int8:
        assert int8.model_name == "onnx-int8"
        for path in _golden_files(bundle):
            a = np.array([f.model_output for f in fp32.predict_file(path).findings])
            b = np.array([f.model_output for f in int8.predict_file(path).findings])
            assert np.abs(a - b).max() <= tolerance


# ----------------------------------------------------------------------------- heat maps


def test_onnx_fp32_cam_equals_the_pytorch_cam_of_the_golden_set(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    golden = load_golden(bundle)
    weight, _ = bundle_module.load_cam_weights(bundle)
    with open_backend(bundle, model="onnx") as backend:
        outputs = backend(golden["inputs"])
    for ours, reference in zip(outputs["feature_map"], golden["feature_map"], strict=True):
        np.testing.assert_allclose(
            cam.class_activation_maps(ours, weight),
            cam.class_activation_maps(reference, weight),
            rtol=1e-4,
            atol=1e-4,
        )


def test_predictor_cam_of_a_golden_file_equals_the_pytorch_cam(session_bundle: Path) -> None:
    """End to end: the golden image decoded from its file by the Predictor gives PyTorch's CAM."""
    bundle = load_bundle(session_bundle)
    golden = load_golden(bundle)
    weight, _ = bundle_module.load_cam_weights(bundle)
    first = _golden_files(bundle)[0]
    model_input = preprocess(decode_image(first).pixels, bundle.spec)
    np.testing.assert_allclose(model_input, golden["inputs"][0], atol=1e-5)
    with Predictor(bundle, open_backend(bundle, model="onnx"), gate=SMALL_IMAGES_GATE) as p:
        pred = p.predict_file(first)
    reference = cam.class_activation_maps(golden["feature_map"][0], weight)
    for index, label in enumerate(pred.labels):
        np.testing.assert_allclose(pred.class_activation(label), reference[index], rtol=1e-4, atol=1e-4)
        expected = cam.upsample_to_image(cam.normalise_map(reference[index]), pred.geometry)
        np.testing.assert_allclose(pred.heatmap(label), expected, atol=1e-3)


def test_heat_map_has_the_original_shape_and_is_hottest_where_the_feature_map_is(
    predictor: Predictor, images: list[Path]
) -> None:
    for path in images[:4]:
        pred = predictor.predict_file(path)
        label = pred.ranked()[0].label
        heat = pred.heatmap(label)
        assert heat.shape == pred.image.pixels.shape
        assert heat.dtype == np.float32 and heat.min() >= 0.0 and heat.max() <= 1.0
        assert "cam" in pred.timings_ms
        small = pred.class_activation(label)
        cell = np.unravel_index(int(np.argmax(small)), small.shape)
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        (height, width), (new_h, new_w) = heat.shape, pred.geometry.resized_size
        top, left, size, _ = pred.geometry.crop_box
        grid = (
            int(((y + 0.5) * new_h / height - top) * small.shape[0] / size),
            int(((x + 0.5) * new_w / width - left) * small.shape[1] / size),
        )
        assert grid == cell
        assert pred.heatmap(label) is heat, "heat maps are cached"


def test_overlay_is_coloured_where_the_cam_is_hot(predictor: Predictor, images: list[Path]) -> None:
    pred = predictor.predict_file(images[2])
    label = pred.ranked()[0].label
    heat, rgb = pred.heatmap(label), pred.overlay(label)
    assert rgb.shape == (*pred.image.pixels.shape, 3) and rgb.dtype == np.uint8
    spread = rgb.max(axis=-1).astype(int) - rgb.min(axis=-1).astype(int)
    assert spread[heat > 0.9].min() > 20
    grey = np.rint(np.clip(pred.image.pixels, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb[heat == 0][:, 0], grey[heat == 0])
    assert set(pred.heatmaps()) == set(pred.labels)


def test_unknown_finding_names_get_a_suggestion(predictor: Predictor, images: list[Path]) -> None:
    pred = predictor.predict_file(images[0])
    with pytest.raises(UnknownFindingError, match="did you mean 'Cardiomegaly'"):
        pred.heatmap("cardiomegaly")


def test_to_dict_is_json(predictor: Predictor, images: list[Path]) -> None:
    pred = predictor.predict_file(images[-1])
    pred.heatmap(pred.labels[0])
    data = json.loads(json.dumps(pred.to_dict()))
    keys = {"source", "bundle", "model", "runtime", "findings", "warnings", "timings_ms", "provenance"}
    assert set(data) == keys | {"notices", "score_definition", "gate_signals", "gate_override", "input"}
    assert data["input"]["kind"] == "file" and data["input"]["corners"] is None
    assert [f["label"] for f in data["findings"]] == list(predictor.labels)
    assert set(data["findings"][0]) == {
        "label",
        "model_output",
        "score",
        "operating_point",
        "above_operating_point",
        "threshold_note",
    }
    assert set(data["timings_ms"]) == {*STAGES, "cam"}
    assert data["provenance"]["format"] == "dicom" and data["provenance"]["modality"] == "DX"
    assert data["provenance"]["width"] == 360 and data["provenance"]["height"] == 400


# ----------------------------------------------------------------------------- refusals and errors


def _refuse(predictor: Predictor, path: Path) -> ImageRefusedError:
    with pytest.raises(ImageRefusedError) as info:
        predictor.predict_file(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    return info.value


def test_every_refusal_reaches_the_caller(predictor: Predictor, tmp_path: Path) -> None:
    grey = chest()
    cases = {
        "Modality is 'CT'": write_dicom(tmp_path / "ct.dcm", grey, bits_stored=8, modality="CT"),
        "BodyPartExamined is 'KNEE'": write_dicom(tmp_path / "k.dcm", grey, bits_stored=8, body_part="KNEE"),
        "too small to be a radiograph": write_png(tmp_path / "tiny.png", chest(120, 160)),
        "in colour": write_jpeg(tmp_path / "photo.jpg", np.clip(grey[..., None] * (1.0, 0.6, 0.2), 0, 1)),
    }
    for reason, path in cases.items():
        error = _refuse(predictor, path)
        assert len(error.reasons) == 1 and reason in error.reasons[0], (path, error.reasons)


def test_a_lateral_dicom_is_scored_with_a_warning(predictor: Predictor, tmp_path: Path) -> None:
    pred = predictor.predict_file(write_dicom(tmp_path / "lat.dcm", chest(), bits_stored=12, view="LL"))
    warnings = [w for w in pred.warnings if w != NO_LEARNED_GATE_WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("a lateral view")
    assert len(pred.findings) == 14


def test_a_corrupt_file_raises_an_image_decode_error(
    predictor: Predictor, images: list[Path], tmp_path: Path
) -> None:
    broken = truncate_copy(images[0], tmp_path / "broken.png", 0.3)
    with pytest.raises(ImageDecodeError) as info:
        predictor.predict_file(broken)
    assert info.value.path == str(broken)


# ----------------------------------------------------------------------------- no network


def test_no_socket_is_opened_while_loading_and_predicting(
    session_bundle: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[tuple] = []

    class NoSocket(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            attempts.append(args)
            raise AssertionError(f"a socket was created during prediction: {args}")

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    clear_bundle_cache()
    with Predictor.load(session_bundle, model="onnx-int8") as p:
        for path in images:
            pred = p.predict_file(path)
            pred.overlay(pred.ranked()[0].label)
    assert attempts == []
    with pytest.raises(AssertionError):  # the guard is live: it would have caught one
        socket.socket()


def test_heat_map_and_overlay_at_a_display_size(predictor: Predictor, images: list[Path]) -> None:
    """A coarser grid over the same image: the app asks for its screen size instead of 3000 x 2500."""
    pred = predictor.predict_file(images[2])  # 512 x 512
    label = pred.ranked()[0].label
    full, quarter = pred.heatmap(label), pred.heatmap(label, size=(128, 128))
    assert quarter.shape == (128, 128)
    # A quarter-size pixel centre (i + 0.5) * 4 lies between full-size pixels 4i + 1 and 4i + 2.
    np.testing.assert_allclose(
        quarter[4:-4, 4:-4], 0.5 * (full[1::4, 1::4] + full[2::4, 2::4])[4:-4, 4:-4], atol=0.02
    )
    assert pred.heatmap(label, size=(512, 512)) is full
    rgb = pred.overlay(label, size=(128, 100))
    assert rgb.shape == (128, 100, 3) and rgb.dtype == np.uint8


FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8")


@pytest.mark.slow
@pytest.mark.needs_tflite
@pytest.mark.parametrize("model", FORMATS)
def test_every_format_matches_its_parity_report_and_fp32_heat_maps_match_pytorch(
    session_bundle_all_formats: Path, model: str
) -> None:
    """The golden files (a subset of the parity images) through the Predictor, one format at a time:
    |p - p_torch| within what the export's parity report measured for that format; for the FP32
    files the CAM equals PyTorch's."""
    bundle = load_bundle(session_bundle_all_formats)
    golden = load_golden(bundle)
    weight, _ = bundle_module.load_cam_weights(bundle)
    reported = bundle.manifest.parity["formats"][model]["parity"]["max_abs_dp"]
    with Predictor(bundle, open_backend(bundle, model=model), gate=SMALL_IMAGES_GATE) as p:
        assert p.runtime == ("onnxruntime" if model.startswith("onnx") else "litert")
        for index, path in enumerate(_golden_files(bundle)):
            pred = p.predict_file(path)
            probabilities = np.array([f.model_output for f in pred.findings])
            assert np.abs(probabilities - golden["probabilities"][index]).max() <= reported + 1e-5
            if model in ("onnx", "tflite"):
                reference = cam.class_activation_maps(golden["feature_map"][index], weight)
                ours = np.stack([pred.class_activation(label) for label in pred.labels])
                assert np.linalg.norm(ours - reference) <= 1e-4 * np.linalg.norm(reference)
