"""Choose a runtime and a model file: what is installed, what the bundle holds, what the caller asked for.

Runtimes come in two families: ``onnxruntime`` runs ``.onnx`` files; ``litert`` runs ``.tflite``
files, with ``tflite_runtime`` and ``tensorflow`` (TensorFlow's own interpreter) as fallbacks of the
same family that log a warning. Automatic choice prefers ONNX Runtime, then LiteRT, and within a
family the format the bundle's ``recommended`` key names (the fastest one that passed the parity gate).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from pathlib import Path

from cxr_core.bundle import Bundle, ModelEntry
from cxr_core.formats import RUNTIME_FAMILIES
from cxr_core.optional import install_hint
from cxr_core.runtime.backend import Backend
from cxr_core.runtime.errors import RuntimeUnavailableError, UnknownRuntimeError
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings
from cxr_core.runtime.signature import ModelSignature, signature_of
from cxr_core.runtime.threads import resolve_threads

logger = logging.getLogger(__name__)

#: Every runtime name, in order of preference, with the module whose presence means "installed".
RUNTIME_MODULES: dict[str, str] = {
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime",
    "tensorflow": "tensorflow",
}
#: Runtime family (a format's ``runtime`` in cxr_core.formats) -> runtimes that can run it, best first.
FAMILIES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime",),
    "litert": ("litert", "tflite_runtime", "tensorflow"),
}
assert tuple(FAMILIES) == RUNTIME_FAMILIES
_ALIASES = {
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "ai_edge_litert": "litert",
    "ai-edge-litert": "litert",
    "tflite-runtime": "tflite_runtime",
    "tf": "tensorflow",
}
INSTALL_HINT = install_hint("runtime")


def available_runtimes() -> list[str]:
    """Installed runtimes in order of preference (a cheap check: nothing is imported)."""
    found = []
    for name, module in RUNTIME_MODULES.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


def canonical_runtime(name: str) -> str:
    """A runtime name as given by a user, checked (with a did-you-mean) and de-aliased."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in RUNTIME_MODULES:
        return key
    choices = [*RUNTIME_MODULES, *_ALIASES]
    hint = difflib.get_close_matches(key, choices, n=1)
    did_you_mean = f" (did you mean {_ALIASES.get(hint[0], hint[0])!r}?)" if hint else ""
    raise UnknownRuntimeError(
        f"unknown runtime {name!r}; expected one of {list(RUNTIME_MODULES)}{did_you_mean}"
    )


def _family_installed(family: str, installed: list[str]) -> bool:
    return any(name in installed for name in FAMILIES[family])


def open_model(
    path: str | Path,
    entry: ModelEntry,
    runtime: str | None = None,
    threads: int | None = None,
    settings: RuntimeSettings = DEFAULT_SETTINGS,
    signature: ModelSignature | None = None,
) -> Backend:
    """Open the model file at ``path`` described by the manifest entry ``entry``.

    ``runtime`` None picks the best installed runtime of the entry's family; a named runtime must
    be able to run the format. ``threads`` None = physical cores, at most 4. ``settings``: thread
    pool and optimisation settings (:mod:`cxr_core.runtime.settings`; defaults suit shared devices).
    ``signature`` replaces the classifier signature read from ``entry`` (the gate's autoencoder has
    its own).
    """
    threads = resolve_threads(threads)
    family = entry.runtime
    signature = signature or signature_of(entry, path)
    if runtime is not None:
        chosen = canonical_runtime(runtime)
        if chosen not in FAMILIES[family]:
            raise UnknownRuntimeError(
                f"runtime {chosen!r} cannot run {Path(path).name} (format {signature.format!r}); "
                f"expected one of {list(FAMILIES[family])}"
            )
        candidates: tuple[str, ...] = (chosen,)
    else:
        installed = available_runtimes()
        candidates = tuple(name for name in FAMILIES[family] if name in installed)
        if not candidates:
            raise RuntimeUnavailableError(
                f"{Path(path).name} (format {signature.format!r}) needs {' or '.join(FAMILIES[family])}, "
                f"and none is installed. Install it with: {INSTALL_HINT}"
            )
    failures: list[str] = []
    for name in candidates:
        try:
            return _construct(name, path, signature, threads, settings)
        except RuntimeUnavailableError as exc:
            if runtime is not None:
                raise
            failures.append(f"{name}: {exc}")
            logger.warning("runtime %s is installed but does not load (%s); trying the next one", name, exc)
    raise RuntimeUnavailableError(
        f"no runtime could be loaded for {Path(path).name}: {'; '.join(failures)}. Install: {INSTALL_HINT}"
    )


def _construct(
    name: str, path: str | Path, signature: ModelSignature, threads: int, settings: RuntimeSettings
) -> Backend:
    if name == "onnxruntime":
        from cxr_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, signature, threads, settings)
    from cxr_core.runtime.litert_backend import LiteRTBackend

    return LiteRTBackend(path, signature, threads, runtime=name, settings=settings)


def choose_model(bundle: Bundle, runtime: str | None = None) -> ModelEntry:
    """The entry :func:`open_backend` runs when no model is named (see the module docstring)."""
    installed = available_runtimes()
    if runtime is not None:
        chosen = canonical_runtime(runtime)
        families = [f for f, members in FAMILIES.items() if chosen in members]
    else:
        families = [f for f in FAMILIES if _family_installed(f, installed)]
    recommended = bundle.manifest.recommended
    names = [m.name for m in bundle.models]
    for family in families:
        name = recommended.get(family)
        if name in names:
            return bundle.model(name)
    for entry in bundle.models:
        if entry.runtime in families:
            return entry
    formats = {m.name: m.runtime for m in bundle.models}
    wanted = (
        f"runtime {runtime!r}" if runtime is not None else f"an installed runtime ({installed or 'none'})"
    )
    raise RuntimeUnavailableError(
        f"bundle {bundle.root} has no model for {wanted}; its models need {formats}. "
        f"Install the runtime with: {INSTALL_HINT}"
    )


def open_backend(
    bundle: Bundle,
    model: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
    settings: RuntimeSettings | None = None,
    tuned: bool = False,
) -> Backend:
    """Open one model of a loaded bundle: ``model`` by name, or the recommended one for the best runtime.

    ``tuned=True`` with no ``model``/``runtime``/``settings`` named opens the choice ``edge-bench
    --tune`` cached for this bundle on this machine (:mod:`cxr_core.runtime.tuning`: format, runtime
    settings and, unless ``threads`` is given, thread count), when there is one and its runtime is
    installed; otherwise the automatic choice with the default settings.
    """
    if tuned and model is None and runtime is None and settings is None:
        from cxr_core.runtime.tuning import load_choice

        choice = load_choice(bundle)
        if choice is not None:
            entry = bundle.model(choice.model)
            if _family_installed(entry.runtime, available_runtimes()):
                backend = open_model(
                    bundle.path(entry),
                    entry,
                    threads=threads if threads is not None else choice.threads,
                    settings=choice.settings,
                )
                logger.info(
                    "bundle %s: running the tuned choice %s on %s (%d threads, %s)",
                    bundle.root,
                    entry.name,
                    backend.runtime,
                    backend.threads,
                    choice.settings.label(entry.runtime),
                )
                return backend
            logger.warning(
                "tuned choice %s needs %s, which is not installed; using the automatic choice",
                choice.model,
                entry.runtime,
            )
    entry = bundle.model(model) if model is not None else choose_model(bundle, runtime)
    backend = open_model(
        bundle.path(entry), entry, runtime=runtime, threads=threads, settings=settings or DEFAULT_SETTINGS
    )
    logger.info("bundle %s: running %s on %s", bundle.root, entry.name, backend.runtime)
    return backend
