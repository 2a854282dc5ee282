"""Continuing a run: find its checkpoint and rebuild its config.

``cxr-train train --resume RUN_DIR`` continues from ``RUN_DIR/last.pt`` with the config stored
in it; only the fields in :data:`RESUME_SAFE_FIELDS` may change without changing the result.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from training.checkpoint import load_checkpoint
from training.config import ConfigError, TrainConfig

logger = logging.getLogger(__name__)

#: Fields a resumed run may change without changing its result.
RESUME_SAFE_FIELDS = frozenset(
    {
        "epochs",
        "num_workers",
        "progress",
        "log_every",
        "threads",
        "data_root",
        "out_dir",
        "skip_preflight",
        "early_stopping_patience",
    }
)


def resolve_resume_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise ConfigError(
            f"--resume {path}: no such checkpoint; expected a run folder with last.pt or a .pt file"
        )
    return path


def config_for_resume(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The run config stored in checkpoint ``path`` with ``overrides`` applied.

    Overrides of fields outside :data:`RESUME_SAFE_FIELDS` are applied with a warning: the result
    will then differ from an uninterrupted run.
    """
    checkpoint = load_checkpoint(resolve_resume_path(path))
    config = TrainConfig.from_dict(checkpoint.run_config, f"checkpoint {path}")
    changed = {k: v for k, v in (overrides or {}).items() if getattr(config, k.replace("-", "_")) != v}
    risky = sorted(set(changed) - RESUME_SAFE_FIELDS)
    if risky:
        logger.warning("resuming with changed %s: the result will differ from an uninterrupted run", risky)
    return config.replace(**changed)
