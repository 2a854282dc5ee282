"""What both sides run: module imports, and every format's probabilities on the bundle's golden inputs.

    python -m tools.arm64_check.probe imports numpy,PIL,onnxruntime      # one JSON line per module
    python -m tools.arm64_check.probe golden BUNDLE --out FILE [--runtimes onnxruntime,litert]

``imports`` prints a line as each module is imported, flushed, so a module that kills the process
(onnxruntime's SIGSEGV under emulation without the CPU files) is the one after the last line.
``golden`` loads the bundle as a device does (hashes and trust checked) and runs each model whose
runtime is in ``--runtimes`` on the golden inputs; the probabilities are written exactly (float32
values in JSON numbers). Runs on the host and, unchanged, under qemu in the arm64 root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _version(module: Any) -> str | None:
    value = getattr(module, "__version__", None)
    return str(value) if value is not None else None


def run_imports(names: list[str]) -> int:
    for name in names:
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
            row = {"module": name, "ok": True, "version": _version(module), "error": None}
        except Exception as exc:  # a module that cannot load is a result here, not a crash
            row = {"module": name, "ok": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}
        row["seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(row), flush=True)
    return 0


def run_golden(
    bundle_dir: Path, out: Path, runtimes: set[str] | None, allow_untrusted: bool, threads: int
) -> int:
    import numpy as np

    from cxr_core.bundle import load_bundle, load_golden
    from cxr_core.runtime import open_model

    bundle = load_bundle(bundle_dir, verify=True, allow_untrusted=allow_untrusted)
    golden = load_golden(bundle)
    inputs = np.asarray(golden["inputs"], dtype=np.float32)
    models: dict[str, Any] = {}
    for entry in bundle.models:
        row: dict[str, Any] = {"format": entry.format, "runtime": entry.runtime, "probabilities": None}
        if runtimes is not None and entry.runtime not in runtimes:
            row.update(status="skipped", message=f"runtime {entry.runtime} not run on this side")
            models[entry.name] = row
            continue
        try:
            backend = open_model(bundle.path(entry), entry, threads=threads)
            try:
                outputs = backend(inputs)
                row["runtime"] = backend.runtime
            finally:
                backend.close()
            probs = np.asarray(outputs["probabilities"], dtype=np.float64)
            row.update(status="ok", message=None, probabilities=probs.tolist())
        except Exception as exc:  # reported per format; the other formats still run
            row.update(status="error", message=f"{type(exc).__name__}: {exc}")
        models[entry.name] = row
    document = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "images": int(inputs.shape[0]),
        "models": models,
    }
    out.write_text(json.dumps(document) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.arm64_check.probe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    imports = sub.add_parser("imports", help="import modules one by one, a JSON line each")
    imports.add_argument("modules", help="comma-separated module names")
    golden = sub.add_parser("golden", help="every format's probabilities on the golden inputs")
    golden.add_argument("bundle", type=Path)
    golden.add_argument("--out", type=Path, required=True)
    golden.add_argument("--runtimes", default=None, help="comma-separated runtimes to run (default: all)")
    golden.add_argument("--allow-untrusted", action="store_true")
    golden.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "imports":
        return run_imports([n for n in args.modules.split(",") if n])
    runtimes = None if args.runtimes is None else {n for n in args.runtimes.split(",") if n}
    return run_golden(args.bundle, args.out, runtimes, args.allow_untrusted, args.threads)


if __name__ == "__main__":
    sys.exit(main())
