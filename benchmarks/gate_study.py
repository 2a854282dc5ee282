"""How well does the input gate know what it is looking at? False and true refusal rates, measured.

    python -m benchmarks.gate_study BUNDLE --in-distribution FOLDER [--corpus DIR] [--out study.json]

FOLDER holds in-distribution images the bundle never trained on: with a ``test_list.txt`` (a phantom
set, ChestX-ray14) only the test split is used. The out-of-distribution corpus is built offline by
:mod:`benchmarks.ood_corpus` (into ``--corpus``, kept, or a temporary folder) and is only measured:
the bundle's thresholds come from its own validation images at export.

Per model file of the bundle (FP32, INT8, ...) at 2 threads, every image goes through the rules of
the input gate and through every learned signal the bundle carries, scored even when a rule or a
signal refuses it (the study needs each signal's score; the decision is the Predictor's). Reported:
the false refusal rate on the in-distribution images, the true refusal rate over the corpus and per
category with what refused each image (a rule, or which signal), the AUROC of each signal's score and
of a combined score (in-distribution vs corpus), per-image agreement of each model's decisions with
the first model's, and the learned gate's time next to the classifier's inference. It prints a table
and writes JSON; it asserts nothing.

The functions are reusable: :func:`score_image` (one image through one Predictor),
:func:`study_model` (in-distribution files and a corpus through one Predictor) and
:func:`summarise` / :func:`agreement` (the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.e2e import without_learned_gate
from benchmarks.ood_corpus import CATEGORIES, DEFAULT_PER_CATEGORY, build_corpus
from cxr_core.bundle import Bundle, load_bundle
from cxr_core.cli_common import add_version
from cxr_core.errors import CxrEdgeError, ImageDecodeError
from cxr_core.gate_signals import SignalDecision
from cxr_core.imaging import decode_image
from cxr_core.imaging_common import IMAGE_SUFFIXES
from cxr_core.input_gate import ImageRefusedError, InputGate, default_checks
from cxr_core.metrics import roc_auc
from cxr_core.predictor import Prediction, Predictor
from cxr_core.runtime import open_backend

IN_DISTRIBUTION = "in_distribution"
#: The issue's targets, shown beside the figures (nothing is asserted).
TARGETS = {
    "frr_max": 0.01,
    "trr_min": 0.99,
    "trr_category_min": 0.95,
    "agreement_min": 0.99,
    "cost_max": 0.15,
}
#: Timed pairs (the same prediction with and without the learned gate) per in-distribution image; the
#: image's added time is the median of its pairs' differences. One pair per image moved a 97-image
#: study's cost between 9% and 27% on one 2-core VM within minutes (docs/input-gate.md, "Gate cost").
DEFAULT_COST_PAIRS = 3
#: Resamples of the in-distribution images behind the cost's bootstrap interval, and its level.
COST_RESAMPLES = 2000
COST_INTERVAL_LEVEL = 0.95


class GateStudyError(CxrEdgeError, ValueError):
    """The study cannot run as asked (no timed pair per image)."""


@dataclass(frozen=True)
class ImageOutcome:
    """One image through one model: the decision, what refused it, and every signal's score."""

    path: str
    category: str
    decision: str  # accepted | rule | signal | unreadable
    rules: tuple[str, ...] = ()  # names of the rule checks that refused it
    signals: tuple[str, ...] = ()  # names of the learned signals that refused it
    scores: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    refuse_above: dict[str, bool] = field(default_factory=dict)
    combined: float = math.nan
    gate_ms: float = math.nan  # wall time of the prediction with the learned gate less without it
    inference_ms: float = math.nan  # the model's time in the prediction without the learned gate

    @property
    def refused(self) -> bool:
        return self.decision != "accepted"


def oriented(score: float, refuse_above: bool) -> float:
    """The score with "larger = more unlike the training data" (a non-finite score is the most unlike)."""
    if not math.isfinite(score):
        return math.inf
    return score if refuse_above else -score


def margin(decision: SignalDecision) -> float:
    """How far past its threshold a signal's score is, relative to the threshold (> 0 refuses).

    The combined score of an image is the largest margin over its signals: it refuses exactly when
    the gate does, and ranks images across signals measured in different units.
    """
    if not math.isfinite(decision.score):
        return math.inf
    scale = abs(decision.threshold) or 1.0
    beyond = decision.score - decision.threshold
    return (beyond if decision.refuse_above else -beyond) / scale


def _rule_refusals(rules: InputGate, decoded: Any) -> tuple[str, ...]:
    return tuple(
        check.name for check in rules.checks for issue in check(decoded) if issue.severity == "refuse"
    )


def _timed_pairs(
    predictor: Predictor, decoded: Any, source: str, pairs: int
) -> tuple[Prediction, float, float]:
    """``pairs`` predictions of ``decoded`` with the learned gate, each beside one without it: (the
    first prediction, the median of the pairs' wall-time differences in ms, the median inference ms
    without the gate). Which of a pair runs first alternates, starting from a bit of the source's
    hash, so that neither always finds the caches warm."""
    if pairs < 1:
        raise GateStudyError(f"cost pairs {pairs}; expected at least 1")
    bare_first = bool(zlib.crc32(source.encode()) & 1)
    predictions: list[Prediction] = []
    added: list[float] = []
    bare_inference: list[float] = []
    for _ in range(pairs):
        if bare_first:
            without_gate, alone = _without_gate_ms(predictor, decoded, source)
        start = time.perf_counter_ns()
        predictions.append(predictor.predict_image(decoded, source, override_gate=True))
        with_gate = (time.perf_counter_ns() - start) / 1e6
        if not bare_first:
            without_gate, alone = _without_gate_ms(predictor, decoded, source)
        added.append(with_gate - without_gate)
        bare_inference.append(alone)
        bare_first = not bare_first
    return predictions[0], statistics.median(added), statistics.median(bare_inference)


def score_image(
    predictor: Predictor, rules: InputGate, path: Path, category: str, cost_pairs: int = 1
) -> ImageOutcome:
    """``path`` through the rules and through ``predictor`` (which must carry no rules of its own:
    see :func:`open_predictor`), every signal scored even when something refuses it; its added time
    is the median over ``cost_pairs`` timed pairs (:func:`_timed_pairs`)."""
    try:
        decoded = decode_image(path)
    except ImageDecodeError:
        return ImageOutcome(str(path), category, "unreadable")
    refused_rules = _rule_refusals(rules, decoded)
    prediction, gate_ms, alone = _timed_pairs(predictor, decoded, str(path), cost_pairs)
    scores, thresholds, above, refused_signals = {}, {}, {}, []
    for row in prediction.gate_signals:
        name = row.signal if row.signal not in scores else f"{row.signal}#{len(scores)}"
        scores[name], thresholds[name], above[name] = row.score, row.threshold, row.refuse_above
        if not row.accepted:
            refused_signals.append(name)
    margins = [margin(row) for row in prediction.gate_signals]
    decision = "rule" if refused_rules else ("signal" if refused_signals else "accepted")
    return ImageOutcome(
        path=str(path),
        category=category,
        decision=decision,
        rules=refused_rules,
        signals=tuple(refused_signals),
        scores=scores,
        thresholds=thresholds,
        refuse_above=above,
        combined=max(margins) if margins else math.nan,
        gate_ms=gate_ms,
        inference_ms=alone,
    )


def _without_gate_ms(predictor: Predictor, decoded: Any, source: str) -> tuple[float, float]:
    """The same prediction with the learned gate taken out: (its wall ms, its inference ms).

    The gate's image signals run beside the model, so what the gate costs is the difference of the
    two predictions' wall times (its own stage and the slowing of the model), not a stage's time.
    """
    return without_learned_gate(
        predictor, lambda: predictor.predict_image(decoded, source, override_gate=True)
    )


def open_predictor(bundle: Bundle, model: str, threads: int = 2) -> Predictor:
    """A Predictor of ``model`` with no rule checks (the study applies the rules itself, so that an
    image a rule refuses still gets every signal's score)."""
    return Predictor(bundle, open_backend(bundle, model=model, threads=threads), gate=InputGate([]))


@dataclass(frozen=True)
class Verdict:
    """What the input gate made of one file: ``outcome`` is ``accepted``, ``learned`` (a learned signal
    refused it), ``rule`` (a rule on the file refused it first) or ``unreadable``; ``signals`` holds
    every learned signal's verdict with its score (empty when a rule refused it or nothing decoded)."""

    outcome: str
    signals: tuple[Any, ...] = ()

    @property
    def refused(self) -> bool:
        return self.outcome != "accepted"


def judge(predictor: Predictor, path: Path) -> Verdict:
    """Run ``path`` through ``predictor`` as the device does; the learned signals' scores always come
    back (the gate is overridden to read them; whether it would have refused is in the verdict)."""
    try:
        prediction = predictor.predict_file(path, override_gate=True)
    except ImageRefusedError:  # with the override, only a rule on the file refuses
        return Verdict("rule")
    except ImageDecodeError:
        return Verdict("unreadable")
    refused = any(not d.accepted for d in prediction.gate_signals)
    return Verdict("learned" if refused else "accepted", tuple(prediction.gate_signals))


def study_model(
    predictor: Predictor,
    in_distribution: Sequence[Path],
    corpus: Mapping[str, Sequence[Path]],
    rules: InputGate | None = None,
    cost_pairs: int = DEFAULT_COST_PAIRS,
) -> list[ImageOutcome]:
    """Every in-distribution image (category :data:`IN_DISTRIBUTION`, timed over ``cost_pairs``
    pairs: the cost is summarised on them) and every corpus image (one pair)."""
    rules = InputGate() if rules is None else rules
    with _quiet_overrides():
        _warm_up(predictor, in_distribution)
        outcomes = [score_image(predictor, rules, p, IN_DISTRIBUTION, cost_pairs) for p in in_distribution]
        for category, paths in corpus.items():
            outcomes += [score_image(predictor, rules, p, category) for p in paths]
    return outcomes


def _warm_up(predictor: Predictor, images: Sequence[Path]) -> None:
    """Time the steady state: wait for the gate's background preparation (the feature gate's
    low-rank form, whose eigendecomposition would otherwise share the cores with the first timed
    predictions) and run one untimed prediction (first-call allocations)."""
    predictor.wait_until_prepared()
    for path in images[:1]:
        try:
            predictor.predict_image(decode_image(path), str(path), override_gate=True)
        except (ImageDecodeError, ImageRefusedError):
            pass  # the image is studied, and reported, like any other


@contextlib.contextmanager
def _quiet_overrides() -> Iterator[None]:
    """The study scores refused images on purpose: no "scored at the user's request" warning for each."""
    log = logging.getLogger("cxr_core.gate_signals")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def auroc_of(inside: Sequence[float], outside: Sequence[float]) -> float | None:
    """AUROC of out-of-distribution (positive) vs in-distribution scores, larger = more unlike;
    None when either side is empty. Infinite scores rank as the extremes."""
    if not inside or not outside:
        return None
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    values = np.nan_to_num(np.r_[inside, outside], nan=np.inf)
    values = np.clip(values, -1e300, 1e300)  # ranks: +-inf as the extremes
    return round(float(roc_auc(truth, values)), 4)


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def _category_row(outcomes: Sequence[ImageOutcome]) -> dict[str, Any]:
    refused_by: dict[str, int] = {}
    for o in outcomes:
        for name in o.signals:
            refused_by[name] = refused_by.get(name, 0) + 1
    accepted = sum(o.decision == "accepted" for o in outcomes)
    return {
        "images": len(outcomes),
        "accepted": accepted,
        "refused_by_rules": sum(o.decision == "rule" for o in outcomes),
        "refused_by_signals": sum(o.decision == "signal" for o in outcomes),
        "unreadable": sum(o.decision == "unreadable" for o in outcomes),
        "refusal_rate": _rate(len(outcomes) - accepted, len(outcomes)),
        # per signal: images it refuses on its own (also those a rule refused first)
        "signal_would_refuse": dict(sorted(refused_by.items())),
    }


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(statistics.median(finite), 3) if finite else None


def cost_interval(
    gate_ms: Sequence[float], inference_ms: Sequence[float], seed: int = 0
) -> list[float] | None:
    """A bootstrap interval (:data:`COST_INTERVAL_LEVEL`, :data:`COST_RESAMPLES` resamples of the
    images, seeded) of the cost, the median added time over the median inference time. It spans the
    spread between images and between timed pairs, not a change of the machine's state between
    studies. None with fewer than two images with both times."""
    pairs = [
        (g, i) for g, i in zip(gate_ms, inference_ms, strict=True) if math.isfinite(g) and math.isfinite(i)
    ]
    if len(pairs) < 2:
        return None
    gate, infer = np.asarray(pairs, dtype=np.float64).T
    picks = np.random.default_rng(seed).integers(0, len(pairs), size=(COST_RESAMPLES, len(pairs)))
    costs = np.median(gate[picks], axis=1) / np.median(infer[picks], axis=1)
    tail = (1.0 - COST_INTERVAL_LEVEL) / 2.0 * 100.0
    low, high = np.percentile(costs, [tail, 100.0 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def summarise(outcomes: Sequence[ImageOutcome]) -> dict[str, Any]:
    """FRR, TRR overall and per category, AUROC per signal and combined, the gate's cost."""
    inside = [o for o in outcomes if o.category == IN_DISTRIBUTION]
    outside = [o for o in outcomes if o.category != IN_DISTRIBUTION]
    categories: dict[str, list[ImageOutcome]] = {}
    for o in outside:
        categories.setdefault(o.category, []).append(o)
    in_row = _category_row(inside)
    out_row = _category_row(outside)
    signals = sorted({name for o in outcomes for name in o.scores})
    auroc = {}
    for name in signals:
        above = next(o.refuse_above[name] for o in outcomes if name in o.refuse_above)
        auroc[name] = auroc_of(
            [oriented(o.scores[name], above) for o in inside if name in o.scores],
            [oriented(o.scores[name], above) for o in outside if name in o.scores],
        )
    gate = _median([o.gate_ms for o in inside])
    infer = _median([o.inference_ms for o in inside])
    return {
        "in_distribution": {**in_row, "false_refusal_rate": in_row["refusal_rate"]},
        "corpus": {**out_row, "true_refusal_rate": out_row["refusal_rate"]},
        "categories": {
            c: {**_category_row(v), "true_refusal_rate": _category_row(v)["refusal_rate"]}
            for c, v in categories.items()
        },
        "signals": signals,
        "auroc": auroc,
        "auroc_combined": auroc_of(
            [o.combined for o in inside if o.scores], [o.combined for o in outside if o.scores]
        ),
        "gate_ms_median": gate,
        "inference_ms_median": infer,
        "gate_cost": round(gate / infer, 4) if gate is not None and infer else None,
        "gate_cost_interval": cost_interval([o.gate_ms for o in inside], [o.inference_ms for o in inside]),
    }


def agreement(reference: Sequence[ImageOutcome], other: Sequence[ImageOutcome]) -> dict[str, Any]:
    """Per image, does ``other`` accept or refuse like ``reference``? (same images, same order)"""
    pairs = list(zip(reference, other, strict=True))
    same = sum(a.refused == b.refused for a, b in pairs)
    learned = [(a, b) for a, b in pairs if a.decision != "rule" and a.decision != "unreadable"]
    same_learned = sum(a.refused == b.refused for a, b in learned)
    return {
        "images": len(pairs),
        "agree": same,
        "agreement": _rate(same, len(pairs)),
        "images_past_rules": len(learned),
        "agreement_past_rules": _rate(same_learned, len(learned)),
        "disagree": [a.path for a, b in pairs if a.refused != b.refused],
    }


def in_distribution_files(folder: Path, limit: int | None = None) -> list[Path]:
    """Images under ``folder``; only the test split when it holds a ``test_list.txt``."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    split = folder / "test_list.txt"
    if split.is_file():
        names = set(split.read_text(encoding="utf-8").split())
        files = [p for p in files if p.name in names]
    return files[:limit] if limit else files


def run_study(
    bundle_dir: Path,
    in_files: Sequence[Path],
    corpus: Mapping[str, Sequence[Path]],
    *,
    threads: int = 2,
    rules: InputGate | None = None,
    models: Sequence[str] | None = None,
    allow_untrusted: bool = False,
    cost_pairs: int = DEFAULT_COST_PAIRS,
) -> dict[str, Any]:
    """The whole study of ``bundle_dir``: per model its summary and per-image rows, and agreement."""
    bundle = load_bundle(bundle_dir, allow_untrusted=allow_untrusted)
    names = list(models) if models else [entry.name for entry in bundle.models]
    per_model: dict[str, list[ImageOutcome]] = {}
    for name in names:
        predictor = open_predictor(bundle, name, threads)
        try:
            per_model[name] = study_model(predictor, in_files, corpus, rules, cost_pairs)
        finally:
            predictor.close()
    reference = names[0]
    return {
        "bundle": str(bundle_dir),
        "threads": threads,
        "cost_pairs": cost_pairs,
        "targets": TARGETS,
        "corpus_categories": {c: CATEGORIES.get(c, c) for c in corpus},
        "models": {name: summarise(rows) for name, rows in per_model.items()},
        "agreement": {
            "reference": reference,
            **{name: agreement(per_model[reference], per_model[name]) for name in names[1:]},
        },
        "images": {name: [_row(o) for o in rows] for name, rows in per_model.items()},
    }


def _row(outcome: ImageOutcome) -> dict[str, Any]:
    row = asdict(outcome)
    for key in ("combined", "gate_ms", "inference_ms"):
        row[key] = round(row[key], 4) if math.isfinite(row[key]) else None
    row["scores"] = {k: (round(v, 4) if math.isfinite(v) else None) for k, v in row["scores"].items()}
    return row


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(bounds: Sequence[float] | None) -> str:
    if not bounds:
        return ""
    return f", {COST_INTERVAL_LEVEL:.0%} interval {_pct(bounds[0])}-{_pct(bounds[1])}"


def table(study: dict[str, Any]) -> str:
    """The study as text: one block per model, one line per category, then agreement."""
    lines = [f"input gate study: {study['bundle']} ({study['threads']} threads)"]
    for name, s in study["models"].items():
        ind, corp = s["in_distribution"], s["corpus"]
        auroc = ", ".join(f"{k} {v}" for k, v in s["auroc"].items()) or "no learned signal"
        lines += [
            f"\n{name}: FRR {_pct(ind['false_refusal_rate'])} ({ind['images'] - ind['accepted']} of "
            f"{ind['images']} in-distribution refused); TRR {_pct(corp['true_refusal_rate'])} "
            f"({corp['images'] - corp['accepted']} of {corp['images']})",
            f"  AUROC: {auroc}; combined {s['auroc_combined']}",
            f"  learned gate adds {s['gate_ms_median']} ms to the model's {s['inference_ms_median']} ms "
            f"(cost {_pct(s['gate_cost'])}{_interval(s['gate_cost_interval'])}; "
            f"{study['cost_pairs']} timed pair(s) per image)",
            f"  {'category':<20} {'n':>3} {'TRR':>7} {'rules':>5} {'signals':>7}  signal alone would refuse",
        ]
        for category, c in s["categories"].items():
            alone = ", ".join(f"{k} {v}" for k, v in c["signal_would_refuse"].items()) or "-"
            lines.append(
                f"  {category:<20} {c['images']:>3} {_pct(c['true_refusal_rate']):>7} "
                f"{c['refused_by_rules']:>5} {c['refused_by_signals']:>7}  {alone}"
            )
    for name, a in study["agreement"].items():
        if name != "reference":
            lines.append(
                f"\n{name} vs {study['agreement']['reference']}: same decision on {_pct(a['agreement'])} "
                f"of {a['images']} images ({_pct(a['agreement_past_rules'])} of the "
                f"{a['images_past_rules']} past the rules)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gate_study", description="Measure the input gate."
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path)
    parser.add_argument(
        "--in-distribution", type=Path, required=True, help="folder of in-distribution images"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many in-distribution images")
    parser.add_argument(
        "--corpus", type=Path, default=None, help="build the corpus here (default: a temporary folder)"
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--min-side", type=int, default=None, help="the size rule's shorter side (default: the gate's)"
    )
    parser.add_argument("--models", default=None, help="comma-separated model files (default: all)")
    parser.add_argument(
        "--cost-pairs",
        type=int,
        default=DEFAULT_COST_PAIRS,
        help=f"timed pairs (with and without the learned gate) per in-distribution image (default: "
        f"{DEFAULT_COST_PAIRS})",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the study as JSON here")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="measure a bundle signed by a key this machine does not trust",
    )
    args = parser.parse_args(argv)
    if args.cost_pairs < 1:
        parser.error(f"--cost-pairs {args.cost_pairs}; expected at least 1")
    rules = None if args.min_side is None else InputGate(default_checks(min_side=args.min_side))
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    in_files = in_distribution_files(args.in_distribution, args.limit)
    with tempfile.TemporaryDirectory(prefix="cxr-gate-") as work:
        folder = args.corpus if args.corpus is not None else Path(work)
        corpus = build_corpus(folder, seed=args.seed, per_category=args.per_category)
        study = run_study(
            args.bundle,
            in_files,
            corpus,
            threads=args.threads,
            rules=rules,
            models=models,
            allow_untrusted=args.allow_untrusted,
            cost_pairs=args.cost_pairs,
        )
    print(table(study))
    if args.out is not None:
        args.out.write_text(json.dumps(study, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
