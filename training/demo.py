"""``cxr-demo``: the whole training path on synthetic phantoms, on a CPU, in minutes.

1. generate a phantom set in the ChestX-ray14 layout into ``OUT/data`` (kept if already there);
2. train a small CheXNet (or DGC) on it at low resolution into ``OUT/run`` (a run left there is
   resumed, so re-running the demo finishes or reuses it);
3. evaluate the best checkpoint on the test split into ``OUT/run/eval-test``;
4. print the path of every artefact.

Phantoms are not radiographs: the figures say the pipeline works, nothing about clinical skill.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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

EXIT_CODES = {
    EXIT_OK: "every step finished",
    EXIT_USAGE: "usage error, a step that failed (its messages are printed above), or a missing "
    "optional dependency (the demo needs the train and export extras)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-demo", description=__doc__.split("\n\n")[0], epilog=exit_codes_epilog(EXIT_CODES)
    )
    add_version(parser)
    parser.add_argument("--out", default="./cxr-edge-demo", help="output folder (default: ./cxr-edge-demo)")
    parser.add_argument("--images", type=int, default=600, help="phantom images to generate (default: 600)")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="side of the generated PNGs in pixels (default: 256, the smallest the input gate accepts)",
    )
    parser.add_argument(
        "--input-size", type=int, default=128, help="model input side in pixels (default: 128)"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--architecture", default="chexnet", choices=("chexnet", "dgc", "dgc-baseline"))
    parser.add_argument("--encoder", default="densenet121", help="densenet121 (default), tiny-densenet, ...")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: automatic)")
    add_progress_flag(parser, default=True, help="progress bars on stderr")
    return parser


def ensure_phantoms(root: Path, images: int, size: int, seed: int, progress: bool = True) -> Path:
    """Generate the phantom set unless ``root`` already holds one."""
    if (root / "Data_Entry_2017.csv").is_file():
        print(f"using the phantom set in {root}")
        return root
    from training.data.synthetic import generate_chestxray14

    print(f"generating {images} phantom images of {size} px into {root} ...", flush=True)
    generate_chestxray14(root, n_images=images, image_size=size, seed=seed, progress=progress)
    return root


def run_demo(args: argparse.Namespace) -> dict[str, Path]:
    from training.cli import print_epoch
    from training.config import TrainConfig
    from training.evaluation import evaluate_checkpoint
    from training.resume import config_for_resume
    from training.trainer import run_training

    out = Path(args.out).expanduser()
    data = ensure_phantoms(out / "data", args.images, args.size, args.seed, progress=args.progress)
    resize_to = max(args.input_size, round(args.input_size * 256 / 224))
    config = TrainConfig(
        dataset="synthetic",
        data_root=str(data),
        out_dir=str(out / "run"),
        architecture=args.architecture,
        encoder=args.encoder,
        latent_dim=64 if args.encoder == "tiny-densenet" else 1024,
        input_size=args.input_size,
        resize_to=resize_to,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        progress=args.progress,
        log_every=0,
    )
    resume = out / "run" if (out / "run" / "last.pt").is_file() else None
    if resume is not None:
        print(f"resuming the run in {resume} (its stored settings; --epochs may extend it)")
        config = config_for_resume(
            resume, {"epochs": args.epochs, "num_workers": args.num_workers, "progress": args.progress}
        )
    tag = f"{config.architecture}-{config.encoder}"
    print(f"training {tag} at {config.input_size} px for {config.epochs} epoch(s)")
    result = run_training(config, resume=resume, on_epoch_end=print_epoch)
    print(f"best mean val AUC {result.best_metric:.4f} at epoch {result.best_epoch}")
    evaluation = evaluate_checkpoint(
        result.best_checkpoint,
        "test",
        out / "run" / "eval-test",
        device=args.device,
        threads=args.threads,
        progress=args.progress,
    )
    report = evaluation.output.report
    print(f"test mean AUC {report.mean_auc:.4f} over {report.n_samples} images")
    files = {"data": data, **result.files, **{f"test_{k}": v for k, v in evaluation.files.items()}}
    return files


def main(argv: Sequence[str] | None = None) -> int:
    from training.cli import prefer_passive_omp_wait, print_files

    prefer_passive_omp_wait()
    args = build_parser().parse_args(argv)
    try:
        with optional_dependencies("cxr-demo", extra="train"):
            files = run_demo(args)
    except CxrEdgeError as exc:
        return error_exit("cxr-demo", exc)
    print_files("artefacts:", files, width=20)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
