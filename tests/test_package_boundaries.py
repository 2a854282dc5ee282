"""What each package may import: the device side never pulls in training, export or benchmark code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str, top_level_only: bool) -> dict[str, set[str]]:
    """Module path -> the top-level names of what it imports (at module level, or anywhere)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        names: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


#: edge_app/tools/ holds developer tools (documentation screenshots drawn from a phantom) that the
#: device build leaves out (edge_app.android.stage excludes the folder; test_android_spec checks it).
DEVELOPER_TOOLS = "edge_app/tools/"


def test_edge_app_never_imports_benchmarks_training_or_quantize() -> None:
    offenders = {
        module: sorted(names & {"benchmarks", "training", "quantize", "torch"})
        for module, names in _imports("edge_app", top_level_only=False).items()
        if not module.startswith(DEVELOPER_TOOLS)
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_cxr_core_never_imports_another_stage() -> None:
    offenders = {
        module: sorted(names & {"benchmarks", "training", "quantize", "edge_app", "cxr_demo", "torch"})
        for module, names in _imports("cxr_core", top_level_only=False).items()
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_benchmarks_import_torch_only_for_the_explicit_reference_row() -> None:
    """torch (and training, which needs it) appear only inside benchmarks/torch_ref.py's functions, and
    the out-of-distribution corpus draws its radiograph phantoms, and the photo study its phone photos
    of phantom films, with training.data's numpy-only renderers (inside their functions; the
    blocked-import test below imports them without training)."""
    for module, names in _imports("benchmarks", top_level_only=True).items():
        assert not names & {"torch", "training", "quantize", "edge_app"}, module
    anywhere = {
        m: names & {"torch", "training", "quantize"} for m, names in _imports("benchmarks", False).items()
    }
    assert {m: sorted(n) for m, n in anywhere.items() if n} == {
        "benchmarks/torch_ref.py": ["training"],
        "benchmarks/ood_corpus.py": ["training"],
        "benchmarks/photo_study.py": ["training"],
    }


#: Import every module of a package with torch, training and quantize made unimportable.
BLOCKED_IMPORT = """
import importlib, importlib.abc, json, pkgutil, sys
BLOCK = set(sys.argv[2].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCK:
            raise ImportError('blocked by test: ' + name)
        return None
sys.meta_path.insert(0, Refuse())
package = importlib.import_module(sys.argv[1])
skipped = []
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + '.'):
    if any(part in ('tools', 'android', 'deploy', '__main__') for part in info.name.split('.')):
        continue
    importlib.import_module(info.name)
print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} & BLOCK)))
"""


@pytest.mark.parametrize(
    ("package", "blocked"),
    [
        ("benchmarks", "torch,torchvision,training,quantize,edge_app"),
        ("cxr_core", "torch,torchvision,training,quantize,edge_app,benchmarks,onnx,tensorflow,kivy"),
    ],
)
def test_every_module_imports_with_the_forbidden_packages_missing(package: str, blocked: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT, package, blocked],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_public_api_is_importable_from_the_package() -> None:
    code = (
        "import sys, json\n"
        "import cxr_core\n"
        "lazy = 'cxr_core.predictor' not in sys.modules\n"
        "from cxr_core import Predictor, load_bundle, decode_image, preprocess, InputGate\n"
        "print(json.dumps({'lazy': lazy, 'names': [Predictor.__name__, load_bundle.__name__, "
        "decode_image.__name__, preprocess.__name__, InputGate.__name__]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "lazy": True,
        "names": ["Predictor", "load_bundle", "decode_image", "preprocess", "InputGate"],
    }
    import cxr_core

    assert set(cxr_core.__all__) >= {"Predictor", "load_bundle", "decode_image", "preprocess", "InputGate"}
    with pytest.raises(AttributeError, match="the public API is"):
        cxr_core.no_such_name  # noqa: B018
