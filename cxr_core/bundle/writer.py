"""Write a model bundle atomically: build it in a temp folder beside the target, then rename.

Used by ``cxr-export`` (a new bundle) and ``cxr-calibrate`` (a new revision of one), so both
publish the same way. numpy + json only.

A failure at any point (an exception, a refused parity gate, a killed process before the
rename) leaves no half bundle under the target name and an existing bundle there intact. The
manifest is written last, with the sha256 of every other file in the folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cxr_core.bundle.reader import sha256_file
from cxr_core.bundle.schema import MANIFEST_NAME, FileRecord, Manifest
from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def staging(target: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; publish it as ``target`` when the block succeeds.

    On an exception the temp folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing ``target`` is moved aside first and removed after.

    POSIX cannot atomically replace a non-empty directory, so the old bundle is renamed to a
    hidden name in the same folder, the new one renamed in, and the old one deleted; if the second
    rename fails the old bundle is put back.
    """
    if target.exists() and not target.is_dir():
        raise BundleWriteError(
            f"{target} exists and is not a directory; refusing to replace it with a bundle"
        )
    os.chmod(staged, 0o755)
    if not target.exists():
        os.rename(staged, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


class BundleWriteError(CxrEdgeError, OSError):
    """The bundle cannot be written where asked (the target is a file, a model file is missing)."""


def file_hashes(folder: Path) -> dict[str, FileRecord]:
    """``{relative name: FileRecord(sha256, size_bytes)}`` of every file in ``folder`` but the manifest."""
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST_NAME:
            continue
        records[name] = FileRecord(sha256=sha256_file(path), size_bytes=path.stat().st_size)
    return records


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays uncompressed (readable with ``allow_pickle=False``)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Hash every file in ``folder``, put the hashes in ``manifest`` and write ``folder/manifest.json``.

    Model entries get their file's sha256 and size. The manifest is validated by reading back what
    is about to be written (:meth:`Manifest.from_dict`), so a bundle the device cannot read is
    never published. Returns the manifest as written.
    """
    hashes = file_hashes(folder)
    missing = [entry.file for entry in manifest.models if entry.file not in hashes]
    if missing:
        raise BundleWriteError(f"model file(s) {missing} were not written to {folder}; cannot hash them")
    full = manifest.with_files(hashes)
    data = full.to_dict()
    Manifest.from_dict(data, f"{folder / MANIFEST_NAME} (about to be written)")
    (folder / MANIFEST_NAME).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return full
