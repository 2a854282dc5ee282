"""CheXNet and DGC models: configs, shapes, CAM identities, the sampling layer, baseline equivalence."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")

from torchvision.models.densenet import _DenseBlock, _Transition  # noqa: E402

from training.models import (  # noqa: E402
    ARCHITECTURES,
    DGC,
    ENCODERS,
    CheXNet,
    ModelConfig,
    ModelConfigError,
    build_encoder,
    build_model,
    probabilities,
)

pytestmark = pytest.mark.needs_torch

#: Channels of each encoder's final feature map (torchvision's backbones, classifier removed).
ENCODER_CHANNELS = {
    "densenet121": 1024,
    "densenet161": 2208,
    "densenet201": 1920,
    "resnet50": 2048,
    "vgg16": 512,
    "alexnet": 256,
    # 16 initial features, growth 8, one layer per block, transitions halve: 16+8=24 -> 12+8=20 -> 10+8=18
    # -> 9+8=17.
    "tiny-densenet": 17,
}


def _tiny(architecture: str, **kwargs: object) -> torch.nn.Module:
    defaults: dict[str, object] = {"encoder": "tiny-densenet", "latent_dim": 16, "num_classes": 14}
    defaults.update(kwargs)
    return build_model(ModelConfig(architecture, **defaults))  # type: ignore[arg-type]


# --- ModelConfig -------------------------------------------------------------------------------


def test_config_round_trips_through_dict() -> None:
    config = ModelConfig("dgc", "resnet50", num_classes=5, latent_dim=256, head="multiclass3", dropout=0.2)
    data = config.to_dict()
    assert data["encoder"] == "resnet50" and data["latent_dim"] == 256
    assert ModelConfig.from_dict(data) == config
    assert config.tag == "dgc-resnet50"
    assert config.stochastic and not ModelConfig("dgc-baseline").stochastic


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"architecture": "dgc-basline"}, "did you mean 'dgc-baseline'"),
        ({"architecture": "dgc", "encoder": "densenet-121"}, "did you mean 'densenet121'"),
        ({"architecture": "dgc", "encoder": "resnet-50"}, "did you mean 'resnet50'"),
        ({"architecture": "chexnet", "encoder": "resnet50"}, "not valid for architecture 'chexnet'"),
        ({"architecture": "dgc", "num_classes": 0}, "num_classes=0"),
        ({"architecture": "dgc", "latent_dim": True}, "latent_dim=True"),
        ({"architecture": "dgc", "head": "multiclass"}, "did you mean 'multiclass3'"),
        ({"architecture": "dgc", "dropout": 1.0}, "dropout=1.0"),
        ({"architecture": "dgc", "in_channels": 0}, "in_channels=0"),
    ],
)
def test_config_rejects_bad_values_with_a_hint(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ModelConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(**kwargs)  # type: ignore[arg-type]


def test_config_from_dict_rejects_unknown_and_missing_keys() -> None:
    with pytest.raises(ModelConfigError, match="key 'latent_dims'.*did you mean 'latent_dim'"):
        ModelConfig.from_dict({"architecture": "dgc", "latent_dims": 8})
    with pytest.raises(ModelConfigError, match="has no 'architecture'"):
        ModelConfig.from_dict({"encoder": "densenet121"})
    with pytest.raises(ModelConfigError, match="must be a mapping"):
        ModelConfig.from_dict(["dgc"])  # type: ignore[arg-type]


def test_every_configured_encoder_name_builds() -> None:
    assert set(ENCODER_CHANNELS) == set(ENCODERS)
    with pytest.raises(ModelConfigError, match="did you mean 'alexnet'"):
        build_encoder("alexnett")


# --- shapes ------------------------------------------------------------------------------------


def test_real_encoders_build_and_give_the_right_shapes() -> None:
    """Each real torchvision encoder once, under a DGC, with a 64 px input (2x2 maps; AlexNet 1x1)."""
    x = torch.randn(2, 3, 64, 64)
    for encoder, channels in ENCODER_CHANNELS.items():
        model = build_model(ModelConfig("dgc", encoder, latent_dim=8, num_classes=3)).eval()
        assert model.encoder.out_channels == channels
        assert model.transition.conv.in_channels == channels
        with torch.no_grad():
            features = model.encoder(x)
            logits, fmap = model(x, return_features=True)
        side = 1 if encoder == "alexnet" else 2
        assert features.shape == (2, channels, side, side), encoder
        assert logits.shape == (2, 3) and fmap.shape == (2, 8, side, side), encoder
        assert all(p.device.type == "cpu" for p in model.parameters())
        assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


def test_chexnet_densenet121_shapes() -> None:
    model = build_model(ModelConfig("chexnet", "densenet121")).eval()
    assert isinstance(model, CheXNet)
    with torch.no_grad():
        logits, fmap = model(torch.randn(1, 3, 64, 64), return_features=True)
    assert logits.shape == (1, 14) and fmap.shape == (1, 1024, 2, 2)
    assert bool((fmap >= 0).all()), "the CheXNet feature map is ReLU'd"
    assert model.classifier.in_features == 1024 and model.classifier.out_features == 14


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("head", ["binary", "multiclass3"])
def test_tiny_models_shapes_and_heads(architecture: str, head: str) -> None:
    model = _tiny(architecture, head=head, num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        logits2, fmap = model(x, return_features=True)
    expected = (3, 5, 3) if head == "multiclass3" else (3, 5)
    assert logits.shape == expected and torch.equal(logits, logits2)
    channels = 17 if architecture == "chexnet" else 16
    assert fmap.shape == (3, channels, 1, 1)
    probs = probabilities(logits, head)
    assert probs.shape == (3, 5) and bool(((probs >= 0) & (probs <= 1)).all())


def test_tiny_densenet_is_a_real_torchvision_densenet() -> None:
    encoder = build_encoder("tiny-densenet")
    names = [name for name, _ in encoder.features.named_children()]
    assert names == [
        "conv0", "norm0", "relu0", "pool0",
        "denseblock1", "transition1", "denseblock2", "transition2",
        "denseblock3", "transition3", "denseblock4", "norm5",
    ]  # fmt: skip
    assert isinstance(encoder.features.denseblock1, _DenseBlock)
    assert isinstance(encoder.features.transition1, _Transition)
    assert list(tvm.densenet121(weights=None).features.named_children())[-1][0] == "norm5"


def test_probabilities_multiclass3_is_softmax_over_negative_and_positive() -> None:
    logits = torch.tensor([[[0.3, 1.2, 4.0], [-2.0, 0.5, -1.0]]])
    expected = torch.softmax(logits[..., :2], dim=-1)[..., 1]
    torch.testing.assert_close(probabilities(logits, "multiclass3"), expected)
    torch.testing.assert_close(probabilities(logits[..., 0], "binary"), torch.sigmoid(logits[..., 0]))
    with pytest.raises(ModelConfigError, match=r"shape \(N, L, 3\)"):
        probabilities(torch.zeros(2, 4), "multiclass3")
    with pytest.raises(ModelConfigError, match="did you mean 'binary'"):
        probabilities(logits, "binarry")


def test_build_model_needs_a_config() -> None:
    with pytest.raises(ModelConfigError, match="needs a ModelConfig"):
        build_model({"architecture": "dgc"})  # type: ignore[arg-type]


# --- CAM identities ----------------------------------------------------------------------------


def test_chexnet_logits_equal_pooled_features_times_cam_weights() -> None:
    model = _tiny("chexnet").eval()
    with torch.no_grad():
        logits, fmap = model(torch.randn(4, 3, 64, 64), return_features=True)
    weight, bias = model.cam_weights()
    assert weight.shape == (14, 17) and bias.shape == (14,)
    torch.testing.assert_close(logits, fmap.mean((2, 3)) @ weight.T + bias, rtol=1e-6, atol=1e-6)
    # The CAM (W @ map + b at each location) averages back to the logits.
    cam = torch.einsum("lc,nchw->nlhw", weight, fmap) + bias[None, :, None, None]
    torch.testing.assert_close(cam.mean((2, 3)), logits, rtol=1e-5, atol=1e-6)


def test_multiclass3_cam_weights_give_the_positive_probability() -> None:
    model = _tiny("chexnet", head="multiclass3", num_classes=4).eval()
    with torch.no_grad():
        logits, fmap = model(torch.randn(2, 3, 64, 64), return_features=True)
    weight, bias = model.cam_weights()
    assert weight.shape == (4, 17)
    torch.testing.assert_close(
        torch.sigmoid(fmap.mean((2, 3)) @ weight.T + bias), probabilities(logits, "multiclass3")
    )


@pytest.mark.parametrize("architecture", ["dgc", "dgc-baseline"])
def test_dgc_eval_logits_equal_max_pooled_map_times_cam_weights(architecture: str) -> None:
    model = _tiny(architecture).eval()
    with torch.no_grad():
        logits, fmap = model(torch.randn(3, 3, 64, 64), return_features=True)
    weight, bias = model.cam_weights()
    assert fmap.shape == (3, 16, 2, 2) and weight.shape == (14, 16)
    torch.testing.assert_close(logits, fmap.amax((2, 3)) @ weight.T + bias, rtol=1e-6, atol=1e-6)


# --- the sampling layer ------------------------------------------------------------------------


def test_gradients_reach_mu_and_v() -> None:
    model = _tiny("dgc").train()
    logits = model(torch.randn(4, 3, 32, 32))
    logits.square().mean().backward()
    conv_grad = model.transition.conv.weight.grad
    v_grad = model.sampling.v.grad
    assert conv_grad is not None and bool((conv_grad != 0).any())
    assert v_grad is not None and v_grad.shape == (16,) and bool((v_grad != 0).any())


def test_train_outputs_follow_the_rng_and_eval_outputs_are_deterministic() -> None:
    model = _tiny("dgc")
    x = torch.randn(4, 3, 32, 32)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    torch.manual_seed(1)
    c = model(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, c)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        d = model(x)
        torch.manual_seed(2)
        e = model(x)
    assert torch.equal(d, e)


def test_sigma_is_exp_half_v_and_moves_with_an_optimiser_step() -> None:
    model = _tiny("dgc").train()
    sampling = model.sampling
    torch.testing.assert_close(sampling.sigma, torch.exp(sampling.v / 2))
    before = sampling.sigma.detach().clone()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    targets = torch.randint(0, 2, (4, 14)).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(torch.randn(4, 3, 32, 32)), targets)
    loss.backward()
    optimiser.step()
    assert not torch.allclose(sampling.sigma, before)


def test_dgc_initialisation_follows_the_paper() -> None:
    model = _tiny("dgc", latent_dim=64)
    bn = model.transition.bn
    assert bool(((bn.weight >= 0) & (bn.weight <= 1)).all()) and bn.weight.std() > 0.1
    assert bool((bn.bias == 0).all()) and bool((model.classifier.bias == 0).all())
    v = model.sampling.v
    assert bool(((v >= 0) & (v <= 1)).all()) and v.std() > 0.1
    conv = model.transition.conv.weight.detach()
    fan_in = conv.shape[1] * conv.shape[2] * conv.shape[3]
    bound = (2.0**0.5) * (3.0 / fan_in) ** 0.5  # He-uniform with the ReLU gain
    assert float(conv.abs().max()) <= bound and float(conv.abs().max()) > 0.8 * bound


def test_baseline_differs_from_dgc_only_by_the_sampling_layer() -> None:
    dgc = _tiny("dgc")
    baseline = _tiny("dgc-baseline")
    assert isinstance(dgc, DGC) and baseline.sampling is None
    dgc_names = set(dgc.state_dict())
    assert dgc_names - set(baseline.state_dict()) == {"sampling.v"}
    assert set(baseline.state_dict()) <= dgc_names
    state = {k: v for k, v in dgc.state_dict().items() if k != "sampling.v"}
    baseline.load_state_dict(state, strict=True)
    dgc.eval(), baseline.eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(dgc(x), baseline(x))


# --- memory format, channels, dropout ----------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_channels_last_gives_the_same_outputs(architecture: str) -> None:
    model = _tiny(architecture).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference, ref_map = model(x, return_features=True)
        model = model.to(memory_format=torch.channels_last)
        logits, fmap = model(x.to(memory_format=torch.channels_last), return_features=True)
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fmap, ref_map, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ["tiny-densenet", "resnet50", "vgg16", "alexnet"])
def test_single_channel_input_replaces_the_first_convolution(encoder: str) -> None:
    model = build_model(ModelConfig("dgc-baseline", encoder, in_channels=1, latent_dim=8)).eval()
    first = model.encoder.get_submodule(model.encoder.first_conv)
    assert first.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 14)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 64, 64))


def test_dropout_is_applied_before_the_classifier_in_training_only() -> None:
    model = _tiny("chexnet", dropout=0.5)
    assert model.dropout.p == 0.5
    x = torch.randn(2, 3, 64, 64)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
