"""``cxr-train``: train a CheXNet / DGC model, or evaluate a checkpoint on a split.

::

    cxr-train train --data-root DATA --out-dir runs/x [--preset dgc-paper] [--config run.yaml] [--lr 1e-4 ...]
    cxr-train --data-root DATA --out-dir runs/x ...          (train is the default)
    cxr-train train --resume runs/x [--epochs 12]             (continue a killed or finished run)
    cxr-train evaluate --checkpoint runs/x/best.pt --split test [--out DIR]
    torchrun --nproc_per_node 4 -m training.cli train ...     (DistributedDataParallel)

Every field of :class:`training.config.TrainConfig` is a flag (``--batch-size``, ``--frontal-only``
/ ``--no-frontal-only``, ``--betas 0.9 0.999``, ``--dataset-option KEY=VALUE``). Precedence:
defaults < ``--preset`` < ``--config`` file < flags. See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from cxr_core.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
    optional_dependencies,
)
from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require
from training.config import FIELD_CHOICES, PRESETS, TrainConfig, resolve_config

SUBCOMMANDS = ("train", "evaluate")
EPILOG = exit_codes_epilog(
    {
        EXIT_OK: "the run finished (or the checkpoint was evaluated)",
        EXIT_USAGE: "usage error, a refused configuration, dataset or checkpoint, or a missing "
        "optional dependency (torch and friends: the train extra)",
    }
)


def _parse_option(text: str) -> tuple[str, Any]:
    yaml = require("yaml", extra="train", purpose="--dataset-option values")
    if "=" not in text:
        raise argparse.ArgumentTypeError(
            f"--dataset-option {text!r}; expected KEY=VALUE, e.g. official_split=false"
        )
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; only flags actually given end up in the namespace."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("run configuration (see docs/training.md)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        choices = f"one of {', '.join(FIELD_CHOICES[f.name])}; " if f.name in FIELD_CHOICES else ""
        common: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"({choices}default: {default})",
        }
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif f.name == "betas":
            group.add_argument(flag, nargs=2, type=float, metavar=("BETA1", "BETA2"), **common)
        elif f.name == "dataset_options":
            group.add_argument(
                "--dataset-option", action="append", type=_parse_option, metavar="KEY=VALUE", **common
            )
        else:
            group.add_argument(flag, type=kind, metavar=f.name.upper(), **common)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr-train", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    add_version(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages to the console")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate}")
    train = sub.add_parser("train", help="train a model (the default command)", epilog=EPILOG)
    train.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    train.add_argument("--preset", choices=sorted(PRESETS), help="paper settings to start from")
    train.add_argument("--config", help="YAML or JSON file of config keys")
    train.add_argument(
        "--resume",
        metavar="PATH_OR_RUN_DIR",
        help="continue from a checkpoint or a run folder's last.pt (its stored config)",
    )
    add_config_flags(train)
    evaluate = sub.add_parser(
        "evaluate", help="score a checkpoint on a split and write the reports", epilog=EPILOG
    )
    evaluate.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    evaluate.add_argument("--checkpoint", required=True, help="a .pt written by cxr-train (best.pt, last.pt)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument(
        "--out", help="folder for the reports (default: eval-<split> beside the checkpoint)"
    )
    evaluate.add_argument("--data-root", help="dataset folder, when it moved since training")
    evaluate.add_argument("--batch-size", type=int)
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluate.add_argument("--num-workers", type=int)
    evaluate.add_argument("--threads", type=int, help="torch CPU threads (default: the run's setting)")
    evaluate.add_argument(
        "--max-batches", type=int, default=0, help="score only the first N batches (0 = all)"
    )
    evaluate.add_argument("--skip-preflight", action="store_true", help="do not decode every image up front")
    add_progress_flag(evaluate, default=True, help="progress bars on stderr")
    return parser


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def print_epoch(entry: dict[str, Any]) -> None:
    val = entry["val"]
    print(
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}  val loss {entry['val_loss']:.4f}  "
        f"val mean AUC {val['mean_auc']:.4f}  micro AUC {val['micro_auc']:.4f}  "
        f"{entry['seconds']:.1f} s  {entry['images_per_s']:.1f} images/s",
        flush=True,
    )


def print_files(title: str, files: Mapping[str, Any], width: int = 16) -> None:
    """``title``, then one indented line per file: its name padded to ``width``, then its path."""
    print(title)
    for name, path in files.items():
        print(f"  {name:{width}s} {path}")


def cmd_train(args: argparse.Namespace) -> int:
    from training.resume import config_for_resume
    from training.trainer import run_training

    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)
    }
    if args.resume:
        if args.preset or args.config:
            return error_exit("cxr-train", "--resume uses the run's stored config; drop --preset/--config")
        config = config_for_resume(args.resume, overrides)
    else:
        config = resolve_config(args.preset, args.config, overrides)
    result = run_training(config, resume=args.resume, on_epoch_end=print_epoch)
    if _is_main_process():
        best = (
            f"{result.best_metric:.4f} at epoch {result.best_epoch}"
            if result.best_metric is not None
            else "n/a"
        )
        print(f"best mean val AUC {best}{' (stopped early)' if result.stopped_early else ''}")
        print_files(f"run files in {result.out_dir}:", result.files)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.split,
        args.out,
        data_root=args.data_root,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        threads=args.threads,
        max_batches=args.max_batches,
        skip_preflight=args.skip_preflight,
        progress=args.progress,
    )
    if _is_main_process():
        report = result.output.report
        print(
            f"{args.split}: mean AUC {report.mean_auc:.4f}, micro AUC {report.micro_auc:.4f}, "
            f"mean AP {report.mean_ap:.4f} over {report.n_samples} images"
        )
        print_files(f"reports in {result.out_dir}:", result.files)
    return EXIT_OK


def configure_console_logging(verbose: bool) -> None:
    """Console handler at WARNING (INFO with -v); the run's train.log gets INFO regardless."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, handler.level))


def prefer_passive_omp_wait() -> None:
    """Let idle OpenMP threads sleep instead of spin (unless the user chose), before torch loads.

    On a CPU shared with other work, spinning threads made a DenseNet-121 training step 12x slower
    (21 s instead of 1.7 s for 16 images at 128 px on 2 shared cores; docs/training.md). Has no
    effect when torch is already imported; ``OMP_WAIT_POLICY=ACTIVE`` restores the spin.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    prefer_passive_omp_wait()
    argv = list(sys.argv[1:] if argv is None else argv)
    leading = argv[1:] if argv[:1] in (["-v"], ["--verbose"]) else argv
    if leading and leading[0].startswith("-") and leading[0] not in ("-h", "--help", "--version"):
        argv.insert(len(argv) - len(leading), "train")  # train is the default command
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    configure_console_logging(args.verbose)
    try:
        with optional_dependencies(f"cxr-train {args.command}", extra="train"):
            return cmd_train(args) if args.command == "train" else cmd_evaluate(args)
    except CxrEdgeError as exc:
        return error_exit("cxr-train", exc)


if __name__ == "__main__":
    sys.exit(main())
