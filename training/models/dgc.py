"""Deep Generative Classifier (Mao et al., BIBM 2018) and its deterministic baseline.

encoder (torchvision backbone features) -> transition layer (3x3 conv C -> D, BatchNorm, global
max pool) = mu -> sampling layer z = mu + eps * sigma, eps ~ N(0, I), sigma^2 = exp(v) with v a
learnable D-vector -> Linear(D, L). In eval mode z = mu, so inference is deterministic and the
exported graph has no random node. The baseline (``dgc-baseline``) is the same network without the
sampling layer: the two share every parameter name except ``sampling.v``.

The max pool is written ``torch.amax(x, dim=(2, 3))``: the litert-torch converter needs amax
instead of an adaptive max pool (docs/toolchain-notes.md), and ONNX export handles it.

Class activation maps: the logits are ``W @ max_hw(map) + b``, not ``W @ mean_hw(map) + b``, so
``W @ map + b`` at each location (what a CAM shows) is only an approximation of where the evidence
is for a DGC: each channel contributes only through its single maximal location.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.config import ModelConfig, ModelConfigError
from training.models.encoders import ClassifierHead, build_encoder


class TransitionLayer(nn.Module):
    """3x3 convolution C -> D (padding 1, no bias: the BN shift replaces it) and BatchNorm2d.

    Initialised as in the paper: He-uniform conv weights, BN weight U(0, 1), BN bias 0.
    """

    def __init__(self, in_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, latent_dim, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(latent_dim)
        nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="relu")
        nn.init.uniform_(self.bn.weight, 0.0, 1.0)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Feature map ``(N, D, h, w)`` before max pooling (the DGC's CAM input)."""
        return self.bn(self.conv(x))


class GaussianSampling(nn.Module):
    """Reparameterised sampling z = mu + eps * exp(v / 2), eps ~ N(0, I), in train mode; z = mu in eval.

    ``v`` (the log-variance, one value per latent dimension, shared across inputs) is initialised
    U(0, 1) as in the paper and learned by back-propagation through the sample.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.empty(latent_dim).uniform_(0.0, 1.0))

    @property
    def sigma(self) -> Tensor:
        """Standard deviation exp(v / 2), shape ``(D,)``."""
        return torch.exp(0.5 * self.v)

    def forward(self, mu: Tensor) -> Tensor:
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * self.sigma


class DGC(nn.Module):
    """Deep Generative Classifier (``architecture='dgc'``) or its baseline (``'dgc-baseline'``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture not in ("dgc", "dgc-baseline"):
            raise ModelConfigError(
                f"DGC needs ModelConfig.architecture 'dgc' or 'dgc-baseline'; got {config.architecture!r}"
            )
        self.config = config
        self.encoder = build_encoder(config.encoder, config.in_channels)
        self.transition = TransitionLayer(self.encoder.out_channels, config.latent_dim)
        self.sampling: GaussianSampling | None = (
            GaussianSampling(config.latent_dim) if config.architecture == "dgc" else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = ClassifierHead(config.latent_dim, config.num_classes, config.head)
        nn.init.kaiming_uniform_(self.classifier.weight, nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``(N, L)`` (``(N, L, 3)`` for multiclass3); with ``return_features`` also the
        transition map after BN, before max pooling, ``(N, D, h, w)``."""
        feature_map = self.transition(self.encoder(x))
        mu = torch.amax(feature_map, dim=(2, 3))
        z = self.sampling(mu) if self.sampling is not None else mu
        logits = self.classifier(self.dropout(z))
        if return_features:
            return logits, feature_map
        return logits

    def cam_weights(self) -> tuple[Tensor, Tensor]:
        """Classifier ``(W, b)``, ``W`` of shape ``(L, D)``: in eval mode
        ``logits == amax(feature_map, (2, 3)) @ W.T + b`` (binary head). A CAM built from them is an
        approximation for the DGC (max, not average, pooling); see the module docstring."""
        return self.classifier.cam_weights()
