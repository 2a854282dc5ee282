"""End-to-end time split on real image files, through the same Predictor the app and cxr-predict use.

Per prediction the Predictor reports decode / gate / preprocess / inference / calibrate times
(``Prediction.timings_ms``) and adds ``cam`` once a heat map is computed; this module runs a few
real files (the ``--data`` images, or a 1024 x 1024 PNG it writes itself), one untimed warm-up
prediction first, and summarises each stage (mean, p50, share of the total) and the CAM's share
of inference time (the issue's target: under 5 %). An image only the learned input gate refuses is
still timed (with the gate overridden: every stage runs either way) and listed under ``refused``;
the learned gate's cost against inference is :mod:`benchmarks.gate_bench`'s.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("decode", "gate", "preprocess", "inference", "learned_gate", "calibrate", "cam")
SAMPLE_SIZE = 1024


def write_sample_radiograph(path: str | Path, size: int = SAMPLE_SIZE, seed: int = 0) -> Path:
    """Write a grey 8-bit PNG that looks like a frontal chest film (body, lungs, spine, ribs, noise).

    Used when no ``--data`` is given, so the split still covers decoding a real full-size file.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.full((size, size), 0.08, np.float32)
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.55) / 0.5) ** 2 < 1.0
    image[body] = 0.62
    for cx in (0.32, 0.68):  # lung fields: dark
        lung = ((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1.0
        image[lung] = 0.22 + 0.08 * yy[lung]
    image[np.abs(xx - 0.5) < 0.035] = 0.85  # spine / mediastinum
    heart = ((xx - 0.55) / 0.12) ** 2 + ((yy - 0.62) / 0.1) ** 2 < 1.0
    image[heart] = 0.7
    for k in range(9):  # ribs: bright arcs across the lung fields
        arc = np.abs(yy - (0.25 + 0.055 * k) - 0.05 * np.cos((xx - 0.5) * 6.0)) < 0.006
        image[arc & body] += 0.12
    image += rng.normal(0.0, 0.02, image.shape).astype(np.float32)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def _stage_summary(values: list[float], total: float) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    return {
        "mean": round(mean, 4),
        "p50": round(float(np.median(array)), 4),
        "share": round(mean / total, 4) if total > 0 else 0.0,
    }


def without_learned_gate(predictor: Any, predict: Callable[[], Any]) -> tuple[float, float]:
    """Run ``predict`` with ``predictor``'s learned gate taken out: (wall ms, its inference ms)."""
    from cxr_core.gate_signals import LearnedGate

    gate = predictor.learned_gate
    predictor.learned_gate = LearnedGate()
    try:
        start = time.perf_counter_ns()
        prediction = predict()
        return (time.perf_counter_ns() - start) / 1e6, float(prediction.timings_ms["inference"])
    finally:
        predictor.learned_gate = gate


def e2e_split(
    bundle_dir: str | Path, model: str, threads: int, images: Sequence[str], repeats: int = 3
) -> dict[str, Any]:
    """Predict each image ``repeats`` times (after one warm-up) and summarise the stage timings."""
    from cxr_core.gate_signals import GateRefusedError
    from cxr_core.input_gate import ImageRefusedError
    from cxr_core.predictor import Predictor

    t0 = time.perf_counter_ns()
    # the parent process checked the bundle's signature (results.run_benchmark, --allow-untrusted)
    predictor = Predictor.load(bundle_dir, model=model, threads=threads, allow_untrusted=True)
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    # the steady state: the gate's low-rank form is derived on a thread of its own after loading
    # (0.2-0.35 s on an idle 2-core machine, 0.5-1.0 s beside predictions), and until it is ready
    # its eigendecomposition takes the cores the timed predictions need (docs/input-gate.md)
    predictor.wait_until_prepared()
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    walls: list[float] = []
    gated: list[float] = []  # prediction wall ms (no CAM) with the learned gate ...
    bare: list[tuple[float, float]] = []  # ... and (wall ms, inference ms) without it
    refused: list[dict[str, Any]] = []
    for image in images:
        override = False
        try:
            predictor.predict_file(image)  # warm-up: first-call allocations, file cache
        except GateRefusedError as exc:
            # Only the learned signals refused it: every stage still runs, so it is timed with the
            # gate overridden (the learned gate's cost is the same either way) and listed as refused.
            refused.append({"image": str(image), "reasons": list(exc.reasons), "timed": True})
            override = True
        except ImageRefusedError as exc:
            refused.append({"image": str(image), "reasons": list(exc.reasons), "timed": False})
            continue
        bare_run = functools.partial(predictor.predict_file, image, override_gate=override)
        for repeat in range(max(1, repeats)):
            # the same prediction without the learned gate, every other time first: what the gate
            # adds is the difference (its image signals run beside the model, so no stage shows it)
            if repeat % 2:
                bare.append(without_learned_gate(predictor, bare_run))
            start = time.perf_counter_ns()
            prediction = predictor.predict_file(image, override_gate=override)
            gated.append((time.perf_counter_ns() - start) / 1e6)
            if not repeat % 2:
                bare.append(without_learned_gate(predictor, bare_run))
            top = prediction.ranked()[0].label
            cam_start = time.perf_counter_ns()
            prediction.heatmap(top)
            end = time.perf_counter_ns()
            timings = dict(prediction.timings_ms)
            timings.setdefault("cam", (end - cam_start) / 1e6)
            for stage in STAGES:
                per_stage[stage].append(float(timings.get(stage, 0.0)))
            walls.append((end - start) / 1e6)
    result: dict[str, Any] = {
        "images": len(images),
        "predictions": len(walls),
        "refused": refused,
        "predictor_load_ms": round(load_ms, 3),
        "model": predictor.model_name,
        "runtime": predictor.runtime,
    }
    if not walls:
        result["status"] = "refused"
        return result
    stage_total = sum(float(np.mean(v)) for v in per_stage.values())
    result["status"] = "ok"
    result["stages_ms"] = {stage: _stage_summary(v, stage_total) for stage, v in per_stage.items()}
    result["total_ms"] = round(stage_total, 4)
    result["wall_ms_p50"] = round(float(np.median(walls)), 4)
    # median of the paired differences (each with-gate run against its neighbouring gate-less one)
    added = np.asarray(gated) - np.asarray([b[0] for b in bare])
    result["learned_gate_added_ms"] = round(float(np.median(added)), 4)
    result["inference_without_gate_ms"] = round(float(np.median([b[1] for b in bare])), 4)
    inference = result["stages_ms"]["inference"]["mean"]
    result["cam_share_of_inference"] = (
        round(result["stages_ms"]["cam"]["mean"] / inference, 4) if inference > 0 else None
    )
    return result
