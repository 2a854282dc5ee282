"""``tools/arm64-check BUNDLE``: run the Pi's device path under qemu and compare it with this machine.

1. build (once; cached) an arm64 root: Debian bookworm's python3.11 + the ``[pi]`` extra's aarch64
   wheels and onnxruntime (:mod:`tools.arm64_check.root`);
2. import each device module in it (which runtimes run on arm64, and how one that crashes dies);
3. on both sides: every format's probabilities on the golden inputs, ``cxr-export verify`` and
   ``cxr-predict`` on a few phantoms (PNG, JPEG, DICOM), one format at a time;
4. compare every probability (:mod:`tools.arm64_check.compare`); a format fails when arm64 and x86
   differ by more than its golden tolerance;
5. ``install.sh --root`` in both modes, the rendered units, and the *installed* bundle verified on
   arm64 with only the installed trusted keys (:mod:`tools.arm64_check.installer`).

Prints a table and writes ``OUT/arm64-check.json``. See docs/deploy-pi.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxr_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
    version,
)
from cxr_core.errors import CxrEdgeError
from tools.arm64_check import compare, installer, phantoms, qemu
from tools.arm64_check.errors import StepFailedError
from tools.arm64_check.root import (
    CACHE_ENV,
    RootSpec,
    default_cache_dir,
    ensure_root,
    pi_requirements,
    pin_to_host,
)

REPO = Path(__file__).resolve().parents[2]
PROG = "tools/arm64-check"
RESULT_NAME = "arm64-check.json"
#: The module each runtime family needs on the device.
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert.interpreter"}
#: What the kiosk imports, in the order it matters (a crash hides the modules after it).
DEVICE_MODULES = (
    "numpy",
    "PIL.Image",
    "simplejpeg",
    "pydicom",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cxr_core.predictor",
    "ai_edge_litert.interpreter",
    "onnxruntime",
    "kivy",
)


class Reporter:
    """Progress lines on stderr with the time since the start."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(
                f"[arm64-check {time.monotonic() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a bundle's golden set and a few phantoms through cxr-export verify and cxr-predict "
        "in an emulated arm64 (Raspberry Pi OS Bookworm-like) root under qemu-aarch64-static and on this "
        "machine, compare every probability (max |dp| per format against the format's golden tolerance), "
        "and exercise the Pi installer's dry run and systemd units. The root (Debian bookworm's python3.11 "
        "and the [pi] extra's aarch64 wheels, ~300 MB) is built once from the package registries and "
        "cached; nothing else uses the network.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "every format the arm64 root can run matches this machine within its tolerance, "
                "and the installer checks passed",
                EXIT_FAILED: "a format differs beyond its tolerance, failed on arm64 or was refused "
                "differently, or an installer check failed (--require-all: or a format cannot run on arm64)",
                EXIT_USAGE: "usage error, an unreadable bundle, qemu-aarch64-static or another host tool "
                "missing (the message names the package), or a download that failed",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path, help="model bundle folder (cxr-export)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("arm64-check"),
        help="work folder for the results (default: ./arm64-check)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"where the arm64 root is cached (default: ${CACHE_ENV} or ~/.cache/cxr-edge/arm64-root)",
    )
    parser.add_argument(
        "--phantoms",
        type=int,
        default=3,
        help=f"phantom images scored by cxr-predict on both sides, 1..{phantoms.MAX_PHANTOMS} (default: 3: "
        "a PNG, a JPEG and a DICOM)",
    )
    parser.add_argument(
        "--cpu",
        choices=sorted(qemu.CPU_MODELS),
        default="cortex-a76",
        help="CPU qemu emulates: cortex-a76 (Raspberry Pi 5, default) or cortex-a72 (Raspberry Pi 4); its "
        "/proc/cpuinfo is written into the cached root, so runs that share a cache at the same time must "
        "use the same --cpu",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached root")
    parser.add_argument(
        "--require-all", action="store_true", help="fail when a format of the bundle cannot run on arm64"
    )
    parser.add_argument(
        "--no-installer", action="store_true", help="skip the install.sh dry run and the unit checks"
    )
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="check a bundle that is unsigned or not signed by a key this machine trusts",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds one emulated step may take (default: 1800)"
    )
    add_progress_flag(parser, default=True, help="a line on stderr as each step starts")
    return parser


def _validate(args: argparse.Namespace) -> None:
    if not (args.bundle / "manifest.json").is_file():
        raise StepFailedError(
            f"bundle {args.bundle}: no manifest.json; expected a bundle folder written by cxr-export"
        )
    if not 1 <= args.phantoms <= phantoms.MAX_PHANTOMS:
        raise StepFailedError(f"--phantoms {args.phantoms}: expected 1..{phantoms.MAX_PHANTOMS}")
    if not args.timeout > 0:
        raise StepFailedError(f"--timeout {args.timeout}: expected a positive number of seconds")


def describe_exit(code: int) -> str:
    """``exit 0``, or the signal a negative status means (``killed by SIGSEGV``)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code >= 128 + 1 and code - 128 in {s.value for s in signal.Signals}:
        return f"exit {code} ({signal.Signals(code - 128).name})"
    return f"exit {code}"


def parse_import_lines(stdout: str) -> list[dict[str, Any]]:
    """The probe's JSON lines (anything else on stdout, e.g. Kivy's log, is ignored)."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith('{"module"'):
            rows.append(json.loads(line))
    return rows


class Side:
    """Runs the probe and the CLIs on one side: the host's Python, or the root's under qemu."""

    def __init__(
        self,
        name: str,
        python: Sequence[str],
        env: Mapping[str, str],
        timeout: float,
        report: Reporter,
        allow_untrusted: bool,
    ) -> None:
        self.name, self.python, self.env, self.timeout = name, list(python), dict(env), timeout
        self.report = report
        self.untrusted = ["--allow-untrusted"] if allow_untrusted else []
        self.timings: dict[str, float] = {}

    def run(self, step: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.report(f"{self.name}: {step} ...")
        started = time.monotonic()
        try:
            done = subprocess.run(
                [*self.python, *args],
                env=self.env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailedError(
                f"{self.name}: {step} took longer than --timeout {self.timeout:g} s"
            ) from exc
        self.timings[step] = round(time.monotonic() - started, 1)
        return done

    def imports(self, modules: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Import each module; one that kills the process is recorded with how it died, then the rest run."""
        results: dict[str, dict[str, Any]] = {}
        pending = list(modules)
        while pending:
            done = self.run(
                f"import {', '.join(pending)}",
                ["-m", "tools.arm64_check.probe", "imports", ",".join(pending)],
            )
            for row in parse_import_lines(done.stdout):
                results[row["module"]] = row
            pending = [m for m in pending if m not in results]
            if pending and done.returncode != 0:
                tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
                results[pending[0]] = {
                    "module": pending[0],
                    "ok": False,
                    "version": None,
                    "error": f"the process died while importing it: {describe_exit(done.returncode)}; "
                    + " | ".join(tail),
                }
                pending = pending[1:]
            elif pending:
                raise StepFailedError(
                    f"{self.name}: the import probe ended early ({describe_exit(done.returncode)})"
                )
        return results

    def golden(self, bundle: Path, out: Path, runtimes: Sequence[str]) -> dict[str, Any]:
        done = self.run(
            "golden set, every format",
            ["-m", "tools.arm64_check.probe", "golden", str(bundle), "--out", str(out),
             "--runtimes", ",".join(runtimes), *self.untrusted],
        )  # fmt: skip
        if done.returncode != 0 or not out.is_file():
            raise StepFailedError(
                f"{self.name}: the golden probe failed ({describe_exit(done.returncode)}): "
                f"{done.stderr.strip()[-800:]}"
            )
        return json.loads(out.read_text())

    def verify(self, bundle: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``cxr-export verify --json``: the report, or ``{"error": ...}`` when it did not pass."""
        saved = self.env
        self.env = {**saved, **(env or {})}
        try:
            done = self.run(
                f"cxr-export verify {bundle.name}",
                ["-m", "quantize.cli", "verify", str(bundle), "--json", *self.untrusted],
            )
        finally:
            self.env = saved
        if done.returncode != 0:
            return {"error": f"{describe_exit(done.returncode)}: {done.stderr.strip()[-800:]}"}
        return json.loads(done.stdout)

    def predict(self, bundle: Path, model: str, images: Sequence[Path], out: Path) -> dict[str, Any] | None:
        done = self.run(
            f"cxr-predict --model {model} on {len(images)} phantom(s)",
            ["-m", "cxr_core.predict_cli", "--bundle", str(bundle), "--model", model, "--threads", "1",
             "--json", str(out), *self.untrusted, *map(str, images)],
        )  # fmt: skip
        if done.returncode not in (0, 1) or not out.is_file():
            self.report(f"{self.name}: cxr-predict --model {model}: {describe_exit(done.returncode)}")
            return None
        return json.loads(out.read_text())


def _trusted_key_file(bundle: Path, folder: Path) -> Path | None:
    """The host's trusted key that signed ``bundle``, as a .pub file for ``install.sh --trust-key``."""
    from cxr_core.bundle.signing import public_line, signed_by, trusted_keys

    signer = signed_by(bundle)
    raw = trusted_keys().get(signer) if signer else None
    if raw is None:
        return None
    path = folder / f"{signer}.pub"
    path.write_text(public_line(raw) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    report = Reporter(args.progress)
    _validate(args)
    qemu.find_qemu()  # before anything slow: name the package when it is missing
    from cxr_core.bundle import load_bundle
    from cxr_core.parity import golden_tolerance_for

    bundle_dir = args.bundle.resolve()
    bundle = load_bundle(bundle_dir, verify=True, allow_untrusted=args.allow_untrusted)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = (args.cache or default_cache_dir()).expanduser().resolve()
    cpu = qemu.CPU_MODELS[args.cpu]

    started = time.monotonic()
    spec = RootSpec(requirements=pin_to_host(pi_requirements(REPO / "pyproject.toml")))
    root, built = ensure_root(spec, cache, report, rebuild=args.rebuild)
    root_seconds = round(time.monotonic() - started, 1)
    qemu.write_cpu_files(root.sysroot, cpu)
    kivy_home = Path(tempfile.mkdtemp(prefix="kivy-", dir=out))
    arm_env = qemu.environment(root, REPO, cpu, cache / "pycache-arm64", {"KIVY_HOME": str(kivy_home)})
    host_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    arm = Side(
        "arm64", [qemu.find_qemu(), str(root.python)], arm_env, args.timeout, report, args.allow_untrusted
    )
    host = Side("x86", [sys.executable], host_env, args.timeout, report, args.allow_untrusted)

    imports = arm.imports(DEVICE_MODULES)
    for name, row in imports.items():
        report(f"arm64: import {name}: {'ok ' + str(row['version'] or '') if row['ok'] else row['error']}")
    runtimes = [family for family, module in RUNTIME_MODULES.items() if imports.get(module, {}).get("ok")]
    unavailable = {
        family: f"{module} does not run in the arm64 root: {imports.get(module, {}).get('error')}"
        for family, module in RUNTIME_MODULES.items()
        if family not in runtimes and any(entry.runtime == family for entry in bundle.models)
    }

    images = phantoms.write_phantoms(out / "phantoms", args.phantoms)
    sides: dict[str, dict[str, Any]] = {}
    for side, allowed in ((host, list(RUNTIME_MODULES)), (arm, runtimes)):
        folder = out / side.name
        folder.mkdir(exist_ok=True)
        results: dict[str, Any] = {"golden": side.golden(bundle_dir, folder / "golden.json", allowed)}
        results["verify"] = (
            side.verify(bundle_dir)
            if side is host or not unavailable
            else {"error": "not run: a runtime does not import on arm64, and verify opens every format"}
        )
        results["predict"] = {
            entry.name: side.predict(bundle_dir, entry.name, images, folder / f"predict-{entry.name}.json")
            for entry in bundle.models
            if entry.runtime in allowed
        }
        sides[side.name] = results
    machine = sides["arm64"]["golden"].get("machine")
    if machine != "aarch64":
        raise StepFailedError(f"the emulated side reports machine {machine!r}; expected 'aarch64'")

    arm_verify = sides["arm64"]["verify"]
    verify_rows = {row["model"]: row for row in arm_verify.get("golden", [])}
    if "error" in arm_verify:
        report(f"arm64: cxr-export verify: {arm_verify['error']}")
    rows = []
    for entry in bundle.models:
        if unavailable:  # verify was not run (it opens every format): the golden probe stands in
            verify_row: dict[str, Any] | None = {"status": "not run", "message": arm_verify["error"]}
        else:
            verify_row = verify_rows.get(entry.name) or {
                "status": "error",
                "message": arm_verify.get("error"),
            }
        rows.append(
            compare.compare_format(
                model=entry.name,
                format=entry.format,
                precision=entry.precision,
                tolerance=golden_tolerance_for(entry).max_abs_dp,
                host_golden=sides["x86"]["golden"]["models"][entry.name],
                arm_golden=sides["arm64"]["golden"]["models"].get(entry.name),
                host_predict=sides["x86"]["predict"].get(entry.name),
                arm_predict=sides["arm64"]["predict"].get(entry.name),
                arm_verify=verify_row,
                unavailable=unavailable.get(entry.runtime),
            )
        )

    install: dict[str, Any] = {"status": "skipped", "passed": True}
    if not args.no_installer:
        install = installer_step(arm, bundle_dir, out, report, run_on_arm64=not unavailable)
    install_ok = bool(install["passed"])

    passed = compare.overall_passed(rows, args.require_all) and install_ok
    document = {
        "tool": PROG,
        "version": version(),
        "bundle": str(bundle_dir),
        "cpu": {"qemu": cpu.qemu_name, "board": cpu.board},
        "passed": passed,
        "root": {
            "path": str(root.path),
            "built_now": built,
            "seconds": root_seconds,
            "debs": len(root.info()["debs"]),
            "wheels": root.info()["wheels"],
            "requirements": list(spec.requirements),
        },
        "sides": {
            name: {k: sides[name]["golden"].get(k) for k in ("machine", "python", "numpy")} for name in sides
        },
        "imports": imports,
        "formats": [r.to_dict() for r in rows],
        "installer": install,
        "timings_s": {"x86": host.timings, "arm64": arm.timings, "total": round(report_elapsed(report), 1)},
    }
    result = out / RESULT_NAME
    result.write_text(json.dumps(document, indent=2) + "\n")
    print(compare.table(rows))
    if not args.no_installer:
        print(installer_summary(install))
    state = "built" if built else "cached"
    print(f"arm64 root: {state} in {root_seconds:.0f} s; total {report_elapsed(report):.0f} s")
    print(f"{'PASS' if passed else 'FAIL'}; results in {result}")
    return EXIT_OK if passed else EXIT_FAILED


def installer_step(
    arm: Side, bundle: Path, out: Path, report: Reporter, run_on_arm64: bool
) -> dict[str, Any]:
    """install.sh's dry runs and units, then the installed bundle verified on arm64 with only the
    installed trusted keys (not run when a runtime cannot import: verify opens every format)."""
    report("install.sh --root (kms and desktop) and the systemd units ...")
    check = installer.check_installer(REPO, bundle, out / "install", _trusted_key_file(bundle, out))
    install = check.to_dict()
    passed = check.passed
    if check.installed_bundle is None or check.trusted_keys is None:
        install["arm64_verify_installed_bundle"] = {"status": "not run", "message": "nothing was installed"}
    elif not run_on_arm64:
        install["arm64_verify_installed_bundle"] = {
            "status": "not run",
            "message": "a runtime does not import",
        }
    else:
        kiosk = arm.verify(check.installed_bundle, {"CXR_EDGE_TRUSTED_KEYS": str(check.trusted_keys)})
        if "error" in kiosk:
            install["arm64_verify_installed_bundle"] = {"status": "fail", "message": kiosk["error"]}
            passed = False
        else:
            install["arm64_verify_installed_bundle"] = {
                "status": "pass",
                "trust": kiosk.get("trust_line"),
                "models": {r["model"]: r["status"] for r in kiosk["golden"]},
            }
    install["passed"] = passed
    return install


def installer_summary(install: dict[str, Any]) -> str:
    """The installer lines under the table: the verdict, then every problem found."""
    lines = [
        "installer dry run (kms, desktop), units and the installed bundle on arm64: "
        + ("pass" if install["passed"] else "FAIL")
    ]
    for mode, row in install.get("modes", {}).items():
        lines += [f"  {mode}: {problem}" for problem in row["problems"]]
        if row["systemd_analyze"]["status"] == "fail":
            lines.append(f"  {mode}: systemd-analyze verify: {row['systemd_analyze']['message']}")
    kiosk = install.get("arm64_verify_installed_bundle", {})
    if kiosk.get("status") != "pass":
        lines.append(f"  the installed bundle on arm64: {kiosk.get('status')} ({kiosk.get('message')})")
    return "\n".join(lines)


def report_elapsed(report: Reporter) -> float:
    return time.monotonic() - report.start


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except CxrEdgeError as exc:
        return error_exit(PROG, exc)


if __name__ == "__main__":
    sys.exit(main())
