"""Initial weights from a local file: torchvision ImageNet, CheXNet-style, or our own checkpoints.

Nothing is downloaded: the user points at a file already on disk. Accepted layouts:

* ``torchvision``: an ImageNet state dict of the encoder's backbone, e.g. ``densenet121-a639ec97.pth``,
  including the old DenseNet key style ``denselayer1.norm.1.weight`` (renamed to ``norm1.weight``).
  The ImageNet classifier (``classifier.*`` / ``fc.*``) is skipped on purpose.
* ``chexnet``: a CheXNet-style checkpoint such as arnoweng/CheXNet's ``model.pth.tar``: a dict with a
  ``state_dict`` whose keys look like ``module.densenet121.features...`` and
  ``module.densenet121.classifier.0.weight`` (a Linear followed by a Sigmoid). Its classifier is
  loaded only into a CheXNet model; a DGC takes the encoder only.
* ``cxr-edge``: our own model state (keys ``encoder.*``, ``classifier.*``, ...), bare or inside a
  training checkpoint under one of :data:`STATE_DICT_KEYS`.

``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are stripped. Files are read
with ``torch.load(weights_only=True)``, which cannot run code from the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("auto", "torchvision", "chexnet", "cxr-edge")

#: Keys under which a checkpoint may keep the model's state dict (checked in this order).
STATE_DICT_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model_state", "model")

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var)$"
)
_SHOWN = 5


class WeightsLoadError(CxrEdgeError, ValueError):
    """A weights file could not be read, is not a state dict, or has nothing the model can use."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_initial_weights` did with each key.

    matched: model keys loaded as they were. adapted: model keys loaded after adapting the tensor
    (3-channel input convolution summed to 1 channel). shape_mismatched: ``(model key, file shape,
    model shape)`` not loaded. unmatched: file keys (after renaming) that have no place in the model.
    ignored: file keys skipped on purpose (an ImageNet or foreign classifier head). missing: model
    keys the file did not provide (left at their initial values; BN ``num_batches_tracked`` excluded).
    """

    path: str
    kind: str
    matched: tuple[str, ...]
    adapted: tuple[str, ...]
    shape_mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    unmatched: tuple[str, ...]
    ignored: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def loaded(self) -> int:
        """Number of model tensors taken from the file."""
        return len(self.matched) + len(self.adapted)

    @property
    def clean(self) -> bool:
        """True when nothing was mismatched, unmatched or missing."""
        return not (self.shape_mismatched or self.unmatched or self.missing)

    def summary(self) -> str:
        """One paragraph: counts, then the first few names of each non-empty group."""
        lines = [
            f"{self.path} ({self.kind}): loaded {self.loaded} tensors ({len(self.matched)} matched, "
            f"{len(self.adapted)} adapted); {len(self.shape_mismatched)} shape-mismatched, "
            f"{len(self.unmatched)} unmatched in the file, {len(self.ignored)} ignored, "
            f"{len(self.missing)} model tensors not in the file"
        ]
        mismatches = [f"{k} file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.shape_mismatched]
        for label, names in (
            ("adapted", list(self.adapted)),
            ("shape-mismatched", mismatches),
            ("unmatched", list(self.unmatched)),
            ("ignored", list(self.ignored)),
            ("missing", list(self.missing)),
        ):
            if names:
                more = f" ... (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
                lines.append(f"  {label}: {', '.join(names[:_SHOWN])}{more}")
        return "\n".join(lines)


def _read_file(path: Path, allow_pickle: bool) -> object:
    if not path.is_file():
        raise WeightsLoadError(
            path, "no such file; expected a local PyTorch weights file (.pth, .pt, .pth.tar)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        if not allow_pickle:
            raise WeightsLoadError(
                path,
                f"cannot be read as a PyTorch weights file with torch.load(weights_only=True) ({exc}); "
                "expected a state dict or a checkpoint dict saved with torch.save",
            ) from exc
        logger.warning("%s: weights_only load failed (%s); retrying with full unpickling", path, exc)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsLoadError(path, f"cannot be read by torch.load ({exc})") from exc


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def extract_state_dict(obj: object, path: str | Path = "<object>") -> dict[str, Tensor]:
    """The state dict in a loaded file: the object itself or the value of a :data:`STATE_DICT_KEYS` key."""
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = list(obj)[:10]
        raise WeightsLoadError(
            path,
            f"is a dict with keys {keys} but neither a state dict (name -> tensor) nor a checkpoint "
            f"holding one under {list(STATE_DICT_KEYS)}",
        )
    raise WeightsLoadError(
        path, f"holds a {type(obj).__name__}; expected a state dict (name -> tensor) or a checkpoint dict"
    )


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def new_densenet_key(key: str) -> str:
    """``...denselayer3.norm.1.weight`` -> ``...denselayer3.norm1.weight`` (pre-0.3 torchvision names)."""
    match = _OLD_DENSENET_KEY.match(key)
    return f"{match.group(1)}{match.group(2)}.{match.group(3)}" if match else key


def detect_kind(keys: list[str]) -> str:
    """``chexnet`` (keys ``densenet121.*``), ``cxr-edge`` (``encoder.*``) or else ``torchvision``."""
    if any(k.startswith("densenet121.") for k in keys):
        return "chexnet"
    if any(k.startswith("encoder.") for k in keys):
        return "cxr-edge"
    return "torchvision"


def _is_chexnet_model(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "architecture", None) == "chexnet"


def map_keys(state: Mapping[str, Tensor], kind: str, model: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """Rename the file's keys to the model's; returns (renamed tensors, keys ignored on purpose)."""
    mapped: dict[str, Tensor] = {}
    ignored: list[str] = []
    for original, tensor in state.items():
        key = new_densenet_key(_strip_wrappers(original))
        if kind == "chexnet":
            key = key.removeprefix("densenet121.")
            if key.startswith("classifier."):
                if not _is_chexnet_model(model):
                    ignored.append(original)
                    continue
                key = re.sub(r"^classifier\.0\.", "classifier.", key)
                mapped[key] = tensor
                continue
        if kind in ("torchvision", "chexnet"):
            if key.startswith(("classifier.", "fc.")):
                ignored.append(original)
                continue
            key = f"encoder.{key}"
        mapped[key] = tensor
    return mapped, ignored


def _adapt(source: Tensor, target: Tensor) -> Tensor | None:
    """A 3-channel input conv weight summed to 1 channel (same response to a grey image), else None."""
    if source.dim() == 4 and target.dim() == 4 and source.shape[1] == 3 and target.shape[1] == 1:
        if source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:]:
            return source.sum(dim=1, keepdim=True)
    return None


def load_initial_weights(
    model: nn.Module, path: str | Path, kind: str = "auto", *, allow_pickle: bool = False
) -> LoadReport:
    """Copy the usable tensors of weights file ``path`` into ``model`` (in place) and report what happened.

    ``kind`` is one of :data:`KINDS`; ``auto`` detects it from the keys. ``allow_pickle`` retries a
    file that ``weights_only`` refuses with full unpickling (only for files you trust).
    Raises :class:`WeightsLoadError` naming the file when it cannot be read, holds no state dict,
    or when not a single tensor fits the model.
    """
    path = Path(path)
    if kind not in KINDS:
        raise WeightsLoadError(path, f"unknown weights kind {kind!r}; expected one of {list(KINDS)}")
    state = extract_state_dict(_read_file(path, allow_pickle), path)
    if kind == "auto":
        kind = detect_kind([_strip_wrappers(k) for k in state])
    mapped, ignored = map_keys(state, kind, model)

    own = model.state_dict()
    to_load: dict[str, Tensor] = {}
    matched, adapted, unmatched = [], [], []
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for key, tensor in mapped.items():
        if key not in own:
            unmatched.append(key)
        elif tensor.shape == own[key].shape:
            to_load[key] = tensor.to(dtype=own[key].dtype)
            matched.append(key)
        elif (fitted := _adapt(tensor, own[key])) is not None:
            to_load[key] = fitted.to(dtype=own[key].dtype)
            adapted.append(key)
        else:
            mismatched.append((key, tuple(tensor.shape), tuple(own[key].shape)))
    if not to_load:
        raise WeightsLoadError(
            path,
            f"no tensor fits the model (read as kind {kind!r}); file keys start {list(state)[:_SHOWN]}, "
            f"model keys start {list(own)[:_SHOWN]}",
        )
    model.load_state_dict(to_load, strict=False)
    missing = [k for k in own if k not in to_load and not k.endswith("num_batches_tracked")]
    report = LoadReport(
        path=str(path),
        kind=kind,
        matched=tuple(matched),
        adapted=tuple(adapted),
        shape_mismatched=tuple(mismatched),
        unmatched=tuple(unmatched),
        ignored=tuple(ignored),
        missing=tuple(missing),
    )
    if report.shape_mismatched or report.unmatched:
        logger.warning("initial weights only partly used:\n%s", report.summary())
    else:
        logger.info("initial weights:\n%s", report.summary())
    return report
