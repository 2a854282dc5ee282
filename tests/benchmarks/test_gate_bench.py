"""edge-bench's learned input gate: its cost next to inference, its refusal rates (--gate-in/--gate-ood).

Structure and consistency only, never timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.config import BenchConfig, BenchConfigError
from benchmarks.gate_bench import COST_TARGET, gate_costs, gate_rates, signal_aurocs
from benchmarks.gate_study import Verdict
from benchmarks.report import markdown_report, terminal_report
from benchmarks.schema import validate_results
from cxr_core.gate_signals import SignalDecision
from tests.benchmarks.conftest import FAST, RunBench
from tests.file_factory import write_jpeg, write_png


def _e2e_row(
    name: str,
    threads: int,
    int8: bool,
    gate: float,
    inference: float,
    added: float | None = None,
    bare_inference: float | None = None,
) -> dict:
    stages = {"learned_gate": {"mean": gate}, "inference": {"mean": inference}}
    e2e: dict = {"status": "ok", "stages_ms": stages}
    if added is not None:
        e2e |= {"learned_gate_added_ms": added, "inference_without_gate_ms": bare_inference}
    return {"name": name, "kind": "format", "threads": threads, "int8": int8, "e2e": e2e}


def test_gate_cost_is_what_the_gate_adds_to_the_wall_time_over_the_gate_less_inference() -> None:
    # the gate's stage took 0.5 ms after the model, the model ran 11 ms beside its image signals
    # and 10 ms without the gate; the predictions took 1.5 ms longer with the gate
    cost = gate_costs([_e2e_row("onnx-int8", 2, True, 0.5, 11.0, added=1.5, bare_inference=10.0)])[0]
    assert cost["added_ms"] == pytest.approx(1.5) and cost["ratio"] == pytest.approx(0.15)
    assert cost["inference_without_gate_ms"] == 10.0 and cost["within_target"] is True
    assert cost["learned_gate_ms"] == 0.5 and cost["inference_ms"] == 11.0


def test_gate_cost_is_the_learned_gate_stage_over_inference_with_the_int8_2_thread_target() -> None:
    rows = [
        _e2e_row("onnx", 2, False, 0.5, 10.0),
        _e2e_row("onnx-int8", 2, True, 0.5, 2.0),
        _e2e_row("onnx-int8", 1, True, 0.1, 4.0),
        {"name": "pytorch-fp32", "kind": "reference", "threads": 2, "int8": False, "e2e": None},
        {**_e2e_row("tflite", 2, False, 1, 1), "e2e": {"status": "refused"}},
    ]
    costs = {(c["format"], c["threads"]): c for c in gate_costs(rows)}
    assert set(costs) == {("onnx", 2), ("onnx-int8", 2), ("onnx-int8", 1)}
    assert costs[("onnx", 2)]["ratio"] == 0.05 and costs[("onnx", 2)]["within_target"] is None
    target = costs[("onnx-int8", 2)]
    assert target["target_row"] and target["ratio"] == 0.25 > COST_TARGET and target["within_target"] is False
    assert not costs[("onnx-int8", 1)]["target_row"]


def _verdict(*scores: float, refuse_above: bool = True) -> Verdict:
    decisions = tuple(SignalDecision.measure("s", x, 5.0, refuse_above=refuse_above) for x in scores)
    return Verdict("learned" if any(not d.accepted for d in decisions) else "accepted", decisions)


def test_signal_auroc_orients_each_signal_so_out_of_distribution_scores_high() -> None:
    inside = [_verdict(1.0), _verdict(2.0), Verdict("rule")]
    outside = [_verdict(8.0), _verdict(1.5)]
    assert signal_aurocs(inside, outside) == {"s": 0.75}
    similarity_in = [_verdict(0.9, refuse_above=False), _verdict(0.8, refuse_above=False)]
    similarity_out = [_verdict(0.1, refuse_above=False)]
    assert signal_aurocs(similarity_in, similarity_out) == {"s": 1.0}  # low similarity = unlike
    assert signal_aurocs(inside, [Verdict("rule")]) == {"s": None}


def test_gate_folders_come_together(tmp_path: Path) -> None:
    with pytest.raises(BenchConfigError, match="give both folders"):
        BenchConfig(bundle=tmp_path, out=tmp_path, gate_in=tmp_path)


@pytest.fixture(scope="module")
def gate_folders(gated_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """In-distribution: the bundle's own validation phantoms, enlarged past the 256 px size rule;
    out-of-distribution: noise, flat images and a colour photo (a rule refuses it), by category."""
    manifest = json.loads((gated_bundle / "manifest.json").read_text(encoding="utf-8"))
    images = manifest["parity"]["images"]
    root = tmp_path_factory.mktemp("gate_folders")
    inside = root / "in"
    inside.mkdir()
    for name in images["files"][:8]:
        with Image.open(Path(images["root"]) / name) as image:
            image.convert("L").resize((256, 256), Image.Resampling.BILINEAR).save(inside / Path(name).name)
    outside = root / "ood"
    for category in ("noise", "flat", "photo_colour"):
        (outside / category).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(outside / "noise" / f"noise{i}.png", rng.random((300, 300)))
        write_png(outside / "flat" / f"flat{i}.png", np.full((300, 300), i / 2))
    grey = rng.random((300, 300))
    write_jpeg(outside / "photo_colour" / "photo.jpg", np.stack([grey, 0.2 * grey, 1 - grey], axis=-1))
    return inside, outside


def test_refusal_rates_per_format_are_consistent(gated_bundle: Path, gate_folders: tuple[Path, Path]) -> None:
    inside, outside = gate_folders
    block = gate_rates(gated_bundle, ["onnx", "onnx-int8"], inside, outside, threads=2)
    assert set(block["formats"]) == {"onnx", "onnx-int8"} and block["threads"] == 2
    for rates in block["formats"].values():
        assert {"feature_mahalanobis", "autoencoder_ssim"} <= set(rates["signals"])
        assert rates["in_images"] == 8 and rates["ood_images"] == 7
        assert rates["false_refusal_rate"] == round(rates["false_refusals"] / 8, 4)
        assert rates["true_refusal_rate"] == round(rates["true_refusals"] / 7, 4)
        assert rates["ood_refused_by_rules"] == 1  # the colour photo, before any learned signal
        # every noise and flat image lies farther from the training features than every phantom; the
        # threshold (a 95% tolerance bound on 99.67% of the validation images) lets a flat one pass,
        # which the quality checks and the autoencoder refuse
        assert rates["auroc"]["feature_mahalanobis"] == 1.0
        assert rates["ood_refused_by_signal"]["feature_mahalanobis"] >= 4
        assert rates["true_refusals"] == 7
        categories = rates["categories"]
        assert categories["noise"] == {"images": 3, "refused": 3} and set(categories) == {
            "noise",
            "flat",
            "photo_colour",
        }
        assert sum(c["images"] for c in categories.values()) == rates["ood_images"]
        assert rates["in_refused_by_signal"].get("feature_mahalanobis", 0) == rates["false_refusals"]
        assert 0.5 < rates["auroc"]["feature_mahalanobis"] <= 1.0


@pytest.mark.slow
def test_edge_bench_reports_gate_cost_and_rates(
    gated_bundle: Path, gate_folders: tuple[Path, Path], tmp_path: Path, run_bench: RunBench
) -> None:
    inside, outside = gate_folders
    argv = [str(gated_bundle), *FAST, "--threads", "2", "--e2e-images", "1", "--e2e-repeats", "1"]
    argv += ["--gate-in", str(inside), "--gate-ood", str(outside), "--allow-untrusted"]
    run = run_bench(argv, tmp_path / "out")
    assert run.code == 0, run.stderr[-3000:]
    results = run.results
    assert validate_results(results) == []
    costs = {c["format"]: c for c in results["gate_cost"]}
    assert set(costs) == {"onnx", "onnx-int8"} and costs["onnx-int8"]["target_row"]
    onnx = costs["onnx"]
    e2e = next(r["e2e"] for r in results["rows"] if r["name"] == "onnx" and r["threads"] == 2)
    assert onnx["added_ms"] == pytest.approx(e2e["learned_gate_added_ms"], abs=1e-3)
    assert onnx["ratio"] == pytest.approx(onnx["added_ms"] / onnx["inference_without_gate_ms"], rel=1e-2)
    # the e2e sample is refused by this phantom-trained gate, and still timed (gate overridden)
    e2e = next(r["e2e"] for r in results["rows"] if r["name"] == "onnx")
    assert e2e["status"] == "ok" and e2e["refused"] and e2e["refused"][0]["timed"] is True
    assert results["gate_rates"]["formats"]["onnx"]["ood_images"] == 7
    assert results["settings"]["gate_in"] == str(inside)
    for text in (terminal_report(results), markdown_report(results), run.stdout):
        assert "Learned input gate cost" in text and "Input gate refusal rates" in text
    assert "Input gate refusal rates" in (run.out / "results.md").read_text(encoding="utf-8")
