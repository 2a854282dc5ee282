"""Every fenced shell command in README.md and docs/*.md works as written.

Each command of a ```bash / ```sh / ```shell / ```console block is one of:

* **run** in full (:data:`RUN` and :data:`RUN_SLOW`), in a scratch folder where the paths the
  docs use (``bundles/chexnet``, ``scan.png``, ``/data/test`` ...) are the suite's tiny bundle,
  real phantom images and a small labelled phantom set;
* **help-checked**: the program exists, ``--help`` works, and every flag the command uses is in
  that help (every command of a known program gets this, run or not);
* **not runnable here**, listed in :data:`NOT_RUNNABLE` with the reason (installs, services,
  devices). ``pip`` commands are still checked statically: the extras they name exist and
  cxr-edge itself is never installed from a package index (it is not published on one).

A command that falls in none of these fails :func:`test_every_command_is_covered`, so a new
command in the docs cannot go unchecked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]  # name -> "module:function"
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
INSTALL_SH = "edge_app/deploy/pi/install.sh"
ARM64_CHECK = "tools/arm64-check"

#: Programs the docs show that cannot run in a test, with the reason.
NOT_RUNNABLE: dict[str, str] = {
    "pip": "installs packages into the environment (checked statically: extras exist, no index install)",
    "sudo": "needs root; the command after it is classified on its own",
    "systemctl": "manages services of the machine the docs talk about",
    "apt-get": "installs system packages",
    "adb": "talks to an Android device",
    "git": "clones or changes a repository",
    "buildozer": "downloads the Android SDK/NDK and builds an APK (the spec is checked offline instead)",
    "cd": "a shell builtin that only changes directory for the commands after it",
    ".": "sources a virtual environment into the calling shell",
    "python -m venv": "creates a virtual environment (tests/test_packaging.py does this with the wheel)",
    "python -m pytest": "is this test suite itself (.ci/run runs it)",
}
#: Help-checked but never run: programs whose full run is minutes of training, an APK or a window.
HELP_ONLY_REASONS: dict[str, str] = {
    "cxr-demo": "trains and exports a model (the one-minute smoke run is RUN_SLOW)",
    "cxr-train": "trains a model",
    "cxr-calibrate": "needs a site's labelled images; tests/cxr_core/test_recalibrate.py runs it in full",
    "cxr-keys": "changes the user's key and trusted-key folders; tests/cxr_core/test_bundle_trust.py runs it",
    "torchrun": "launches distributed training on several GPUs",
    "cxr-synth": "writes thousands of phantoms",
    "cxr-app": "opens a window",
    "python -m edge_app.tools.screenshots": "renders the app's screenshots into docs/",
    "python -m edge_app.android.stage": "stages files into edge_app/android/build",
    "python -m edge_app.android.spec_check": "runs buildozer's own spec check",
    "python -m benchmarks": "shown with '...': the same program and flags as edge-bench",
    "python -m build": "builds the wheel and the sdist (tests/test_packaging.py does, marked slow)",
    "python -m benchmarks.photo_study": "renders and captures hundreds of phone photos for minutes "
    "(tests/benchmarks/test_photo_study.py runs it on a few small photos)",
    "python -m benchmarks.speed_study": "times a 224 px DenseNet-121 for minutes "
    "(tests/benchmarks/test_speed_study.py runs it on the tiny bundle, marked slow)",
    ARM64_CHECK: "builds an arm64 root from the package registries and runs the bundle under qemu for "
    "minutes (tests/tools/test_arm64_check.py runs it in full, marked slow, where qemu is installed)",
}
#: Sub-commands: the first argument that selects another parser (and its --help).
SUBCOMMANDS = {
    "cxr-train": ("train", "evaluate"),
    "python -m training.cli": ("train", "evaluate"),
    "cxr-export": ("verify",),
    "python -m quantize.cli": ("verify",),
    "edge-bench": ("compare",),
    "python -m benchmarks": ("compare",),
}


@dataclass(frozen=True)
class Command:
    doc: str  # README.md or docs/x.md
    line: int
    text: str  # as written (continuations joined)
    argv: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _split_chain(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in ("&&", "||", ";", "|"):
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def parse_commands(path: Path) -> list[Command]:
    """The commands of every shell block of ``path``, with shell variables of the block expanded."""
    lines = path.read_text().splitlines()
    doc = path.relative_to(ROOT).as_posix()
    commands: list[Command] = []
    fence: str | None = None
    variables: dict[str, list[str]] = {}
    pending, start = "", 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            variables = {}
            continue
        if fence not in SHELL_FENCES:
            continue
        if fence == "console":
            if not stripped.startswith("$ ") and not pending:
                continue  # program output
            stripped = stripped.removeprefix("$ ")
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text, pending = (pending + stripped).strip(), ""
        tokens = shlex.split(text, comments=True)
        for argv in _split_chain(tokens):
            if len(argv) == 1 and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
                name, value = argv[0].split("=", 1)
                variables[name] = shlex.split(value)
                continue
            expanded: list[str] = []
            for token in argv:
                name = token[1:] if token.startswith("$") else None
                expanded += variables[name] if name in variables else [token.strip("[]")]
            commands.append(Command(doc, start, text, tuple(t for t in expanded if t)))
    return commands


COMMANDS = [c for path in DOCS for c in parse_commands(path)]


def program_of(argv: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``(program key, its arguments)``: ``python -m mod`` and script paths normalised."""
    head, rest = argv[0], argv[1:]
    if head in ("python", "python3") and rest[:1] == ("-m",) and len(rest) > 1:
        return f"python -m {rest[1]}", rest[2:]
    if head.endswith("install.sh"):
        return INSTALL_SH, rest
    if head.endswith("arm64-check"):
        return ARM64_CHECK, rest
    if head == "sudo" and rest:
        return program_of(rest)
    return head, rest


def help_argv(program: str, args: tuple[str, ...]) -> list[str] | None:
    """The command line that prints ``program``'s help for the sub-command ``args`` selects."""
    if program in SCRIPTS:
        module, function = SCRIPTS[program].split(":")
        launcher = [sys.executable, "-c", f"import sys; from {module} import {function} as m; sys.exit(m())"]
    elif program.startswith("python -m "):
        launcher = [sys.executable, "-m", program.removeprefix("python -m ")]
    elif program == INSTALL_SH:
        return ["bash", str(ROOT / INSTALL_SH), "--help"]
    elif program == ARM64_CHECK:  # the wrapper runs this module (with $PYTHON, else python3 on PATH)
        return [sys.executable, "-m", "tools.arm64_check.cli", "--help"]
    elif program == "torchrun":
        found = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        return [found, "--help"]
    else:
        return None
    sub = [a for a in args[:1] if a in SUBCOMMANDS.get(program, ())]
    if program in ("cxr-train", "python -m training.cli") and not sub:
        sub = ["train"]  # `train` is the default when the first argument is a flag (docs/training.md)
    return [*launcher, *sub, "--help"]


def flags_of(args: tuple[str, ...]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", a)]


@cache
def help_text(command: tuple[str, ...]) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}: {done.stderr[-1500:]}"
    return done.stdout + done.stderr


def check_flags(program: str, args: tuple[str, ...]) -> None:
    """``--help`` of the program works and names every flag ``args`` uses."""
    if program == "torchrun":  # torchrun's own flags, then the module it launches
        index = args.index("-m")
        check_flags("torchrun-self", args[:index])
        check_flags(f"python -m {args[index + 1]}", args[index + 2 :])
        return
    command = help_argv("torchrun" if program == "torchrun-self" else program, args)
    assert command is not None, f"no way to ask {program!r} for its help"
    text = help_text(tuple(command))
    for flag in flags_of(args):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (
            f"{program}: flag {flag} is used in the docs but not in `{' '.join(command[-2:])}` output"
        )


def check_pip(args: tuple[str, ...]) -> None:
    """pip commands: the extras exist, and cxr-edge comes from a checkout or a wheel, never an index."""
    if not args or args[0] != "install":
        return
    for target in args[1:]:
        if target.startswith("-"):
            continue
        match = re.fullmatch(r"(.*)\[([\w,-]+)\]", target)
        if match:
            base, extras = match.groups()
            assert set(extras.split(",")) <= EXTRAS, (
                f"pip install {target}: unknown extra; have {sorted(EXTRAS)}"
            )
            assert base == "." or base.endswith(".whl"), (
                f"pip install {target}: cxr-edge is not on a package index; install '.[extra]' from a "
                "checkout or a built wheel"
            )
        assert not re.match(r"cxr[-_]edge($|[\[<>=])", target), f"pip install {target}: not published"


# ----- what runs in full ----------------------------------------------------------------------------
#: Fast commands run in full (exact text after continuation joining -> allowed exit codes).
RUN: dict[str, tuple[int, ...]] = {
    "cxr-export verify bundles/chexnet": (0,),
    "python -m quantize.cli verify bundles/chexnet --json": (0,),
    "cxr-predict scan.png scans/ --bundle bundles/chexnet --json results.json --heatmap-dir heatmaps/": (0,),
    "edge-bench bundles/chexnet --threads 1,2 --data /data/test --out bench/": (0,),
    "edge_app/deploy/pi/install.sh --root /tmp/kiosk-dry-run --bundle /home/pi/chexnet-bundle": (0,),
}
#: Commands run in full only in the slow run (edge-bench sweeps, an export with TFLite, the demo).
RUN_SLOW: dict[str, tuple[int, ...]] = {
    "edge-bench bundles/chexnet": (0,),
    "edge-bench bundles/chexnet --threads 1,2,4 --runs 100 --out results/pi5 --device-name pi5": (0,),
    "edge-bench bundles/chexnet --data /data/phantoms --limit 300": (0,),
    "edge-bench bundles/chexnet --reference-torch runs/chexnet/best.pt": (0,),
    "edge-bench bundles/chexnet --profile": (0,),
    # a random tiny model fails --fail-under 0.8: exit 1 is the gate working as documented
    "edge-bench bundles/chexnet --data /data/phantoms --fail-under 0.8 --max-auc-drop 0.01 "
    "--max-dp 0.15 --min-agreement 0.97": (0, 1),
    "edge-bench compare results/laptop/results.json results/pi5/results.json --out results/all": (0,),
    "cxr-export best.pt --out b --calibration-dir /data/calib --calibration-images 128": (0, 1),
    "cxr-demo --encoder tiny-densenet --images 200 --size 256 --input-size 64": (0,),
}


def _normal(text: str) -> str:
    return " ".join(shlex.split(text, comments=True))


def classify(command: Command) -> str:
    """``run``, ``run-slow``, ``help`` or ``not-runnable: reason``; ``unknown`` fails the suite."""
    text = _normal(" ".join(shlex.quote(a) for a in command.argv))
    program, _ = program_of(command.argv)
    if command.argv[0] == "sudo":
        return f"not-runnable: {NOT_RUNNABLE['sudo']}"
    if text in RUN:
        return "run"
    if text in RUN_SLOW:
        return "run-slow"
    if program in NOT_RUNNABLE:
        return f"not-runnable: {NOT_RUNNABLE[program]}"
    if program in SCRIPTS or program in (INSTALL_SH, ARM64_CHECK, "torchrun"):
        return "help"
    if program.startswith("python -m ") and help_argv(program, ()) is not None:
        return "help"
    return "unknown"


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) > 40
    assert {c.doc for c in COMMANDS} >= {
        "README.md",
        "docs/training.md",
        "docs/export.md",
        "docs/deploy-pi.md",
    }


def test_every_command_is_covered() -> None:
    unknown = [f"{c.id}: {c.text}" for c in COMMANDS if classify(c) == "unknown"]
    assert not unknown, (
        "documented commands that are neither run, help-checked nor listed as not runnable "
        "(add them to RUN / RUN_SLOW, or their program to NOT_RUNNABLE with a reason):\n" + "\n".join(unknown)
    )


def test_every_listed_run_is_still_documented() -> None:
    documented = {_normal(" ".join(shlex.quote(a) for a in c.argv)) for c in COMMANDS}
    stale = sorted((set(RUN) | set(RUN_SLOW)) - documented)
    assert not stale, f"RUN / RUN_SLOW list commands no doc shows any more: {stale}"


def test_programs_never_run_in_full_say_why() -> None:
    ran = {program_of(c.argv)[0] for c in COMMANDS if classify(c) in ("run", "run-slow")}
    helped = {program_of(c.argv)[0] for c in COMMANDS if classify(c) == "help"}
    missing = sorted(helped - ran - set(HELP_ONLY_REASONS))
    assert not missing, f"help-checked only, with no reason in HELP_ONLY_REASONS: {missing}"


HELP_CHECKED = [c for c in COMMANDS if not classify(c).startswith("not-runnable") or c.argv[0] == "sudo"]


@pytest.mark.parametrize("command", HELP_CHECKED, ids=lambda c: c.id)
def test_flags_are_in_the_programs_help(command: Command) -> None:
    program, args = program_of(command.argv)
    if program in NOT_RUNNABLE:
        pytest.skip(f"{program}: {NOT_RUNNABLE[program]}")
    check_flags(program, args)


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if program_of(c.argv)[0] == "pip"], ids=lambda c: c.id
)
def test_pip_commands_name_real_extras_and_no_index_install(command: Command) -> None:
    check_pip(program_of(command.argv)[1])


def test_the_documented_frontal_only_default_is_the_code_default() -> None:
    from training.config import TrainConfig

    assert TrainConfig().frontal_only is False
    assert "`frontal_only` (false" in (ROOT / "docs" / "training.md").read_text()
    assert "`frontal_only=False` (the default" in (ROOT / "docs" / "data.md").read_text()


def test_no_file_cites_the_shared_design_notes() -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    offenders = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.suffix in (".png", ".npz", ".onnx", ".tflite") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if name != "tests/test_docs_commands.py" and re.search(
            r"(ARCHITECTURE|FINDINGS)\.md|\.\./shared/", text
        ):
            offenders.append(name)
    assert not offenders, f"files citing notes outside the project: {offenders}"


# ----- the scratch folder the full runs use ---------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data.synthetic import generate_chestxray14

    root = tmp_path_factory.mktemp("docs-data") / "phantoms"
    generate_chestxray14(root, n_images=24, image_size=256, seed=0, progress=False, overwrite=True, workers=1)
    return root


@pytest.fixture
def sandbox(
    tmp_path: Path, session_bundle: Path, labelled_phantoms: Path, checkpoint_factory, calibration_dir: Path
) -> Callable[[Command], tuple[list[str], Path]]:
    """``prepare(command)``: the command's argv with the docs' paths mapped into ``tmp_path``, and cwd."""
    from tests.cxr_core.test_input_gate import chest
    from tests.file_factory import write_png

    shutil.copytree(session_bundle, tmp_path / "bundles" / "chexnet")
    write_png(tmp_path / "scan.png", chest())
    (tmp_path / "scans").mkdir()
    write_png(tmp_path / "scans" / "a.png", chest(300, 300))
    write_png(tmp_path / "scans" / "b.png", chest(352, 320))
    checkpoint = checkpoint_factory("chexnet")
    paths = {
        "/data/test": str(labelled_phantoms),
        "/data/phantoms": str(labelled_phantoms),
        "/data/calib": str(calibration_dir),
        "runs/chexnet/best.pt": str(checkpoint),
        "best.pt": str(checkpoint),
        "/home/pi/chexnet-bundle": str(tmp_path / "bundles" / "chexnet"),
        "/home/pi/cxr-edge": str(ROOT),
        "/tmp/kiosk-dry-run": str(tmp_path / "kiosk-root"),
    }

    def prepare(command: Command) -> tuple[list[str], Path]:
        program, args = program_of(command.argv)
        if program == "edge-bench" and args[:1] == ("compare",):
            # the page compares runs made on two devices; make each from the same bundle here
            quick = ["bundles/chexnet", "--runs", "5", "--warmup", "1", "--idle-seconds", "0", "--quiet"]
            for results in args[1:]:
                out = Path(results).parent
                if results.endswith("results.json") and not (tmp_path / results).exists():
                    made = _launch(
                        "edge-bench", (*quick, "--out", str(out), "--device-name", out.name), tmp_path
                    )
                    assert made.returncode == 0, made.stderr[-2000:]
        return [paths.get(a, a) for a in args], tmp_path

    return prepare


def _launch(program: str, args: tuple[str, ...] | list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if program in SCRIPTS:
        module, function = SCRIPTS[program].split(":")
        launcher = [sys.executable, "-c", f"import sys; from {module} import {function} as m; sys.exit(m())"]
    elif program.startswith("python -m "):
        launcher = [sys.executable, "-m", program.removeprefix("python -m ")]
    elif program == INSTALL_SH:
        launcher = ["bash", str(ROOT / INSTALL_SH)]
    else:
        raise AssertionError(f"cannot launch {program!r}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [*launcher, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900, check=False
    )


def _run_in_full(
    command: Command, prepare: Callable[[Command], tuple[list[str], Path]], codes: tuple[int, ...]
):
    program, _ = program_of(command.argv)
    args, cwd = prepare(command)
    done = _launch(program, args, cwd)
    assert done.returncode in codes, (
        f"{command.id}: `{command.text}` exited {done.returncode}\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done, cwd


RUN_COMMANDS = [c for c in COMMANDS if classify(c) == "run"]
RUN_SLOW_COMMANDS = [c for c in COMMANDS if classify(c) == "run-slow"]


@pytest.mark.parametrize("command", RUN_COMMANDS, ids=lambda c: c.id)
def test_documented_command_runs(command: Command, sandbox) -> None:
    text = _normal(" ".join(shlex.quote(a) for a in command.argv))
    done, cwd = _run_in_full(command, sandbox, RUN[text])
    if "cxr-predict" in text:
        assert (cwd / "results.json").is_file() and len(list((cwd / "heatmaps").glob("*.png"))) >= 3
    if "--out bench/" in text:
        assert (cwd / "bench" / "results.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("command", RUN_SLOW_COMMANDS, ids=lambda c: c.id)
def test_documented_slow_command_runs(command: Command, sandbox) -> None:
    text = _normal(" ".join(shlex.quote(a) for a in command.argv))
    _run_in_full(command, sandbox, RUN_SLOW[text])


def test_the_checks_can_fail() -> None:
    assert classify(Command("x.md", 1, "frobnicate --now", ("frobnicate", "--now"))) == "unknown"
    with pytest.raises(AssertionError, match="--no-such-flag"):
        check_flags("cxr-predict", ("scan.png", "--no-such-flag"))
    with pytest.raises(AssertionError, match="unknown extra"):
        check_pip(("install", "-e", ".[nosuchextra]"))
    with pytest.raises(AssertionError, match="not on a package index"):
        check_pip(("install", "cxr-edge[runtime]"))
