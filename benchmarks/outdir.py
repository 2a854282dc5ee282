"""Where an edge-bench run writes: ``--out`` and the ``--tune`` cache folder, checked before measuring.

The rule for ``--out`` (docs/benchmarks.md, "Output"): a folder that does not exist yet, or an
existing folder holding no edge-bench artefacts (other files are left alone). A folder that holds
another run's artefacts (:data:`ARTEFACT_PATTERNS`) is refused unless ``--overwrite`` is given; then
the previous run's artefacts are removed when the new run's files are written (after measuring), so
stale plots or predictions never sit beside the new results.json. Nothing in ``--out`` claims to be
a result until the run has finished: scratch files live in a temporary sub-folder that is removed
on every exit, and a folder the run created is removed again when it ends without results.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from benchmarks.config import BenchConfigError

logger = logging.getLogger(__name__)

#: The files an edge-bench run leaves in ``--out`` (glob patterns, not recursive).
ARTEFACT_PATTERNS: tuple[str, ...] = (
    "results.json",
    "results.md",
    "latency.png",
    "auc.png",
    "e2e.png",
    "predictions.npz",
    "e2e_sample.png",  # written by older versions; now a scratch file
    "profile_*.json",
)


def previous_artefacts(out: Path) -> list[Path]:
    """The edge-bench artefacts already in ``out`` (sorted; empty when ``out`` is not a folder)."""
    if not out.is_dir():
        return []
    found = {path for pattern in ARTEFACT_PATTERNS for path in out.glob(pattern) if path.is_file()}
    return sorted(found)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable_folder(path: Path, flag: str, expected: str) -> None:
    """``path`` is a writable folder or can be created as one; else a :class:`BenchConfigError`."""
    if path.exists() and not path.is_dir():
        raise BenchConfigError(f"{flag} {path}: is a file, not a folder; expected {expected}")
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        raise BenchConfigError(
            f"{flag} {path}: {base} is a file, so the folder cannot be created; expected {expected}"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        what = "is not writable" if base == path.absolute() else f"cannot be created in {base} (not writable)"
        raise BenchConfigError(f"{flag} {path}: {what}; expected {expected}")


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot hold the results, or that holds another run's (see the module)."""
    check_writable_folder(out, "--out", "a folder (new, or existing and writable) for results.json and plots")
    found = previous_artefacts(out)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:6]) + (" ..." if len(found) > 6 else "")
        raise BenchConfigError(
            f"--out {out} already holds the results of another run ({names}); expected a new or empty "
            "folder: choose another --out, or pass --overwrite to replace that run's files"
        )


def claim_out(out: Path) -> bool:
    """Create ``out`` (and its parents) when missing; True when this call created it."""
    if out.is_dir():
        return False
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise BenchConfigError(
            f"--out {out}: cannot create the folder ({exc.strerror or exc}); expected a writable location"
        ) from exc
    return True


def release_out(out: Path, created: bool) -> None:
    """After a run that ended without results: remove ``out`` again if this run created it and it is empty."""
    if created and out.is_dir() and not any(out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


def remove_stale(out: Path, keep: set[str]) -> list[Path]:
    """Remove the earlier run's artefacts in ``out`` whose names are not in ``keep``; return them."""
    removed = []
    for path in previous_artefacts(out):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed %d file(s) of the previous run in %s", len(removed), out)
    return removed
