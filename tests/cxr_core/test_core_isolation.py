"""cxr_core must run on a Pi or a phone: importing it must not pull in torch, onnx, tensorflow or kivy."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "tensorflow", "kivy", "sklearn", "matplotlib", "tqdm")


def test_cxr_core_imports_no_heavy_dependency() -> None:
    code = (
        "import json, pkgutil, importlib, sys\n"
        "import cxr_core\n"
        "for m in pkgutil.walk_packages(cxr_core.__path__, 'cxr_core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"cxr_core imported heavy modules: {loaded}"


def test_training_modules_may_not_be_imported_by_cxr_core() -> None:
    code = (
        "import sys, pkgutil, importlib, cxr_core\n"
        "for m in pkgutil.walk_packages(cxr_core.__path__, 'cxr_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "stages = ('training', 'quantize', 'edge_app', 'benchmarks')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in stages))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
