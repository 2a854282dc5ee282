"""Tiny real checkpoints, real PNG calibration images and tiny real bundles, for every test package.

The fixtures are registered for the whole suite by ``tests/conftest.py``; the helpers
(``tiny_model``, ``write_checkpoint``, ``SPEC``) may be imported directly.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_core.labels import CHESTXRAY14
from cxr_core.preprocess import PreprocessSpec
from tests.file_factory import write_png
from training.checkpoint import save_checkpoint
from training.models import ModelConfig, build_model

#: 64 px input: the tiny DenseNet's feature map is 2x2, so pooling and the CAM are not trivial.
SPEC = PreprocessSpec(input_size=64, resize_to=72)
#: The all-formats bundle uses 72 px: at 64 px two of the tiny DenseNet's concatenations join a
#: tensor with C == H == W (16x16x16, 8x8x8), which sends onnx2tf into a 576-way transposition
#: search per concatenation (conversion 21 s of CPU instead of 9 s). Feature map still 2x2.
TFLITE_SPEC = PreprocessSpec(input_size=72, resize_to=80)
#: Every registry format, built once per session by ``session_bundle_all_formats``.
ALL_FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8")
CALIBRATION_IMAGES = 8


def tiny_model(architecture: str, seed: int = 0) -> torch.nn.Module:
    """A tiny-densenet model with non-trivial BatchNorm statistics (as after training), eval mode."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(architecture=architecture, encoder="tiny-densenet", latent_dim=64))
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator) * 1.5)
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.2 * (torch.rand(n, generator=generator) - 0.5))
    return model.eval()


def write_checkpoint(
    path: Path, architecture: str, run_config: dict | None = None, spec: PreprocessSpec = SPEC
) -> Path:
    """A real cxr-edge checkpoint of a fresh tiny model, with operating points."""
    model = tiny_model(architecture)
    labels = list(CHESTXRAY14.labels)
    payload = {
        "model_config": model.config.to_dict(),
        "preprocess": spec.to_dict(),
        "labels": labels,
        "dataset": "synthetic",
        "model_state": model.state_dict(),
        "epoch": 1,
        "global_step": 4,
        "run_config": run_config or {},
        "operating_points": [0.5] * len(labels),
    }
    return save_checkpoint(path, payload)


@pytest.fixture(scope="session")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real 8-bit PNG radiograph-like images (smooth gradients, a bright blob and noise)."""
    root = tmp_path_factory.mktemp("calibration")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:90] / 80.0
    for i in range(CALIBRATION_IMAGES):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        image = 0.3 * yy + 0.4 * blob + 0.1 * rng.random(yy.shape)
        write_png(root / f"img_{i:02d}.png", np.clip(image, 0, 1))
    return root


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``make(architecture)``: a checkpoint path per architecture, written once per session."""
    root = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in made:
            made[architecture] = write_checkpoint(root / f"{architecture}.pt", architecture)
        return made[architecture]

    return make


@pytest.fixture(scope="session")
def session_bundle(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_factory: Callable[[str], Path], calibration_dir: Path
) -> Path:
    """One FP32 + INT8 ONNX bundle of the tiny CheXNet, built through the library entry point."""
    from quantize.pipeline import ExportRequest, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "chexnet"
    request = ExportRequest(
        checkpoint_factory("chexnet"), out, formats=("onnx", "onnx-int8"), calibration_dir=calibration_dir
    )
    export_bundle(request)
    return out


@pytest.fixture(scope="session")
def session_bundle_all_formats(tmp_path_factory: pytest.TempPathFactory, calibration_dir: Path) -> Path:
    """The tiny CheXNet (72 px, see TFLITE_SPEC) through all five formats, FP32/FP16/INT8 TFLite included.

    Built once per session (about 40 s on 2 cores, most of it the onnx2tf conversion); tests that use
    it need the TFLite toolchain (mark them ``needs_tflite``). The parity gate is on: every format passed.
    """
    from quantize.pipeline import ExportRequest, export_bundle

    root = tmp_path_factory.mktemp("bundles-all")
    checkpoint = write_checkpoint(root / "chexnet-72.pt", "chexnet", spec=TFLITE_SPEC)
    out = root / "chexnet"
    export_bundle(ExportRequest(checkpoint, out, formats=ALL_FORMATS, calibration_dir=calibration_dir))
    return out


@pytest.fixture
def bundle_copy(session_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle that a test may damage."""
    target = tmp_path / "bundle"
    shutil.copytree(session_bundle, target)
    return target


#: Autoencoder epochs for the tests' 120-phantom sets of 64 px (a few dozen training images): at the
#: default 20 the threshold on their 35 validation images (0.26 at the 90% bound) lay below a noise
#: image's SSIM (0.39-0.40); at 60 it is 0.48, against 0.32 for noise and 0.35 for flat grey.
TINY_AUTOENCODER_EPOCHS = 60


@pytest.fixture(scope="session")
def gated_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CheXNet (FP32 and INT8 ONNX) exported from a checkpoint whose run config records a
    120-image phantom set, so the export fits every learned-gate signal on its training split and sets
    the thresholds on its validation split (docs/input-gate.md). Treat it as read-only."""
    from quantize.pipeline import ExportRequest, export_bundle
    from training.data.synthetic import generate_chestxray14

    root = tmp_path_factory.mktemp("gate-phantoms")
    generate_chestxray14(root, n_images=120, image_size=64, seed=0, progress=False, overwrite=True)
    checkpoint = write_checkpoint(
        tmp_path_factory.mktemp("gate-ckpt") / "chexnet.pt",
        "chexnet",
        {"dataset": "synthetic", "data_root": str(root), "val_fraction": 0.3},
    )
    out = tmp_path_factory.mktemp("gate-bundle") / "gated"
    export_bundle(
        ExportRequest(
            checkpoint,
            out,
            formats=("onnx", "onnx-int8"),
            calibration_images=8,
            time_formats=False,
            enforce_gate=False,  # random weights: parity reported, not gated
            autoencoder_epochs=TINY_AUTOENCODER_EPOCHS,
        )
    )
    return out
