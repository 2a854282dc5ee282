"""Stage the Android app sources and bundles where ``buildozer.spec`` expects them.

python-for-android starts ``main.py`` at the root of ``source.dir`` and packs everything below
it into the APK. Pointing ``source.dir`` at the repository would ship the torch-side packages,
tests and docs as well, so this step copies only what the phone runs -- ``cxr_core/`` (which
holds the settings screen's self-test, :mod:`cxr_core.selftest`) and ``edge_app/`` (without its
Android, Pi and tools folders) -- plus a three-line ``main.py`` into ``edge_app/android/build/app/``, and each
model bundle into ``build/assets/bundles/<name>/`` (shipped as APK assets; the app copies them to
its data folder on first start). ``build/`` is git-ignored. The copy is rebuilt from scratch each
time, so a removed file never lingers.

    python -m edge_app.android.stage --bundle path/to/bundle [--bundle another]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from cxr_core.bundle import BundleError, read_manifest

logger = logging.getLogger(__name__)

ANDROID_DIR = Path(__file__).resolve().parent
REPO_ROOT = ANDROID_DIR.parents[1]
STAGE_DIR = ANDROID_DIR / "build"
#: Folders of edge_app that the phone does not need.
EDGE_APP_EXCLUDED = ("android", "deploy", "tools", "__pycache__")
MAIN_PY = '''"""Android entry point of cxr-edge (written by edge_app.android.stage; do not edit)."""

from edge_app.main import main

main([])
'''


def _ignore(directory: str, names: list[str]) -> list[str]:
    ignored = [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]
    if Path(directory).resolve() == (REPO_ROOT / "edge_app").resolve():
        ignored += [n for n in names if n in EDGE_APP_EXCLUDED]
    return ignored


def stage(bundles: list[Path], out: Path = STAGE_DIR) -> dict[str, Path]:
    """Copy sources and ``bundles`` below ``out``; return the app and assets folders."""
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
    app_dir, assets_dir = out / "app", out / "assets" / "bundles"
    for folder in (app_dir, out / "assets"):
        if folder.exists():
            shutil.rmtree(folder)
    app_dir.mkdir(parents=True)
    for package in ("cxr_core", "edge_app"):
        shutil.copytree(REPO_ROOT / package, app_dir / package, ignore=_ignore)
    (app_dir / "main.py").write_text(MAIN_PY, encoding="utf-8")
    assets_dir.mkdir(parents=True)
    for bundle in bundles:
        shutil.copytree(bundle, assets_dir / Path(bundle).resolve().name, ignore=_ignore)
    logger.info("staged %s and %d bundle(s) in %s", app_dir, len(bundles), out)
    return {"app": app_dir, "assets": assets_dir}


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
    parser.add_argument("--out", type=Path, default=STAGE_DIR, help=f"staging folder (default {STAGE_DIR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = stage(args.bundle, args.out)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"app sources: {paths['app']}\nbundles:     {paths['assets']}")
    if not args.bundle:
        print("no --bundle given: the APK will start on its first-run screen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
