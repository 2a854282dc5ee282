"""Check ``buildozer.spec`` offline: buildozer's own checks and python-for-android's recipe resolver.

An APK build downloads the Android SDK and NDK (several GB) and takes tens of minutes, so CI (and
this project's sandbox, which has no access to Google's servers) cannot run one. What can run
without them, with the tools' own code:

1. **buildozer** parses the spec (its ``SpecParser``) and runs ``Buildozer.check_configuration_tokens``
   (title, package name, version, orientation...) -- the checks ``buildozer android debug`` runs
   first -- and the Android target is constructed from it (``TargetAndroid``: archs, bootstrap,
   p4a arguments), without ``set_target``, which would create ``.buildozer`` folders.
2. **python-for-android** resolves the requirements into a build order with its dependency
   resolver (``pythonforandroid.graph.get_recipe_order_and_bootstrap``) for the spec's bootstrap:
   which requirements have recipes (compiled for Android) and which are left to pip. A pip-only
   requirement must be pure Python (:data:`PURE_PYTHON`); a compiled package without a recipe
   (onnxruntime, ai-edge-litert, tflite-runtime wheels) fails the check, as it would fail the build.
3. p4a's own ``parse_permissions`` (from the build script it runs inside the dist) parses the
   permissions; every arch must be one p4a knows.
4. The app's needs: arm64-v8a, the camera and media permissions, the LiteRT gradle dependency,
   the bundle assets, kv files in ``source.include_exts``, and the bundle signature check:
   ``cryptography`` among the requirements (a p4a recipe) and ``pub`` files (the staged trusted
   keys) in ``source.include_exts``.

Not checked (needs the SDK/NDK or a device): compiling the recipes, gradle resolving the LiteRT
AAR, the APK starting, pyjnius calls. ``python -m edge_app.android.spec_check`` prints the report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().parent / "buildozer.spec"
#: Requirements without a p4a recipe that are known to be pure Python (pip installs them for Android).
PURE_PYTHON = frozenset({"pydicom", "certifi", "chardet", "idna", "requests", "urllib3", "filetype", "six"})
#: Packages that must never be requirements: compiled, no p4a recipe, no Android wheel.
NO_ANDROID_BUILD = frozenset(
    {
        "onnxruntime",
        "ai-edge-litert",
        "ai_edge_litert",
        "torch",
        "tensorflow",
        "tflite-runtime",
        "opencv-python",
    }
)
REQUIRED_PERMISSIONS = (
    "android.permission.CAMERA",
    "android.permission.READ_MEDIA_IMAGES",
    "android.permission.READ_EXTERNAL_STORAGE",
)
LITERT_ARTIFACT = "com.google.ai.edge.litert:litert:"


@dataclass
class SpecReport:
    """What the check found: ``errors`` empty means the spec passed."""

    spec: Path
    errors: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    python_modules: list[str] = field(default_factory=list)
    bootstrap: str = ""
    archs: list[str] = field(default_factory=list)
    permissions: list[dict[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        lines = [
            f"spec: {self.spec}",
            f"buildozer {self.versions.get('buildozer')}, python-for-android "
            f"{self.versions.get('python-for-android')}",
            f"bootstrap: {self.bootstrap}, archs: {self.archs}",
            f"recipes (build order): {', '.join(self.recipes)}",
            f"pip (pure Python): {', '.join(sorted(self.python_modules))}",
            f"permissions: {[p['name'] for p in self.permissions]}",
        ]
        lines += [f"ERROR: {e}" for e in self.errors] or ["OK"]
        return "\n".join(lines)


def _buildozer(spec: Path, report: SpecReport) -> Any:
    """Buildozer's parser and token checks (they print and ``exit(1)`` on errors)."""
    from buildozer import Buildozer

    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return Buildozer(filename=str(spec))
    except SystemExit:
        problems = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        report.errors += [f"buildozer: {p}" for p in problems] or ["buildozer rejected the spec"]
        return None


def _target(builder: Any, report: SpecReport) -> Any:
    from buildozer.targets.android import TargetAndroid
    from pythonforandroid.archs import ArchAarch_64, ArchARMv7_a, Archx86, Archx86_64

    builder.targetname = "android"
    target = TargetAndroid(builder)
    report.archs = list(target._archs)
    report.bootstrap = target._p4a_bootstrap
    known = {arch.arch for arch in (ArchAarch_64, ArchARMv7_a, Archx86, Archx86_64)}
    report.errors += [
        f"arch {a!r} is not one python-for-android builds ({sorted(known)})"
        for a in report.archs
        if a not in known
    ]
    if "arm64-v8a" not in report.archs:
        report.errors.append(f"android.archs {report.archs} lacks arm64-v8a (every current phone)")
    return target


def _resolve(requirements: list[str], bootstrap: str, report: SpecReport) -> None:
    """python-for-android's dependency resolver over the requirement names (versions stripped)."""
    from pythonforandroid.bootstrap import Bootstrap
    from pythonforandroid.build import Context
    from pythonforandroid.graph import get_recipe_order_and_bootstrap
    from pythonforandroid.util import BuildInterruptingException

    names = [r.split("==")[0].split(">=")[0].strip().lower() for r in requirements if r.strip()]
    banned = sorted(set(names) & NO_ANDROID_BUILD)
    if banned:
        report.errors.append(
            f"requirements {banned} cannot be built for Android (no p4a recipe, no Android "
            "wheel); inference must use LiteRT's Android library"
        )
    ctx = Context()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            bs = Bootstrap.get_bootstrap(bootstrap, ctx)
            recipes, modules, _bs = get_recipe_order_and_bootstrap(ctx, names, bs)
    except (BuildInterruptingException, ValueError) as exc:
        report.errors.append(f"python-for-android cannot resolve {names}: {getattr(exc, 'message', exc)}")
        return
    report.recipes, report.python_modules = list(recipes), list(modules)
    unknown = sorted(set(modules) - PURE_PYTHON)
    if unknown:
        report.errors.append(
            f"requirements {unknown} have no p4a recipe and are not known pure-Python "
            "packages: pip would need an Android wheel for them"
        )


def _p4a_parse_permissions(entries: list[str]) -> list[dict[str, str]]:
    """p4a's own ``parse_permissions`` (from the build script it copies into each dist)."""
    import pythonforandroid

    script = Path(pythonforandroid.__file__).parent / "bootstraps" / "common" / "build" / "build.py"
    os.environ.setdefault("P4A_BUILD_IS_RUNNING_UNITTESTS", "1")  # skips its host-python probing
    module_spec = importlib.util.spec_from_file_location("_p4a_build_script", script)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.parse_permissions(entries)


def _app_needs(config: Any, report: SpecReport) -> None:
    get, getlist = config.getdefault, config.getlist
    try:
        report.permissions = _p4a_parse_permissions(getlist("app", "android.permissions", []))
    except ValueError as exc:
        report.errors.append(f"android.permissions: python-for-android rejects them: {exc}")
    names = {p["name"] for p in report.permissions}
    report.errors += [f"android.permissions lacks {p}" for p in REQUIRED_PERMISSIONS if p not in names]
    gradle = getlist("app", "android.gradle_dependencies", [])
    if not any(dep.startswith(LITERT_ARTIFACT) for dep in gradle):
        report.errors.append(
            f"android.gradle_dependencies {gradle} lacks LiteRT ({LITERT_ARTIFACT}<version>)"
        )
    assets = getlist("app", "android.add_assets", [])
    if not any(a.split(":")[-1] == "bundles" for a in assets):
        report.errors.append(
            f"android.add_assets {assets} does not ship the bundles as assets under bundles/"
        )
    exts = getlist("app", "source.include_exts", [])
    if "kv" not in exts:
        report.errors.append("source.include_exts lacks kv: the layouts would be missing from the APK")
    if "pub" not in exts:
        report.errors.append(
            "source.include_exts lacks pub: the staged trusted keys (trusted-keys/*.pub) would be "
            "missing from the APK and no bundle signature could be trusted"
        )
    if "cryptography" not in report.recipes:
        report.errors.append(
            "requirements lack cryptography: the phone could not check bundle signatures "
            "(python-for-android has a cryptography recipe)"
        )
    if int(get("app", "android.minapi", "21")) < 26:
        report.errors.append("android.minapi must be >= 26 (java.nio.file.Files; LiteRT needs 24)")


def check_spec(spec: str | Path = SPEC_PATH) -> SpecReport:
    """Run every offline check on ``spec``; see the module docstring."""
    from importlib.metadata import version

    spec = Path(spec)
    report = SpecReport(
        spec=spec,
        versions={"buildozer": version("buildozer"), "python-for-android": version("python-for-android")},
    )
    if not spec.is_file():
        report.errors.append(f"{spec} does not exist")
        return report
    builder = _buildozer(spec, report)
    if builder is None:
        return report
    _target(builder, report)
    _resolve(builder.config.getlist("app", "requirements", []), report.bootstrap or "sdl2", report)
    _app_needs(builder.config, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_app.android.spec_check",
        description="Check buildozer.spec offline with buildozer's own spec check and p4a's resolver "
        "(no SDK/NDK download).",
    )
    parser.add_argument("spec", nargs="?", type=Path, default=SPEC_PATH, help=f"default: {SPEC_PATH}")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    report = check_spec(args.spec)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
