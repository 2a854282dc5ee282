"""Convolutional encoders (torchvision backbones without their classifier) and the linear head.

Each encoder keeps torchvision's module names, so a torchvision state dict key ``k`` lives at
``encoder.k`` in our models (``features.conv0.weight`` -> ``encoder.features.conv0.weight``,
``layer1.0.conv1.weight`` -> ``encoder.layer1.0.conv1.weight``). That keeps weight loading a
rename, not a translation table.

Backbones are instantiated on the ``meta`` device and only the convolutional part is materialised
and initialised (as torchvision initialises it), so building VGG-16 does not allocate its 100 M
parameter classifier. Nothing is ever downloaded: initial weights come from a local file through
:mod:`training.models.weights`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tvm

from training.models.config import (
    ENCODERS,
    HEADS,
    MULTICLASS_CLASSES,
    MULTICLASS_NEGATIVE,
    MULTICLASS_POSITIVE,
    ModelConfigError,
    did_you_mean,
)


class Encoder(nn.Module):
    """Image (N, C_in, H, W) -> feature map (N, out_channels, H/stride, W/stride).

    ``first_conv`` is the state-dict name (relative to the encoder) of the input convolution, the
    one replaced when ``in_channels != 3`` and adapted when loading 3-channel weights.
    """

    name: str
    out_channels: int
    first_conv: str


class DenseNetEncoder(Encoder):
    """``features`` of a torchvision DenseNet (ending with ``norm5``), then ReLU as torchvision does."""

    first_conv = "features.conv0"

    def __init__(self, name: str, densenet: tvm.DenseNet) -> None:
        super().__init__()
        self.name = name
        self.features = densenet.features
        self.out_channels = self.features.norm5.num_features

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.features(x))


class ResNetEncoder(Encoder):
    """A torchvision ResNet up to ``layer4`` (no average pool, no ``fc``); its names kept."""

    first_conv = "conv1"

    def __init__(self, name: str, resnet: tvm.ResNet) -> None:
        super().__init__()
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        last_block = self.layer4[-1]
        self.out_channels = last_block.conv3.out_channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class PlainEncoder(Encoder):
    """The ``features`` Sequential of VGG / AlexNet (convolutions, ReLUs, max pools)."""

    first_conv = "features.0"

    def __init__(self, name: str, features: nn.Sequential) -> None:
        super().__init__()
        self.name = name
        self.features = features
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        self.out_channels = convs[-1].out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _init_kaiming_fan_out(module: nn.Module) -> None:
    """torchvision's ResNet / VGG initialisation: He-normal (fan_out) convs, BN 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


def _init_densenet(module: nn.Module) -> None:
    """torchvision's DenseNet initialisation: He-normal (fan_in) convs, BN 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


def _init_default(module: nn.Module) -> None:
    """PyTorch's default initialisation (what torchvision's AlexNet uses)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
            m.reset_parameters()


def _materialise(module: nn.Module, init: Callable[[nn.Module], None]) -> nn.Module:
    """Allocate a meta-device module on the CPU and initialise it (to_empty leaves garbage)."""
    module = module.to_empty(device="cpu")
    init(module)
    return module


def _densenet(name: str, **kwargs: object) -> Encoder:
    with torch.device("meta"):
        net = tvm.DenseNet(**kwargs) if kwargs else getattr(tvm, name)(weights=None)
    _materialise(net.features, _init_densenet)
    return DenseNetEncoder(name, net)


def _resnet50(name: str) -> Encoder:
    with torch.device("meta"):
        net = tvm.resnet50(weights=None)
    encoder = ResNetEncoder(name, net)
    return _materialise(encoder, _init_kaiming_fan_out)  # type: ignore[return-value]


def _vgg16(name: str) -> Encoder:
    with torch.device("meta"):
        net = tvm.vgg16(weights=None)
    return PlainEncoder(name, _materialise(net.features, _init_kaiming_fan_out))  # type: ignore[arg-type]


def _alexnet(name: str) -> Encoder:
    with torch.device("meta"):
        net = tvm.alexnet(weights=None)
    return PlainEncoder(name, _materialise(net.features, _init_default))  # type: ignore[arg-type]


_BUILDERS: dict[str, Callable[[], Encoder]] = {
    "densenet121": lambda: _densenet("densenet121"),
    "densenet161": lambda: _densenet("densenet161"),
    "densenet201": lambda: _densenet("densenet201"),
    "resnet50": lambda: _resnet50("resnet50"),
    "vgg16": lambda: _vgg16("vgg16"),
    "alexnet": lambda: _alexnet("alexnet"),
    "tiny-densenet": lambda: _densenet(
        "tiny-densenet", growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=16
    ),
}


def _replace_first_conv(encoder: Encoder, in_channels: int) -> None:
    """Swap the input convolution for one taking ``in_channels`` channels (He-normal initialised)."""
    parent_name, _, attr = encoder.first_conv.rpartition(".")
    parent = encoder.get_submodule(parent_name) if parent_name else encoder
    old: nn.Conv2d = getattr(parent, attr)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    setattr(parent, attr, new)


def build_encoder(name: str, in_channels: int = 3) -> Encoder:
    """Build encoder ``name`` (one of :data:`ENCODERS`) with random weights for ``in_channels`` inputs."""
    if name not in _BUILDERS:
        raise ModelConfigError(
            f"unknown encoder {name!r}; expected one of {list(ENCODERS)}{did_you_mean(name, ENCODERS)}"
        )
    encoder = _BUILDERS[name]()
    if in_channels != 3:
        _replace_first_conv(encoder, in_channels)
    return encoder


class ClassifierHead(nn.Linear):
    """The final Linear layer, shared by CheXNet and the DGC.

    ``binary``: ``(N, F) -> (N, num_classes)`` logits. ``multiclass3``: ``(N, F) -> (N, num_classes, 3)``
    logits (negative, positive, uncertain per label). It subclasses ``nn.Linear`` so that its
    parameters are plainly ``classifier.weight`` / ``classifier.bias``.
    """

    def __init__(self, in_features: int, num_classes: int, head: str = "binary") -> None:
        if head not in HEADS:
            raise ModelConfigError(
                f"unknown head {head!r}; expected one of {list(HEADS)}{did_you_mean(head, HEADS)}"
            )
        per_label = MULTICLASS_CLASSES if head == "multiclass3" else 1
        super().__init__(in_features, num_classes * per_label)
        self.head = head
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits = super().forward(x)
        if self.head == "multiclass3":
            return logits.reshape(-1, self.num_classes, MULTICLASS_CLASSES)
        return logits

    def cam_weights(self) -> tuple[Tensor, Tensor]:
        """Weight ``(num_classes, F)`` and bias ``(num_classes,)`` of the positive-vs-rest score.

        ``binary``: the layer's own weight and bias. ``multiclass3``: ``W_pos - W_neg`` and
        ``b_pos - b_neg``, because softmax over (negative, positive) equals
        ``sigmoid(logit_pos - logit_neg)``: the probability of a positive is then
        ``sigmoid(pooled @ W.T + b)`` for both heads.
        """
        weight, bias = self.weight.detach(), self.bias.detach()
        if self.head == "binary":
            return weight.clone(), bias.clone()
        w = weight.reshape(self.num_classes, MULTICLASS_CLASSES, -1)
        b = bias.reshape(self.num_classes, MULTICLASS_CLASSES)
        pos, neg = MULTICLASS_POSITIVE, MULTICLASS_NEGATIVE
        return w[:, pos] - w[:, neg], b[:, pos] - b[:, neg]
