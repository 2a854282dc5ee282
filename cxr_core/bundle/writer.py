"""Write a model bundle atomically: build it in a temp folder beside the target, then rename.

Used by ``cxr-export`` (a new bundle, replacing one already at ``--out``) and ``cxr-calibrate`` (a
new revision of one, ``replace=False``: an existing target is refused, never replaced), so both
publish the same way. numpy + json only.

A failure at any point (an exception, a refused parity gate, a killed process before the
rename) leaves no half bundle under the target name and an existing bundle there intact. The
manifest is written last, with the sha256 of every other file in the folder, and signed into
``manifest.sig`` (Ed25519, :mod:`cxr_core.bundle.signing`) with the exporter's key.
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
from cxr_core.bundle.signing import SIGNATURE_NAME, sign_manifest
from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def staging(target: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; publish it as ``target`` when the block succeeds.

    On an exception the temp folder is removed and ``target`` is untouched. ``replace=False``
    (``cxr-calibrate``) never replaces anything: an existing ``target`` is refused, before the block
    runs and again at the rename.
    """
    target = Path(target)
    if replace:
        refuse_replacing_a_non_bundle(target)
    else:
        refuse_existing(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        publish(tmp, target, replace=replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_existing(target: Path) -> None:
    """Raise :class:`BundleWriteError` when anything (folder, file, link) exists at ``target``."""
    if os.path.lexists(target):
        kind = "a folder" if target.is_dir() else "a file or link"
        raise BundleWriteError(
            f"{target} already exists ({kind}); expected a new folder: choose another path, or remove it "
            "yourself if it is no longer needed (it is never replaced)"
        )


def refuse_replacing_a_non_bundle(target: Path) -> None:
    """Raise :class:`BundleWriteError` when ``target`` is a folder with contents but no manifest.

    Replacing means deleting: ``cxr-export --out .`` or ``--out ~/data`` would have removed the
    folder and everything in it. Only an empty folder or an earlier bundle is replaced.
    """
    if not target.is_dir() or (target / MANIFEST_NAME).is_file():
        return
    try:
        entries = sorted(entry.name for entry in os.scandir(target))
    except OSError as exc:
        raise BundleWriteError(
            f"{target}: cannot list it ({exc}); expected an empty folder or a bundle"
        ) from exc
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise BundleWriteError(
            f"{target} is a folder that is not a model bundle (no {MANIFEST_NAME}; it holds {shown}); "
            "expected a new or empty folder, or an earlier bundle to replace: choose another --out"
        )


def publish(staged: Path, target: Path, *, replace: bool = True) -> None:
    """Rename ``staged`` to ``target``; an existing ``target`` is moved aside first and removed after.

    POSIX cannot atomically replace a non-empty directory, so the old bundle is renamed to a
    hidden name in the same folder, the new one renamed in, and the old one deleted; if the second
    rename fails the old bundle is put back. With ``replace=False`` an existing ``target`` is refused
    and nothing is moved or deleted (a folder made there after the check is not replaced either:
    the rename of a folder onto a non-empty one fails).
    """
    if target.exists() and not target.is_dir():
        raise BundleWriteError(
            f"{target} exists and is not a directory; refusing to replace it with a bundle"
        )
    os.chmod(staged, 0o755)
    if not replace:
        refuse_existing(target)
        os.rename(staged, target)
        return
    refuse_replacing_a_non_bundle(target)  # again: the folder may have filled while the bundle was built
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
    """``{relative name: FileRecord(sha256, size_bytes)}`` of every file in ``folder`` but the manifest.

    A symlink is refused: the device refuses any link in a bundle (``cxr_core.bundle.inside``).
    """
    records = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise BundleWriteError(f"{path} is a symbolic link; a bundle holds regular files only")
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        if name in (MANIFEST_NAME, SIGNATURE_NAME):
            continue
        records[name] = FileRecord(sha256=sha256_file(path), size_bytes=path.stat().st_size)
    return records


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays uncompressed (readable with ``allow_pickle=False``)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def write_manifest(
    folder: Path, manifest: Manifest, signing_key: Path | None = None, sign: bool = True
) -> Manifest:
    """Hash every file in ``folder``, put the hashes in ``manifest`` and write ``folder/manifest.json``.

    With ``sign`` the manifest's bytes are signed into ``manifest.sig`` with ``signing_key`` (a PEM
    file), or by default with the user's key (``$CXR_EDGE_KEY_DIR`` or ``~/.config/cxr-edge/keys``),
    created on first use.

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
    if sign:
        key = sign_manifest(folder, key_path=signing_key)
        logger.info("signed %s with key %s", folder / MANIFEST_NAME, key)
    return full
