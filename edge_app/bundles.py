"""Find the model bundle the app should use, and describe bundles for the header and the settings.

Order of precedence (first that names something wins):

1. ``--bundle`` on the command line, then the ``CXR_EDGE_BUNDLE`` environment variable;
2. the bundle chosen on the settings screen (saved in ``settings.json``);
3. the first bundle (by name) under the default location ``<data dir>/bundles/``.

Only the manifest is read here (cheap, no hashes): the Predictor verifies every file when it
loads the bundle, on the worker thread. A folder that is not a valid bundle is still listed, with
the reason, so the settings screen can say why it cannot be used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cxr_core.bundle import MANIFEST_NAME, BundleError, Manifest, read_manifest

logger = logging.getLogger(__name__)

#: Sub-folder of the app's data folder where bundles are installed by default.
BUNDLES_DIRNAME = "bundles"


@dataclass(frozen=True)
class BundleInfo:
    """What the app shows about a bundle; ``error`` is set when the folder is not a usable bundle."""

    path: Path
    name: str
    version: str
    architecture: str = ""
    models: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def title(self) -> str:
        """``name version`` for the header, e.g. ``chexnet-int8 2026-11-23 (ckpt 9abaedba)``."""
        return f"{self.name} {self.version}".strip()


@dataclass(frozen=True)
class BundleChoice:
    """The bundle to load (or None) and where the choice came from, for the first-run screen."""

    path: Path | None
    source: str  # "command line / environment" | "settings" | "default folder" | "none"
    reason: str = ""


def bundle_version(manifest: Manifest) -> str:
    """A human version for a manifest: its ``version``, else export date and checkpoint hash.

    Exported manifests have no version; the export date and the first 8 hex digits of the
    checkpoint's sha256 identify the model unambiguously.
    """
    if manifest.version:
        return manifest.version
    if manifest.revision is not None:  # a site recalibration (cxr-calibrate): say which and where
        return manifest.revision.describe()
    provenance = manifest.provenance
    parts = []
    exported = str(provenance.exported_at or "")[:10]
    if exported:
        parts.append(exported)
    checkpoint = str(provenance.checkpoint_sha256 or "")[:8]
    if checkpoint:
        parts.append(f"(ckpt {checkpoint})")
    return " ".join(parts) or f"format {manifest.format_version}"


def describe_bundle(path: str | Path) -> BundleInfo:
    """Read ``path``'s manifest (no hash check) into a :class:`BundleInfo`; never raises."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
    except BundleError as exc:
        return BundleInfo(path=path, name=path.name, version="", error=str(exc))
    except OSError as exc:
        return BundleInfo(path=path, name=path.name, version="", error=f"{path}: cannot be read ({exc})")
    return BundleInfo(
        path=path,
        name=manifest.name or path.name,
        version=bundle_version(manifest),
        architecture=manifest.architecture,
        models=tuple(m.name for m in manifest.models),
    )


def discover_bundles(root: str | Path) -> list[BundleInfo]:
    """Every folder directly under ``root`` (or ``root`` itself) that holds a manifest, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [root] if (root / MANIFEST_NAME).is_file() else []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError as exc:
        logger.warning("cannot list bundle folder %s: %s", root, exc)
        children = []
    found += [child for child in children if (child / MANIFEST_NAME).is_file()]
    return [describe_bundle(p) for p in found]


def choose_bundle(explicit: Path | None, saved: str | None, default_root: Path) -> BundleChoice:
    """Apply the order of precedence described in the module docstring."""
    if explicit is not None:
        return BundleChoice(Path(explicit), "command line / environment")
    if saved:
        return BundleChoice(Path(saved), "settings")
    usable = [info for info in discover_bundles(default_root) if info.ok]
    if usable:
        return BundleChoice(usable[0].path, "default folder")
    return BundleChoice(
        None,
        "none",
        f"No model bundle is installed. Copy a bundle folder (made by cxr-export) into "
        f"{default_root}, or choose one in the settings.",
    )
