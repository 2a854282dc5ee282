"""tools/arm64-check: the parts that need no qemu (fast), and the whole check under qemu (slow).

The fast tests run the real pieces on this machine: the probe and cxr-predict on the session bundle
and real PNG/JPEG/DICOM phantoms, the comparison on those x86 outputs (and on copies moved beyond a
format's tolerance), the cache key, the CPU files qemu is given, install.sh's dry run and the unit
checks, and the command line's refusals (a missing qemu names its Debian package).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cxr_core.bundle import load_bundle
from cxr_core.parity import golden_tolerance_for
from tools.arm64_check import cli, compare, installer, phantoms, qemu, root

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "tools" / "arm64-check"


def _host(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def x86_outputs(session_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The host side of a check, made by the same commands the tool runs: golden probe, verify, predict."""
    work = tmp_path_factory.mktemp("arm64-x86")
    images = phantoms.write_phantoms(work / "phantoms", 3)
    golden = _host(
        "-m", "tools.arm64_check.probe", "golden", str(session_bundle), "--out", str(work / "g.json")
    )
    assert golden.returncode == 0, golden.stderr
    verify = _host("-m", "quantize.cli", "verify", str(session_bundle), "--json")
    assert verify.returncode == 0, verify.stderr
    predict = _host(
        "-m", "cxr_core.predict_cli", "--bundle", str(session_bundle), "--model", "onnx-int8",
        "--threads", "1", "--json", str(work / "p.json"), *map(str, images),
    )  # fmt: skip
    assert predict.returncode in (0, 1), predict.stderr
    return {
        "golden": json.loads((work / "g.json").read_text()),
        "verify": json.loads(verify.stdout),
        "predict": json.loads((work / "p.json").read_text()),
        "images": images,
    }


def _compare(outputs: dict[str, Any], bundle: Path, **changes: Any) -> compare.FormatComparison:
    entry = load_bundle(bundle).model("onnx-int8")
    verify_row = next(r for r in outputs["verify"]["golden"] if r["model"] == "onnx-int8")
    host_golden = outputs["golden"]["models"]["onnx-int8"]
    arguments: dict[str, Any] = {
        "model": entry.name,
        "format": entry.format,
        "precision": entry.precision,
        "tolerance": golden_tolerance_for(entry).max_abs_dp,
        "host_golden": host_golden,
        "arm_golden": copy.deepcopy(host_golden),
        "host_predict": outputs["predict"],
        "arm_predict": copy.deepcopy(outputs["predict"]),
        "arm_verify": verify_row,
    }
    arguments.update(changes)
    return compare.compare_format(**arguments)


def test_phantoms_are_png_jpeg_and_dicom_and_scored_on_x86(x86_outputs: dict[str, Any]) -> None:
    assert [p.suffix for p in x86_outputs["images"]] == [".png", ".jpg", ".dcm"]
    document = x86_outputs["predict"]
    assert document["summary"]["scored"] == 3, document["failures"]
    assert x86_outputs["golden"]["models"]["onnx"]["status"] == "ok"
    assert x86_outputs["golden"]["images"] == len(x86_outputs["golden"]["models"]["onnx"]["probabilities"])


def test_identical_outputs_pass(x86_outputs: dict[str, Any], session_bundle: Path) -> None:
    row = _compare(x86_outputs, session_bundle)
    assert row.status == "pass", row.problems
    assert row.golden_max_abs_dp == 0.0 and row.phantom_max_abs_dp == 0.0 and row.phantoms == 3
    assert row.tolerance == golden_tolerance_for(load_bundle(session_bundle).model("onnx-int8")).max_abs_dp
    assert row.arm64_verify == "pass"


def test_a_probability_beyond_the_tolerance_fails(x86_outputs: dict[str, Any], session_bundle: Path) -> None:
    tolerance = _compare(x86_outputs, session_bundle).tolerance
    moved = copy.deepcopy(x86_outputs["predict"])
    finding = moved["results"][1]["findings"][0]
    finding["model_output"] = (
        min(1.0, finding["model_output"] + 1.5 * tolerance)
        if finding["model_output"] < 0.5
        else (finding["model_output"] - 1.5 * tolerance)
    )
    row = _compare(x86_outputs, session_bundle, arm_predict=moved)
    assert row.status == "fail"
    assert row.phantom_max_abs_dp == pytest.approx(1.5 * tolerance, rel=1e-6)
    assert any("phantom max |dp|" in p and f"tolerance {tolerance:g}" in p for p in row.problems)
    # just inside the tolerance passes
    inside = copy.deepcopy(x86_outputs["predict"])
    inside["results"][0]["findings"][2]["model_output"] += 0.5 * tolerance
    assert _compare(x86_outputs, session_bundle, arm_predict=inside).status == "pass"


def test_non_finite_golden_output_fails(x86_outputs: dict[str, Any], session_bundle: Path) -> None:
    arm = copy.deepcopy(x86_outputs["golden"]["models"]["onnx-int8"])
    arm["probabilities"][0][0] = math.nan
    row = _compare(x86_outputs, session_bundle, arm_golden=arm)
    assert row.status == "fail" and row.golden_max_abs_dp == math.inf
    assert any("not finite" in p for p in row.problems)
    assert row.to_dict()["golden_max_abs_dp"] == "inf"  # JSON has no infinity


def test_an_image_refused_on_one_side_only_fails(x86_outputs: dict[str, Any], session_bundle: Path) -> None:
    arm = copy.deepcopy(x86_outputs["predict"])
    gone = arm["results"].pop(2)
    arm["failures"].append(
        {"file": gone["source"], "error": "InputGateError", "reasons": ["not a chest film"]}
    )
    row = _compare(x86_outputs, session_bundle, arm_predict=arm)
    assert row.status == "fail" and row.phantoms == 2
    assert any("refused only on arm64" in p and "not a chest film" in p for p in row.problems)


def test_verify_failing_on_arm64_fails_the_format(x86_outputs: dict[str, Any], session_bundle: Path) -> None:
    row = _compare(x86_outputs, session_bundle, arm_verify={"status": "fail", "message": "outputs differ"})
    assert row.status == "fail" and any("verify on arm64: fail" in p for p in row.problems)


def test_unavailable_runtime_is_reported_not_failed_unless_required(
    x86_outputs: dict[str, Any], session_bundle: Path
) -> None:
    passing = _compare(x86_outputs, session_bundle)
    missing = _compare(x86_outputs, session_bundle, unavailable="onnxruntime: killed by SIGSEGV")
    assert missing.status == "unavailable" and missing.problems == ("onnxruntime: killed by SIGSEGV",)
    assert compare.overall_passed([passing, missing], require_all=False)
    assert not compare.overall_passed([passing, missing], require_all=True)
    assert not compare.overall_passed([missing], require_all=False)  # nothing ran: no proof
    text = compare.table([passing, missing])
    assert "onnx-int8" in text and "unavailable" in text and "killed by SIGSEGV" in text


def test_cache_key_names_what_decides_the_root() -> None:
    requirements = root.pi_requirements(REPO / "pyproject.toml")
    names = {root._requirement_name(r) for r in requirements}
    device = {"numpy", "pillow", "pydicom", "ai-edge-litert", "cryptography", "kivy", "onnxruntime"}
    assert device | {"simplejpeg"} <= names  # simplejpeg: the strict JPEG check runs on the Pi too
    assert "cxr-edge" not in names and "torch" not in names
    pinned = root.pin_to_host(requirements, version_of=lambda name: "9.9" if name == "numpy" else None)
    assert "numpy==9.9" in pinned and any(r.startswith("pydicom>=") for r in pinned)
    spec = root.RootSpec(requirements=pinned)
    assert spec.key() == root.RootSpec(requirements=tuple(reversed(pinned))).key()  # order does not matter
    assert len(spec.key()) == 16
    others = [
        root.RootSpec(requirements=root.pin_to_host(requirements, version_of=lambda name: "9.8")),
        root.RootSpec(requirements=pinned, mirror="http://mirror.example/debian"),
        root.RootSpec(requirements=pinned, debian_packages=(*root.DEBIAN_PACKAGES, "libgl1")),
    ]
    assert len({spec.key(), *(o.key() for o in others)}) == 4


def test_only_a_complete_root_is_used_from_the_cache(tmp_path: Path) -> None:
    spec = root.RootSpec(requirements=("numpy==2.0",))
    assert root.cached_root(spec, tmp_path) is None
    building = tmp_path / "roots" / f".{spec.key()}.building"
    building.mkdir(parents=True)  # an interrupted build is never used
    assert root.cached_root(spec, tmp_path) is None
    done = root.Arm64Root(tmp_path / "roots" / spec.key())
    done.python.parent.mkdir(parents=True)
    done.python.write_bytes(b"\x7fELF")
    assert root.cached_root(spec, tmp_path) is None  # no root.json: not complete
    done.info_path.write_text("{}")
    assert root.cached_root(spec, tmp_path) == done


def test_cache_folder_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(root.CACHE_ENV, str(tmp_path / "c"))
    assert root.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(root.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert root.default_cache_dir() == tmp_path / "xdg" / "cxr-edge" / "arm64-root"


def test_cpu_files_describe_a_raspberry_pi(tmp_path: Path) -> None:
    qemu.write_cpu_files(tmp_path, qemu.CPU_MODELS["cortex-a76"])
    cpuinfo = (tmp_path / "proc" / "cpuinfo").read_text()
    assert cpuinfo.count("CPU part\t: 0xd0b") == 4 and "asimddp" in cpuinfo and "Raspberry Pi 5" in cpuinfo
    cpus = tmp_path / "sys/devices/system/cpu"
    assert (cpus / "possible").read_text() == "0-3\n" and (cpus / "online").read_text() == "0-3\n"
    assert (cpus / "cpu3/topology/physical_package_id").read_text() == "0\n"
    assert "asimddp" not in qemu.cpuinfo_text(qemu.CPU_MODELS["cortex-a72"])  # Pi 4: no dot product


def test_emulated_environment_points_at_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/x86/lib")
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", "/keys")
    arm = root.Arm64Root(tmp_path)
    env = qemu.environment(arm, REPO, qemu.CPU_MODELS["cortex-a72"], tmp_path / "pyc")
    assert env["QEMU_LD_PREFIX"] == str(arm.sysroot) and env["QEMU_CPU"] == "cortex-a72"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(arm.site)]
    assert "LD_LIBRARY_PATH" not in env and env["CXR_EDGE_TRUSTED_KEYS"] == "/keys"  # same trust as the host


def test_exit_statuses_name_the_signal() -> None:
    assert cli.describe_exit(-11) == "killed by SIGSEGV"
    assert cli.describe_exit(139) == "exit 139 (SIGSEGV)"
    assert cli.describe_exit(1) == "exit 1"
    lines = 'INFO kivy noise\n{"module": "numpy", "ok": true, "version": "2", "error": null}\n'
    assert [r["module"] for r in cli.parse_import_lines(lines)] == ["numpy"]


def test_installer_dry_run_and_units(session_bundle: Path, tmp_path: Path) -> None:
    check = installer.check_installer(REPO, session_bundle, tmp_path, trust_key=None)
    assert set(check.modes) == {"kms", "desktop"}
    for mode, row in check.modes.items():
        assert row["exit"] == 0 and row["problems"] == [], (mode, row)
        assert row["settings"]["CXR_EDGE_WATCH"] == installer.WATCH
        assert row["systemd_analyze"]["status"] in ("pass", "skipped"), row["systemd_analyze"]
    assert check.passed and check.installed_bundle is not None
    assert (check.installed_bundle / "manifest.json").is_file()
    assert check.trusted_keys == tmp_path / "kiosk-kms/var/lib/cxr-edge/trusted-keys"


def test_broken_units_are_caught(tmp_path: Path) -> None:
    unit = (REPO / "edge_app/deploy/pi/cxr-edge-kiosk.service").read_text()
    problems = installer.unit_problems(unit, "kms", tmp_path)  # not rendered: placeholders left
    assert any("@USER@" in p for p in problems) and any("ExecStart" in p for p in problems)
    rendered = unit.replace("@USER@", "kiosk").replace("@PREFIX@", "/opt/cxr-edge")
    rendered = rendered.replace("@ENV_FILE@", "/etc/default/cxr-edge-kiosk")
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/cxr-edge-kiosk").write_text("X=1\n")
    assert installer.unit_problems(rendered, "kms", tmp_path) == []
    assert any("User=" in p for p in installer.unit_problems(rendered, "desktop", tmp_path))
    no_restart = rendered.replace("Restart=on-failure", "")
    assert any("Restart" in p for p in installer.unit_problems(no_restart, "kms", tmp_path))
    assert installer.read_environment_file('A="x \\"y\\" \\$HOME"\n# c\nB=2\n') == {
        "A": 'x "y" $HOME',
        "B": "2",
    }


def test_command_line_refusals(
    tmp_path: Path, session_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert cli.main([str(session_bundle), "--phantoms", "0"]) == 2
    assert "expected 1..6" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main([str(session_bundle), "--cpu", "cortex-a53"])
    assert exc.value.code == 2


def test_missing_qemu_names_the_debian_package(session_bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "PYTHON": sys.executable}
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(
        [bash, str(WRAPPER), str(session_bundle), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    if shutil.which("qemu-aarch64-static", path=env["PATH"]):
        pytest.skip("qemu-aarch64-static sits beside this Python")
    assert done.returncode == 2, done.stderr
    assert "qemu-aarch64-static is not installed" in done.stderr and "qemu-user-static" in done.stderr


def test_wrapper_prints_help() -> None:
    done = subprocess.run(["bash", str(WRAPPER), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--out", "--cache", "--phantoms", "--cpu", "--require-all", "--no-installer", "exit codes"):
        assert flag in done.stdout


# ----- the whole check, under qemu ------------------------------------------------------------------
QEMU_MISSING = shutil.which(qemu.QEMU) is None
SKIP_REASON = (
    f"{qemu.QEMU} is not installed (apt-get install {qemu.QEMU_PACKAGE}); the fast tests above cover the rest"
)


def _run_check(bundle: Path, out: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(WRAPPER), str(bundle), "--out", str(out), "--phantoms", "2", "--no-progress", *extra],
        capture_output=True, text=True, env=env, timeout=3000, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / cli.RESULT_NAME).read_text())


@pytest.mark.slow
@pytest.mark.skipif(QEMU_MISSING, reason=SKIP_REASON)
def test_arm64_check_on_the_session_bundle(session_bundle: Path, tmp_path: Path) -> None:
    result = _run_check(session_bundle, tmp_path / "out")
    assert result["passed"] and result["imports"]["onnxruntime"]["ok"]
    rows = {r["model"]: r for r in result["formats"]}
    assert set(rows) == {"onnx", "onnx-int8"}
    for row in rows.values():
        assert row["status"] == "pass" and row["arm64_verify"] == "pass", row
        assert row["max_abs_dp"] <= row["tolerance"] and row["phantoms"] == 2
    assert (
        result["installer"]["passed"]
        and result["installer"]["arm64_verify_installed_bundle"]["status"] == "pass"
    )


@pytest.mark.slow
@pytest.mark.needs_tflite
@pytest.mark.skipif(QEMU_MISSING, reason=SKIP_REASON)
def test_arm64_check_runs_litert_on_the_pi_4_cpu(session_bundle_all_formats: Path, tmp_path: Path) -> None:
    result = _run_check(session_bundle_all_formats, tmp_path / "out", "--cpu", "cortex-a72", "--no-installer")
    rows = {r["model"]: r for r in result["formats"]}
    for name in ("tflite", "tflite-fp16", "tflite-int8"):
        assert rows[name]["status"] == "pass" and rows[name]["runtime"] == "litert", rows[name]


def test_what_runs_on_arm64_imports_no_training_export_or_torch() -> None:
    import ast

    tree = ast.parse((REPO / "tools/arm64_check/probe.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"torch", "training", "quantize", "benchmarks", "tools"}, names
    assert set(cli.DEVICE_MODULES) >= set(cli.RUNTIME_MODULES.values())
