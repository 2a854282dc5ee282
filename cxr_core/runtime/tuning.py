"""The per-device tuning cache: which model format, thread count and runtime settings to open.

``edge-bench BUNDLE --tune`` measures the bundle's formats under several runtime settings on this
device, keeps those that pass the golden parity check and records the fastest here. The cache is
a small JSON file per bundle, keyed by the sha256 of the bundle's ``manifest.json`` (which lists
the sha256 of every file, so any change to the bundle is a different key) and, inside it, by the
machine (CPU model, architecture, usable CPUs). It lives in:

* ``$CXR_EDGE_TUNING_DIR`` when set, else
* ``$XDG_CACHE_HOME/cxr-edge/tuning`` (``~/.cache/cxr-edge/tuning``),

one ``<first 16 hex digits of the manifest sha256>.json`` per bundle, written atomically
(:mod:`cxr_core.atomic`). Deleting the folder only forgets the choice: the defaults are used.
``open_backend(bundle, tuned=True)`` (:mod:`cxr_core.runtime.select`) opens the cached choice when
there is one for this machine and its runtime is installed, else the usual automatic choice. A
cache file that cannot be read is logged and ignored, never fatal: the app still starts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_core.atomic import atomic_write
from cxr_core.bundle import Bundle
from cxr_core.errors import CxrEdgeError
from cxr_core.runtime.settings import RuntimeSettings

logger = logging.getLogger(__name__)

TUNING_DIR_ENV = "CXR_EDGE_TUNING_DIR"
CACHE_VERSION = 1


class TuningCacheError(CxrEdgeError, ValueError):
    """A tuning cache entry is malformed (the message names the field and what is expected)."""


def tuning_dir() -> Path:
    """The cache folder (see the module docstring)."""
    env = os.environ.get(TUNING_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "cxr-edge" / "tuning"


def bundle_sha256(bundle: Bundle) -> str:
    """sha256 of the bundle's manifest.json bytes (it pins every file's sha256)."""
    from cxr_core.bundle.reader import MANIFEST_NAME

    return hashlib.sha256((bundle.root / MANIFEST_NAME).read_bytes()).hexdigest()


def cpu_model() -> str:
    """The CPU model name (/proc/cpuinfo on Linux and Android, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_key() -> str:
    """``<CPU model> | <arch> | <usable CPUs> cpus``: a choice is only valid on the machine it was made on."""
    return f"{cpu_model()} | {platform.machine() or 'unknown'} | {usable_cpus()} cpus"


@dataclass(frozen=True)
class TunedChoice:
    """The fastest passing (format, threads, settings) measured on one machine for one bundle."""

    model: str
    runtime: str
    threads: int
    settings: RuntimeSettings
    p50_ms: float
    golden_max_abs_dp: float | None
    tuned_at: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "threads": self.threads,
            "settings": self.settings.to_dict(),
            "p50_ms": self.p50_ms,
            "golden_max_abs_dp": self.golden_max_abs_dp,
            "tuned_at": self.tuned_at,
            "candidates": list(self.candidates),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TunedChoice:
        if not isinstance(data, dict):
            raise TuningCacheError(f"tuning choice {data!r}; expected an object")
        try:
            threads = data["threads"]
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise TuningCacheError(f"tuning choice threads={threads!r}; expected an integer >= 1")
            for key in ("model", "runtime", "tuned_at"):
                if not isinstance(data[key], str) or not data[key]:
                    raise TuningCacheError(f"tuning choice {key}={data[key]!r}; expected a non-empty string")
            dp = data.get("golden_max_abs_dp")
            return cls(
                model=data["model"],
                runtime=data["runtime"],
                threads=threads,
                settings=RuntimeSettings.from_dict(data["settings"]),
                p50_ms=float(data["p50_ms"]),
                golden_max_abs_dp=None if dp is None else float(dp),
                tuned_at=data["tuned_at"],
                candidates=list(data.get("candidates") or []),
            )
        except KeyError as exc:
            raise TuningCacheError(f"tuning choice lacks {exc.args[0]!r}; it has {sorted(data)}") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CxrEdgeError):
                raise
            raise TuningCacheError(f"tuning choice {data!r} is malformed: {exc}") from exc


def cache_path(bundle: Bundle, folder: Path | None = None) -> Path:
    return (folder or tuning_dir()) / f"{bundle_sha256(bundle)[:16]}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("tuning cache %s cannot be read (%s); ignoring it", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        logger.warning("tuning cache %s has no 'machines' object; ignoring it", path)
        return None
    return data


def save_choice(bundle: Bundle, choice: TunedChoice, folder: Path | None = None) -> Path:
    """Record ``choice`` for this machine in the bundle's cache file (other machines' entries kept)."""
    path = cache_path(bundle, folder)
    data = _read(path) or {}
    digest = bundle_sha256(bundle)
    if data.get("bundle_sha256") != digest:
        data = {}
    machines = dict(data.get("machines") or {})
    machines[machine_key()] = choice.to_dict()
    payload = {
        "version": CACHE_VERSION,
        "bundle": str(bundle.root),
        "bundle_sha256": digest,
        "machines": machines,
    }
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    logger.info("tuning choice for %s saved in %s", machine_key(), path)
    return path


def load_choice(bundle: Bundle, folder: Path | None = None) -> TunedChoice | None:
    """This machine's cached choice for ``bundle``, or None (nothing cached, or unusable: logged)."""
    path = cache_path(bundle, folder)
    data = _read(path)
    if data is None:
        return None
    if data.get("bundle_sha256") != bundle_sha256(bundle):
        logger.warning("tuning cache %s belongs to another bundle; ignoring it", path)
        return None
    entry = data["machines"].get(machine_key())
    if entry is None:
        return None
    try:
        choice = TunedChoice.from_dict(entry)
    except CxrEdgeError as exc:
        logger.warning("tuning cache %s: %s; ignoring it", path, exc)
        return None
    if choice.model not in [m.name for m in bundle.models]:
        logger.warning("tuning cache %s names model %r, not in the bundle; ignoring it", path, choice.model)
        return None
    return choice


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
