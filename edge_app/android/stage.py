"""Stage the Android app sources and bundles where ``buildozer.spec`` expects them.

python-for-android starts ``main.py`` at the root of ``source.dir`` and packs everything below
it into the APK. Pointing ``source.dir`` at the repository would ship the torch-side packages,
tests and docs as well, so this step copies only what the phone runs -- ``cxr_core/`` (which
holds the settings screen's self-test, :mod:`cxr_core.selftest`) and ``edge_app/`` (without its
Android, Pi and tools folders) -- plus a short ``main.py`` into ``edge_app/android/build/app/``, and each
model bundle into ``build/assets/bundles/<name>/`` (shipped as APK assets; the app copies them to
its data folder on first start). ``build/`` is git-ignored. The copy is rebuilt from scratch each
time, so a removed file never lingers.

**Trusted keys.** The phone checks each bundle's signature (``manifest.sig``) against the public
keys packed into the APK: ``build/app/trusted-keys/<key id>.pub``, which the staged ``main.py``
hands to the signature check (:func:`edge_app.packaged.use_packaged_trusted_keys`). The builder
chooses them: every ``--trusted-key KEY.pub`` given, or else every key the builder's own machine
trusts (``$CXR_EDGE_TRUSTED_KEYS``, by default ``~/.config/cxr-edge/trusted-keys``: what
``cxr-keys trust`` installed). Each staged bundle must verify with those keys, or staging stops:
an APK that refuses its own bundles is a build mistake.

    python -m edge_app.android.stage --bundle path/to/bundle [--bundle another] [--trusted-key K.pub]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from cxr_core.bundle import BundleError, read_manifest
from cxr_core.bundle.signing import (
    TRUSTED_KEYS_ENV,
    check_signature,
    install_trusted,
    key_id,
    read_public,
    trusted_keys_dir,
)
from cxr_core.errors import CxrEdgeError
from edge_app.packaged import PACKAGED_KEYS_DIR

logger = logging.getLogger(__name__)

ANDROID_DIR = Path(__file__).resolve().parent
REPO_ROOT = ANDROID_DIR.parents[1]
STAGE_DIR = ANDROID_DIR / "build"
#: Folders of edge_app that the phone does not need.
EDGE_APP_EXCLUDED = ("android", "deploy", "tools", "__pycache__")
MAIN_PY = '''"""Android entry point of cxr-edge (written by edge_app.android.stage; do not edit)."""

from pathlib import Path

from edge_app.packaged import use_packaged_trusted_keys

use_packaged_trusted_keys(Path(__file__).resolve().parent)

from edge_app.main import main  # noqa: E402

main([])
'''


def _ignore(directory: str, names: list[str]) -> list[str]:
    ignored = [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]
    if Path(directory).resolve() == (REPO_ROOT / "edge_app").resolve():
        ignored += [n for n in names if n in EDGE_APP_EXCLUDED]
    return ignored


def stage(bundles: list[Path], out: Path = STAGE_DIR, trusted: list[Path] | None = None) -> dict[str, Path]:
    """Copy sources, the ``trusted`` public keys (default: the keys this machine trusts) and
    ``bundles`` below ``out``; return the app, assets and trusted-keys folders."""
    for bundle in bundles:
        try:
            manifest = read_manifest(bundle)
        except BundleError as exc:
            raise BundleError(f"cannot stage {bundle}: {exc}") from exc
        if not any(m.runtime == "litert" for m in manifest.models):
            raise BundleError(
                f"bundle {bundle} has no .tflite model; the Android app runs LiteRT. "
                "Export one with: cxr-export CHECKPOINT --out DIR --formats tflite-int8"
            )
    chosen = _chosen_keys(trusted)
    _check_bundles_trusted(bundles, chosen)
    app_dir, assets_dir = out / "app", out / "assets" / "bundles"
    for folder in (app_dir, out / "assets"):
        if folder.exists():
            shutil.rmtree(folder)
    app_dir.mkdir(parents=True)
    for package in ("cxr_core", "edge_app"):
        shutil.copytree(REPO_ROOT / package, app_dir / package, ignore=_ignore)
    (app_dir / "main.py").write_text(MAIN_PY, encoding="utf-8")
    keys_dir = app_dir / PACKAGED_KEYS_DIR
    keys_dir.mkdir()
    for public in chosen:
        install_trusted(public, keys_dir)
    assets_dir.mkdir(parents=True)
    for bundle in bundles:
        shutil.copytree(bundle, assets_dir / Path(bundle).resolve().name, ignore=_ignore)
    logger.info("staged %s and %d bundle(s) in %s", app_dir, len(bundles), out)
    return {"app": app_dir, "assets": assets_dir, "trusted_keys": keys_dir}


def _chosen_keys(chosen: list[Path] | None) -> list[Path]:
    """The ``.pub`` files to stage: ``chosen``, or every key this machine trusts."""
    if chosen is None:
        source = trusted_keys_dir()
        chosen = sorted(source.glob("*.pub")) if source.is_dir() else []
        logger.info("trusted keys: %d from %s", len(chosen), source)
    if not chosen:
        logger.warning(
            "the APK trusts no key: every bundle will need the allow_untrusted_bundles setting "
            "(give --trusted-key KEY.pub, or trust a key on this machine: cxr-keys trust KEY.pub)"
        )
    return chosen


def _check_bundles_trusted(bundles: list[Path], chosen: list[Path]) -> None:
    """Refuse to stage a bundle that the APK's own trusted keys would refuse."""
    keys = {key_id(raw): raw for raw in (read_public(path) for path in chosen)}
    for bundle in bundles:
        manifest = (Path(bundle) / "manifest.json").read_bytes()
        status = check_signature(bundle, manifest, keys)
        if not status.trusted:
            detail = status.detail or status.state
            raise BundleError(
                f"cannot stage {bundle}: its signature would not verify on the phone ({status.state}: "
                f"{detail}); staged keys: {sorted(keys) or 'none'}. Sign it (cxr-keys sign {bundle}) "
                "with a key you stage, or stage the key that signed it (--trusted-key KEY.pub)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_app.android.stage", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=[],
        help="model bundle to ship in the APK (repeatable; needs a .tflite model)",
    )
    parser.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=None,
        help="public key (.pub) the APK trusts for bundle signatures (repeatable; default: every key "
        f"this machine trusts, from ${TRUSTED_KEYS_ENV} or ~/.config/cxr-edge/trusted-keys)",
    )
    parser.add_argument("--out", type=Path, default=STAGE_DIR, help=f"staging folder (default {STAGE_DIR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = stage(args.bundle, args.out, args.trusted_key)
    except (BundleError, CxrEdgeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = sorted(p.stem for p in paths["trusted_keys"].glob("*.pub"))
    print(f"app sources: {paths['app']}\nbundles:     {paths['assets']}\ntrusted keys: {keys or 'NONE'}")
    if not args.bundle:
        print("no --bundle given: the APK will start on its first-run screen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
