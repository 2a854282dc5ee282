"""DistributedDataParallel on CPU: 2 processes (gloo, launched by torchrun) vs 1 process.

What is asserted, honestly:
* evaluation equivalence: the same checkpoint scored by 2 processes (sharded, uneven shards,
  predictions all-gathered, padding dropped) gives the per-image probabilities and per-class AUCs
  of 1 process (to 1e-6);
* a DDP training step runs and every rank ends with identical weights and BatchNorm buffers, and
  the validation metrics it reports are those a single process computes for the saved weights.
Training equivalence (2 ranks x 8 images == 1 process x 16 images) is not asserted: BatchNorm
normalises each rank's half batch with its own statistics, so the gradients differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from training.evaluation import evaluate_checkpoint
from training.models import build_model

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from training.config import TrainConfig
    from training.evaluation import evaluate_checkpoint
    from training.trainer import run_training

    dist.init_process_group("gloo")
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    out = config.out_dir
    result = run_training(config)
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{dist.get_rank()}.pt"))
    evaluate_checkpoint(os.path.join(out, "last.pt"), "val", os.path.join(out, "eval-val"), device="cpu",
                        progress=False)
    evaluate_checkpoint(os.path.join(out, "last.pt"), "test", os.path.join(out, "eval-odd"), device="cpu",
                        batch_size=7, max_batches=1, progress=False)
    dist.destroy_process_group()
    """
)


def _aucs(path: Path) -> np.ndarray:
    report = json.loads(path.read_text())["metrics"]
    return np.array([np.nan if c["auc"] is None else c["auc"] for c in report["classes"]])


@pytest.fixture(scope="module")
def ddp_run(tiny_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    out.mkdir()
    config = tiny_config(out, epochs=1, max_train_batches=1)
    script = out.parent / "ddp_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            json.dumps(config.to_dict()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_ranks_end_with_identical_weights_after_a_ddp_step(ddp_run: Path, tiny_config) -> None:
    rank0 = torch.load(ddp_run / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_run / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    torch.manual_seed(0)
    config = tiny_config(ddp_run)
    from training.engine import model_config_for

    initial = build_model(model_config_for(config, 14)).state_dict()
    moved = [k for k in rank0 if rank0[k].is_floating_point() and not torch.equal(rank0[k], initial[k])]
    assert moved, "the DDP step changed no weight"
    saved = torch.load(ddp_run / "last.pt", weights_only=True)["model_state"]
    for key in rank0:
        assert torch.equal(saved[key], rank0[key]), key


@pytest.mark.parametrize(
    ("folder", "kwargs"),
    [("eval-val", {"split": "val"}), ("eval-odd", {"split": "test", "batch_size": 7, "max_batches": 1})],
)
def test_two_process_evaluation_equals_one_process(
    ddp_run: Path, tmp_path: Path, folder: str, kwargs: dict
) -> None:
    single = evaluate_checkpoint(
        ddp_run / "last.pt", out_dir=tmp_path / folder, device="cpu", progress=False, **kwargs
    )
    two = np.load(ddp_run / folder / "predictions.npz")
    one = np.load(tmp_path / folder / "predictions.npz")
    assert two["probs"].shape == one["probs"].shape == single.output.probs.shape
    assert list(two["ids"]) == list(one["ids"])  # same images in the same order
    np.testing.assert_allclose(two["probs"], one["probs"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        _aucs(ddp_run / folder / "evaluation.json"),
        _aucs(tmp_path / folder / "evaluation.json"),
        atol=1e-6,
        equal_nan=True,
    )
    if kwargs.get("batch_size") == 7:
        assert one["probs"].shape[0] == 7  # 4 + 3 images: uneven shards, padding dropped


def test_ddp_training_reports_the_single_process_validation_metrics(ddp_run: Path, tmp_path: Path) -> None:
    history = json.loads((ddp_run / "metrics.json").read_text())["epochs"]
    reported = np.array([np.nan if c["auc"] is None else c["auc"] for c in history[0]["val"]["classes"]])
    single = evaluate_checkpoint(ddp_run / "last.pt", "val", tmp_path / "val", device="cpu", progress=False)
    expected = np.array([c.auc for c in single.output.report.classes])
    np.testing.assert_allclose(reported, expected, atol=1e-6, equal_nan=True)
    assert "2 process(es)" in (ddp_run / "train.log").read_text()


def test_samplers_shard_every_index_exactly_once() -> None:
    from training.distributed import EpochShuffleSampler, ShardSampler

    shards = [list(ShardSampler(11, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11)) and [len(s) for s in shards] == [4, 4, 3]
    samplers = [EpochShuffleSampler(11, seed=5, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        drawn = [list(s) for s in samplers]
        assert len(drawn[0]) == len(drawn[1]) == 6  # padded to equal shards, as DistributedSampler does
        assert set(drawn[0]) | set(drawn[1]) == set(range(11))
    single = EpochShuffleSampler(11, seed=5)
    single.set_epoch(0)
    order0 = list(single)
    single.set_epoch(1)
    assert sorted(order0) == list(range(11)) and list(single) != order0
    single.set_epoch(0)
    assert list(single) == order0  # depends on (seed, epoch) only: resumable without state


def test_gather_in_one_process_sorts_and_checks_coverage() -> None:
    from training.distributed import gather_predictions

    scores = torch.tensor([[0.3], [0.1], [0.2]])
    sorted_scores, indices = gather_predictions(scores, torch.tensor([2, 0, 1]), total=3)
    assert indices.tolist() == [0, 1, 2] and sorted_scores.flatten().tolist() == pytest.approx(
        [0.1, 0.2, 0.3]
    )
    with pytest.raises(RuntimeError, match="expected each image exactly once"):
        gather_predictions(scores, torch.tensor([2, 0, 0]), total=3)
