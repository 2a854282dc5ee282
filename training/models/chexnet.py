"""CheXNet (Rajpurkar et al. 2017): DenseNet-121 features -> ReLU -> global average pool -> Linear.

The model returns logits; :func:`training.models.factory.probabilities` applies the sigmoid (or
the U-MultiClass softmax). Because the pool is an average and the classifier is linear, the
class activation map ``W @ feature_map + b`` averages exactly to the logits (Zhou et al. 2016).
"""

from __future__ import annotations

from torch import Tensor, nn

from training.models.config import ModelConfig, ModelConfigError
from training.models.encoders import ClassifierHead, build_encoder


class CheXNet(nn.Module):
    """DenseNet-121 (or tiny-densenet) encoder, average pool, dropout (0 by default), linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture != "chexnet":
            raise ModelConfigError(
                f"CheXNet needs ModelConfig.architecture='chexnet'; got {config.architecture!r}"
            )
        self.config = config
        self.encoder = build_encoder(config.encoder, config.in_channels)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = ClassifierHead(self.encoder.out_channels, config.num_classes, config.head)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``(N, L)`` (``(N, L, 3)`` for multiclass3); with ``return_features`` also the
        ReLU'd feature map ``(N, C, h, w)`` that the pool averages (the CAM input)."""
        feature_map = self.encoder(x)
        pooled = feature_map.mean(dim=(2, 3))
        logits = self.classifier(self.dropout(pooled))
        if return_features:
            return logits, feature_map
        return logits

    def cam_weights(self) -> tuple[Tensor, Tensor]:
        """``(W, b)`` with ``W`` of shape ``(L, C)`` such that, in eval mode,
        ``logits == feature_map.mean((2, 3)) @ W.T + b`` (binary head) and the positive
        probability is ``sigmoid(feature_map.mean((2, 3)) @ W.T + b)`` (either head)."""
        return self.classifier.cam_weights()
