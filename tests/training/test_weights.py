"""load_initial_weights with real files written by the tests: torchvision (old DenseNet key style),
CheXNet-style ``module.densenet121...`` checkpoints, our own checkpoints, and garbage."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")

from training.models import (  # noqa: E402
    ModelConfig,
    WeightsLoadError,
    build_model,
    load_initial_weights,
)
from training.models.weights import new_densenet_key  # noqa: E402

pytestmark = pytest.mark.needs_torch

_NEW_STYLE = re.compile(r"^(.*denselayer\d+\.(?:norm|conv))([12])\.(.+)$")


def _old_style(key: str) -> str:
    """``denselayer1.norm1.weight`` -> ``denselayer1.norm.1.weight`` (torchvision's first DenseNet files)."""
    match = _NEW_STYLE.match(key)
    return f"{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else key


def _old_torchvision_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A torchvision DenseNet state dict as the 2017 files store it (old keys, no num_batches_tracked)."""
    return {
        _old_style(k): v.clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")
    }


@pytest.fixture(scope="module")
def densenet121() -> torch.nn.Module:
    torch.manual_seed(0)
    net = tvm.densenet121(weights=None)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong copy would show
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_old_key_renaming() -> None:
    assert _old_style("features.denseblock2.denselayer7.conv2.weight") == (
        "features.denseblock2.denselayer7.conv.2.weight"
    )
    old = "module.densenet121.features.denseblock1.denselayer1.norm.1.running_var"
    assert new_densenet_key(old) == "module.densenet121.features.denseblock1.denselayer1.norm1.running_var"
    assert new_densenet_key("features.transition1.norm.weight") == "features.transition1.norm.weight"


def test_torchvision_old_style_file_loads_into_chexnet(
    densenet121: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = _old_torchvision_state(densenet121)
    assert "features.denseblock1.denselayer1.norm.1.weight" in state
    state["features.extra.weight"] = torch.zeros(3)  # something the model has no place for
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(state, path)

    model = build_model(ModelConfig("chexnet", "densenet121")).eval()
    with caplog.at_level(logging.WARNING, logger="training.models.weights"):
        report = load_initial_weights(model, path)
    assert report.kind == "torchvision"
    n_encoder = sum(1 for k in state if k.startswith("features.")) - 1
    assert len(report.matched) == n_encoder and not report.adapted and not report.shape_mismatched
    assert report.unmatched == ("encoder.features.extra.weight",)
    assert set(report.ignored) == {"classifier.weight", "classifier.bias"}
    assert set(report.missing) == {"classifier.weight", "classifier.bias"}
    assert "encoder.features.extra.weight" in caplog.text and str(path) in caplog.text

    # The encoder now computes exactly what torchvision's DenseNet-121 computes.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.relu(densenet121.features(x))
        _, fmap = model(x, return_features=True)
    torch.testing.assert_close(fmap, expected)


def _chexnet_checkpoint(densenet121: torch.nn.Module) -> tuple[dict[str, object], torch.Tensor, torch.Tensor]:
    state = {f"module.densenet121.{k}": v for k, v in _old_torchvision_state(densenet121).items()}
    del state["module.densenet121.classifier.weight"], state["module.densenet121.classifier.bias"]
    weight, bias = torch.randn(14, 1024) * 0.05, torch.randn(14) * 0.1
    state["module.densenet121.classifier.0.weight"] = weight
    state["module.densenet121.classifier.0.bias"] = bias
    checkpoint = {
        "epoch": 7,
        "arch": "densenet121",
        "best_loss": 0.15,
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    }
    return checkpoint, weight, bias


def test_chexnet_style_checkpoint_loads_completely(densenet121: torch.nn.Module, tmp_path: Path) -> None:
    checkpoint, weight, bias = _chexnet_checkpoint(densenet121)
    path = tmp_path / "model.pth.tar"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)  # the 2017 file predates zip

    model = build_model(ModelConfig("chexnet", "densenet121")).eval()
    report = load_initial_weights(model, path)
    assert report.kind == "chexnet" and report.clean, report.summary()
    assert report.loaded == len(checkpoint["state_dict"])  # type: ignore[arg-type]
    assert torch.equal(model.classifier.weight, weight) and torch.equal(model.classifier.bias, bias)

    # Same logits as the published architecture: torchvision DenseNet-121 with Linear(1024, 14).
    reference = tvm.densenet121(weights=None)
    reference.features.load_state_dict(densenet121.features.state_dict())
    reference.classifier = torch.nn.Linear(1024, 14)
    reference.classifier.load_state_dict({"weight": weight, "bias": bias})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=1e-5, atol=1e-5)


def test_chexnet_checkpoint_into_a_dgc_takes_the_encoder_only(
    densenet121: torch.nn.Module, tmp_path: Path
) -> None:
    checkpoint, _, _ = _chexnet_checkpoint(densenet121)
    path = tmp_path / "model.pth.tar"
    torch.save(checkpoint, path)
    model = build_model(ModelConfig("dgc", "densenet121", latent_dim=32))
    report = load_initial_weights(model, path, kind="chexnet")
    assert set(report.ignored) == {
        "module.densenet121.classifier.0.weight",
        "module.densenet121.classifier.0.bias",
    }
    assert not report.unmatched and not report.shape_mismatched
    assert {k.split(".")[0] for k in report.missing} == {"transition", "sampling", "classifier"}
    assert torch.equal(model.encoder.features.conv0.weight, densenet121.features.conv0.weight)


def test_classifier_of_another_size_is_reported_as_mismatched(
    densenet121: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, _, _ = _chexnet_checkpoint(densenet121)
    path = tmp_path / "model.pth.tar"
    torch.save(checkpoint, path)
    model = build_model(ModelConfig("chexnet", "densenet121", num_classes=5))
    with caplog.at_level(logging.WARNING, logger="training.models.weights"):
        report = load_initial_weights(model, path)
    assert ("classifier.weight", (14, 1024), (5, 1024)) in report.shape_mismatched
    assert set(report.missing) == {"classifier.weight", "classifier.bias"}
    assert "shape-mismatched" in caplog.text
    assert "classifier.weight file (14, 1024) vs model (5, 1024)" in caplog.text


def test_torchvision_resnet50_loads_into_a_dgc(tmp_path: Path) -> None:
    torch.manual_seed(1)
    resnet = tvm.resnet50(weights=None).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.state_dict(), path)
    model = build_model(ModelConfig("dgc-baseline", "resnet50", latent_dim=8)).eval()
    report = load_initial_weights(model, path, kind="torchvision")
    assert set(report.ignored) == {"fc.weight", "fc.bias"} and not report.unmatched
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(resnet.children())[:-2])
        torch.testing.assert_close(model.encoder(x), trunk(x))


def test_own_checkpoint_round_trips_with_and_without_dataparallel_prefix(tmp_path: Path) -> None:
    config = ModelConfig("dgc", "tiny-densenet", latent_dim=16)
    source = build_model(config)
    for name, state in (
        ("plain", source.state_dict()),
        ("wrapped", {f"module.{k}": v for k, v in source.state_dict().items()}),
    ):
        path = tmp_path / f"{name}.pt"
        torch.save({"model": state, "config": config.to_dict(), "epoch": 3}, path)
        target = build_model(config)
        report = load_initial_weights(target, path)
        assert report.kind == "cxr-edge" and report.clean and not report.ignored, report.summary()
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


def test_rgb_weights_are_summed_for_a_single_channel_model(tmp_path: Path) -> None:
    torch.manual_seed(2)
    tiny = tvm.DenseNet(growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=16)
    path = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), path)
    rgb = build_model(ModelConfig("chexnet", "tiny-densenet")).eval()
    grey = build_model(ModelConfig("chexnet", "tiny-densenet", in_channels=1)).eval()
    assert load_initial_weights(rgb, path).adapted == ()
    report = load_initial_weights(grey, path)
    assert report.adapted == ("encoder.features.conv0.weight",) and not report.shape_mismatched
    grey.classifier.load_state_dict(rgb.classifier.state_dict())
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


# --- bad files ---------------------------------------------------------------------------------


def _model() -> torch.nn.Module:
    return build_model(ModelConfig("chexnet", "tiny-densenet"))


def test_garbage_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"this is not a checkpoint\x00\x01")
    with pytest.raises(WeightsLoadError, match=re.escape(str(path))) as info:
        load_initial_weights(_model(), path)
    assert "weights_only=True" in str(info.value)


def test_missing_file_and_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(WeightsLoadError, match="no such file"):
        load_initial_weights(_model(), tmp_path / "absent.pth")
    path = tmp_path / "w.pth"
    torch.save(_model().state_dict(), path)
    with pytest.raises(WeightsLoadError, match="unknown weights kind 'imagenet'"):
        load_initial_weights(_model(), path, kind="imagenet")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ([1, 2, 3], "holds a list"),
        ({"epoch": 3, "best": 0.5}, "neither a state dict"),
        ({"foo.weight": torch.zeros(3)}, "no tensor fits the model"),
    ],
)
def test_files_without_usable_weights_are_refused(content: object, fragment: str, tmp_path: Path) -> None:
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(WeightsLoadError, match=fragment) as info:
        load_initial_weights(_model(), path)
    assert str(path) in str(info.value)


def test_pickled_objects_need_allow_pickle(tmp_path: Path) -> None:
    source = _model()
    path = tmp_path / "with_args.pth.tar"
    torch.save({"state_dict": source.state_dict(), "args": argparse.Namespace(lr=0.001)}, path)
    with pytest.raises(WeightsLoadError, match="weights_only"):
        load_initial_weights(_model(), path)
    report = load_initial_weights(_model(), path, allow_pickle=True)
    assert report.clean and report.loaded == len(source.state_dict())
