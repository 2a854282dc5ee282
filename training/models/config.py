"""ModelConfig: which network to build, as data saved with every checkpoint.

The config is the single description of a model: :func:`training.models.factory.build_model`
turns it into an ``nn.Module``, checkpoints store :meth:`ModelConfig.to_dict`, and export reads it
back with :meth:`ModelConfig.from_dict`. This module imports no torch so that a checkpoint's
config can be validated anywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cxr_core.errors import CxrEdgeError

# Class indices of the ``multiclass3`` head, shared with the targets and the loss (re-exported).
from training.data.records import MULTICLASS_CLASSES as MULTICLASS_CLASSES
from training.data.records import MULTICLASS_NEGATIVE as MULTICLASS_NEGATIVE
from training.data.records import MULTICLASS_POSITIVE as MULTICLASS_POSITIVE
from training.data.records import MULTICLASS_UNCERTAIN as MULTICLASS_UNCERTAIN

#: ``chexnet``: DenseNet-121 features -> ReLU -> global average pool -> Linear (Rajpurkar et al. 2017).
#: ``dgc``: Deep Generative Classifier (Mao et al. 2018): encoder -> 3x3 conv + BN -> global max
#: pool (mu) -> sampling layer z = mu + eps * sigma -> Linear.
#: ``dgc-baseline``: the same network without the sampling layer (the paper's deterministic baseline).
ARCHITECTURES: tuple[str, ...] = ("chexnet", "dgc", "dgc-baseline")

#: Convolutional encoders (torchvision backbones without their classifier). ``tiny-densenet`` is a
#: torchvision DenseNet with growth rate 8, one layer per block and 16 initial features: the same
#: class and code paths as DenseNet-121, small enough for tests and the CI demo.
ENCODERS: tuple[str, ...] = (
    "densenet121",
    "densenet161",
    "densenet201",
    "resnet50",
    "vgg16",
    "alexnet",
    "tiny-densenet",
)

#: Encoders CheXNet accepts: it is a DenseNet-121 by definition (tiny-densenet stands in for tests).
CHEXNET_ENCODERS: tuple[str, ...] = ("densenet121", "tiny-densenet")

#: ``binary``: one logit per label, probability = sigmoid(logit).
#: ``multiclass3``: three logits per label (CheXpert U-MultiClass), probability of a positive =
#: softmax over the first two (negative, positive); the third class (uncertain) is used in training only.
HEADS: tuple[str, ...] = ("binary", "multiclass3")


class ModelConfigError(CxrEdgeError, ValueError):
    """A ModelConfig field (or a dict meant to become one) has an invalid value."""


def did_you_mean(value: object, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    hint = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_choice(field_name: str, value: object, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ModelConfigError(
            f"ModelConfig.{field_name}={value!r} is not valid; expected one of {list(choices)}"
            f"{did_you_mean(value, choices)}"
        )


def _check_int(field_name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelConfigError(
            f"ModelConfig.{field_name}={value!r} is not valid; expected an integer >= {minimum}"
        )


@dataclass(frozen=True)
class ModelConfig:
    """Everything :func:`build_model` needs, validated on creation.

    Fields:
        architecture: one of :data:`ARCHITECTURES`.
        encoder: one of :data:`ENCODERS` (CheXNet: densenet121 or tiny-densenet).
        num_classes: number of labels (14 for ChestX-ray14 and CheXpert).
        latent_dim: D, the width of the DGC transition layer and of mu / z (ignored by CheXNet).
        head: ``binary`` or ``multiclass3`` (see :data:`HEADS`).
        in_channels: channels of the input image (3 for ImageNet-style grey replicated to RGB, or 1).
        dropout: dropout probability applied to the pooled vector (CheXNet) or z (DGC) before the
            classifier; 0 disables it.
    """

    architecture: str
    encoder: str = "densenet121"
    num_classes: int = 14
    latent_dim: int = 1024
    head: str = "binary"
    in_channels: int = 3
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("encoder", self.encoder, ENCODERS)
        if self.architecture == "chexnet" and self.encoder not in CHEXNET_ENCODERS:
            raise ModelConfigError(
                f"ModelConfig.encoder={self.encoder!r} is not valid for architecture 'chexnet' "
                f"(a DenseNet-121 by definition); expected one of {list(CHEXNET_ENCODERS)}, "
                f"or use architecture 'dgc' / 'dgc-baseline' for other encoders"
            )
        _check_int("num_classes", self.num_classes, 1)
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("in_channels", self.in_channels, 1)
        _check_choice("head", self.head, HEADS)
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ModelConfigError(
                f"ModelConfig.dropout={dropout!r} is not valid; expected a number in [0, 1)"
            )

    @property
    def stochastic(self) -> bool:
        """True for the DGC, whose train-mode output depends on the random sampling layer."""
        return self.architecture == "dgc"

    @property
    def tag(self) -> str:
        """Short name for files and manifests: ``chexnet-densenet121``, ``dgc-resnet50``, ..."""
        return f"{self.architecture}-{self.encoder}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields (what checkpoints and manifests store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output; unknown or missing keys raise ModelConfigError."""
        if not isinstance(data, Mapping):
            raise ModelConfigError(
                f"a model config must be a mapping of field names to values; got {type(data).__name__}"
            )
        names = [f.name for f in fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            key = unknown[0]
            raise ModelConfigError(
                f"unknown model config key {key!r}; expected keys from {names}{did_you_mean(key, names)}"
            )
        if "architecture" not in data:
            raise ModelConfigError(
                f"model config {dict(data)!r} has no 'architecture'; expected one of {list(ARCHITECTURES)}"
            )
        return cls(**dict(data))
