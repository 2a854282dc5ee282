"""The training run configuration: one typed, frozen dataclass, presets, files and flags.

Precedence, lowest first: the dataclass defaults < a named preset (``--preset dgc-paper``) < a
YAML/JSON config file (``--config run.yaml``) < command-line flags (``--lr 1e-4``). The resolved
config is written to ``config.yaml`` in the run folder and stored in every checkpoint.
Unknown keys (in a file or a preset) are refused with a "did you mean" suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec
from training.fileio import atomic_write_text


class ConfigError(CxrEdgeError, ValueError):
    """A training config value, key, preset or file is invalid."""


#: Dataset kinds (``synthetic`` is the phantom set of ``cxr-synth`` in the ChestX-ray14 layout).
DATASETS = ("chestxray14", "chexpert", "synthetic")
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("plateau", "none")
PLATEAU_METRICS = ("mean_auc", "val_loss")
#: ``none``; ``hflip`` (random horizontal flip, CheXNet); ``hflip-rotate`` (flip + rotation of up
#: to ``rotate_degrees``); ``photo`` (CheXphoto's photographic transformations: glare, moire, tilt,
#: blur, noise, brightness/contrast); ``hflip-photo`` (the flip, then the photographic ones).
AUGMENTATIONS = ("none", "hflip", "hflip-rotate", "photo", "hflip-photo")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "off", "bf16", "fp16")
AUTO_ON_OFF = ("auto", "on", "off")


#: The choice-valued fields this module validates, for help texts.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "plateau_metric": PLATEAU_METRICS,
    "augment": AUGMENTATIONS,
    "device": DEVICES,
    "amp": AMP_MODES,
    "channels_last": AUTO_ON_OFF,
    "study_level": AUTO_ON_OFF,
}


def _did_you_mean(value: object, choices: typing.Iterable[str]) -> str:
    hint = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, validated on creation. See docs/training.md for each field."""

    # --- data
    dataset: str = "chestxray14"
    data_root: str = ""
    val_fraction: float = 0.125
    frontal_only: bool = False
    uncertainty_policy: str = "u-ignore"
    study_level: str = "auto"  # auto: on for CheXpert (max over a study's images), off otherwise
    skip_preflight: bool = False
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # --- preprocessing and augmentation (the PreprocessSpec travels with the checkpoint)
    input_size: int = 224
    resize_to: int = 256
    resize: str = "shorter_side"
    interpolation: str = "bilinear"
    augment: str = "none"
    rotate_degrees: float = 5.0
    # --- model
    architecture: str = "chexnet"
    encoder: str = "densenet121"
    latent_dim: int = 1024
    head: str = "binary"
    dropout: float = 0.0
    init_weights: str = ""  # a .pt/.pth file: ImageNet backbone or a previous checkpoint
    # --- optimisation
    loss: str = "bce"
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 16
    epochs: int = 10
    scheduler: str = "plateau"
    plateau_metric: str = "mean_auc"
    scheduler_factor: float = 0.1
    scheduler_patience: int = 1
    early_stopping_patience: int = 0  # epochs without a better mean val AUC before stopping; 0 = off
    # --- runtime
    out_dir: str = ""
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    num_workers: int = 2
    threads: int = 0  # torch intra-op threads; 0 = automatic (cores / local processes)
    max_train_batches: int = 0  # 0 = the whole split (small values make tiny smoke runs)
    max_val_batches: int = 0
    log_every: int = 50
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "dataset_options", dict(self.dataset_options))
        for name, choices in FIELD_CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(
                    f"{name}={value!r} is not valid; expected one of {list(choices)}"
                    f"{_did_you_mean(value, choices)}"
                )
        for name, minimum in (("batch_size", 1), ("epochs", 1), ("input_size", 8), ("resize_to", 8)):
            if getattr(self, name) < minimum:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected an integer >= {minimum}")
        for name in (
            "num_workers",
            "threads",
            "max_train_batches",
            "max_val_batches",
            "early_stopping_patience",
            "scheduler_patience",
            "log_every",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected an integer >= 0")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r}; expected a learning rate > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r}; expected >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas={self.betas!r}; expected two numbers in [0, 1)")
        if not 0.0 < self.scheduler_factor < 1.0:
            raise ConfigError(f"scheduler_factor={self.scheduler_factor!r}; expected a number in (0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction!r}; expected a fraction in [0, 1)")
        if (self.head == "multiclass3") != (self.loss == "multiclass-ce"):
            raise ConfigError(
                f"head={self.head!r} and loss={self.loss!r} do not fit: the 'multiclass3' head trains "
                "with the 'multiclass-ce' loss (and the 'u-multiclass' uncertainty policy), the 'binary' "
                "head with the others"
            )

    # ----- derived objects
    def preprocess_spec(self) -> PreprocessSpec:
        """The PreprocessSpec of this run (CheXNet/DGC recipe at ``resize_to``/``input_size``)."""
        return PreprocessSpec(
            input_size=self.input_size,
            resize=self.resize,
            resize_to=self.resize_to,
            interpolation=self.interpolation,
        )

    def use_study_level(self) -> bool:
        return self.study_level == "on" or (self.study_level == "auto" and self.dataset == "chexpert")

    # ----- serialisation
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from a mapping; values are coerced to the field types."""
        return cls(**coerce_values(data, source))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **coerce_values(changes, "overrides"))


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES[name]
    bad = ConfigError(f"{source}: {name}={value!r} has the wrong type; expected {kind}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if number != int(number):
            raise bad
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)  # also accepts "1e-5", which YAML leaves as a string
        except (TypeError, ValueError):
            raise bad from None
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad
        return str(value)
    if name == "betas":
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise bad from None
    if name == "dataset_options":
        if value is None:
            return {}
        if isinstance(value, list | tuple) and all(
            isinstance(v, list | tuple) and len(v) == 2 for v in value
        ):
            value = dict(value)  # KEY=VALUE pairs from repeated --dataset-option flags
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    return value


def coerce_values(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check keys against the fields (did-you-mean on a typo) and coerce each value to its type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config keys to values; got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELD_TYPES:
            raise ConfigError(
                f"{source}: unknown config key {key!r}{_did_you_mean(name, FIELD_NAMES)}; "
                f"expected keys from {sorted(FIELD_NAMES)}"
            )
        out[name] = _coerce(name, value, source)
    return out


#: Settings by name. The paper presets hold only what the papers state; everything else keeps its
#: default. ``field`` (below) is the one preset that is not a paper's.
PRESETS: dict[str, dict[str, Any]] = {
    # Deep generative classifier on ChestX-ray14: Adam lr 1e-5, batch 16, 10 epochs, no augmentation,
    # batch-balanced binary cross entropy.
    "dgc-paper": {
        "architecture": "dgc",
        "encoder": "densenet121",
        "optimizer": "adam",
        "lr": 1e-5,
        "batch_size": 16,
        "epochs": 10,
        "augment": "none",
        "loss": "batch-balanced-bce",
        "scheduler": "none",
    },
    # CheXNet (Rajpurkar et al. 2017): 224x224 input, ImageNet normalisation, random horizontal flip,
    # Adam (0.9, 0.999) lr 1e-3, batch 16, lr x0.1 when the validation loss plateaus after an epoch,
    # sum of unweighted binary cross entropies for the 14 findings.
    "chexnet-paper": {
        "architecture": "chexnet",
        "encoder": "densenet121",
        "resize": "square",
        "resize_to": 224,
        "input_size": 224,
        "augment": "hflip",
        "optimizer": "adam",
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "batch_size": 16,
        "scheduler": "plateau",
        "plateau_metric": "val_loss",
        "scheduler_factor": 0.1,
        "scheduler_patience": 0,
        "loss": "bce",
    },
}
#: Not a paper: CheXNet's recipe for a model meant for phone photos of films (issue 13), trained
#: with the photographic augmentation (CheXphoto, Phillips et al. 2020). The paper presets keep it off.
PRESETS["field"] = {**PRESETS["chexnet-paper"], "augment": "hflip-photo"}


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}; expected one of {sorted(PRESETS)}{_did_you_mean(name, PRESETS)}"
        )
    return dict(PRESETS[name])


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a dict (keys not yet checked)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    elif path.suffix.lower() in (".yaml", ".yml"):
        yaml = require("yaml", extra="train", purpose="Reading YAML config files")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    else:
        raise ConfigError(f"config file {path} has suffix {path.suffix!r}; expected .yaml, .yml or .json")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys to values; got {type(data).__name__}"
        )
    return data


def resolve_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """defaults < preset < config file < overrides. A file may name its own ``preset`` key."""
    file_values: dict[str, Any] = load_config_file(config_file) if config_file else {}
    file_preset = file_values.pop("preset", None)
    chosen_preset = preset or file_preset
    values: dict[str, Any] = {}
    if chosen_preset:
        values.update(coerce_values(preset_values(str(chosen_preset)), f"preset {chosen_preset}"))
    values.update(coerce_values(file_values, str(config_file)))
    values.update(coerce_values(overrides or {}, "command line"))
    return TrainConfig(**values)


def save_config_yaml(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (readable back with ``--config``)."""
    yaml = require("yaml", extra="train", purpose="Writing YAML config files")
    return atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
