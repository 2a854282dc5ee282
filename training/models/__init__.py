"""Models: CheXNet (DenseNet-121) and Deep Generative Classifiers over torchvision encoders.

``build_model(ModelConfig(...))`` makes a model; ``probabilities(logits, head)`` turns its logits
into per-finding probabilities; ``load_initial_weights(model, path)`` fills it from a local file.
"""

from training.models.chexnet import CheXNet
from training.models.config import (
    ARCHITECTURES,
    CHEXNET_ENCODERS,
    ENCODERS,
    HEADS,
    MULTICLASS_NEGATIVE,
    MULTICLASS_POSITIVE,
    MULTICLASS_UNCERTAIN,
    ModelConfig,
    ModelConfigError,
)
from training.models.dgc import DGC, GaussianSampling, TransitionLayer
from training.models.encoders import ClassifierHead, Encoder, build_encoder
from training.models.factory import build_model, probabilities
from training.models.weights import LoadReport, WeightsLoadError, load_initial_weights

__all__ = [
    "ARCHITECTURES",
    "CHEXNET_ENCODERS",
    "ENCODERS",
    "HEADS",
    "MULTICLASS_NEGATIVE",
    "MULTICLASS_POSITIVE",
    "MULTICLASS_UNCERTAIN",
    "CheXNet",
    "ClassifierHead",
    "DGC",
    "Encoder",
    "GaussianSampling",
    "LoadReport",
    "ModelConfig",
    "ModelConfigError",
    "TransitionLayer",
    "WeightsLoadError",
    "build_encoder",
    "build_model",
    "load_initial_weights",
    "probabilities",
]
