"""The report of one run, as terminal text and as results.md: the same sections rendered twice.

Sections: latency and memory per (format, threads); parity per format (golden set always,
evaluation set with ``--data``); the end-to-end split; the learned input gate's cost and (with
``--gate-in``/``--gate-ood``) its refusal rates; latency ratios; per-operator profiles
(``--profile``); gates. Figures come from the results dict only, so a results.json from another
device renders the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.e2e import STAGES
from benchmarks.gate_bench import COST_TARGET, COST_TARGET_THREADS
from benchmarks.tables import MISSING, markdown_table, mb, ms, num, pct, sci, text_table
from cxr_core.metrics import AUC_DROP_LABEL, CLASS_AUC_DROP_LABEL
from cxr_core.text import printable


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _latency_section(results: dict[str, Any]) -> Section:
    batch = results["settings"]["batch"]
    headers = [
        "format",
        "runtime",
        "thr",
        "status",
        "size MB",
        "load ms",
        "p50",
        "p90",
        "p99",
        "mean",
        "min",
        "max",
        "outliers",
        f"img/s @{batch}",
        "RSS MB",
    ]
    rows = []
    notes = []
    for r in results["rows"]:
        lat = r.get("latency_ms") or {}
        thr = r.get("throughput") or {}
        mem = r.get("memory") or {}
        outl = lat.get("outliers") or {}
        status = r["status"] if r["status"] == "ok" else f"{r['status']} (see below)"
        variant = r.get("variant", "default")
        rows.append(
            [
                r["name"] if variant in ("default", r["name"]) else f"{r['name']} [{variant}]",
                str(r["runtime"] or MISSING),
                str(r["threads"]),
                status,
                mb(r["size_bytes"]),
                ms(r.get("load_ms")),
                ms(lat.get("p50")),
                ms(lat.get("p90")),
                ms(lat.get("p99")),
                ms(lat.get("mean")),
                ms(lat.get("min")),
                ms(lat.get("max")),
                f"{outl['count']}/{lat['count']}" if outl else MISSING,
                num(thr.get("images_per_s"), 1),
                num(mem.get("peak_rss_mb"), 0),
            ]
        )
        if r["status"] != "ok":
            notes.append(f"{r['name']} @ {r['threads']} thread(s): {r['status']}: {r['error']}")
        elif lat.get("truncated"):
            notes.append(f"{r['name']} @ {r['threads']}: stopped at {lat['count']} runs by --max-seconds")
        if thr.get("skipped") and r["threads"] == min(x["threads"] for x in results["rows"]):
            notes.append(f"{r['name']}: no throughput figure, {thr['skipped']}")
    notes.append(
        "Latency in ms at batch 1 (warm-up excluded; outliers = Tukey fences, counted and kept). "
        "RSS = peak resident memory of the process that ran the format alone."
    )
    return Section("Latency and memory", headers, rows, notes)


def _parity_section(results: dict[str, Any]) -> Section:
    has_eval = results.get("evaluation") is not None
    headers = ["format", "golden max|dp|", "golden fmap err", "golden ok"]
    if has_eval:
        headers += [
            "vs",
            "mean AUC",
            AUC_DROP_LABEL,
            CLASS_AUC_DROP_LABEL,
            "max|dp|",
            "mean|dp|",
            "agreement",
        ]
    rows = []
    for s in results["formats"]:
        g = s.get("golden") or {}
        row = [
            s["name"],
            sci(g.get("max_abs_dp")),
            sci(g.get("feature_map_rel_error")),
            MISSING if not g else ("yes" if g.get("passed") else "NO"),
        ]
        if has_eval:
            e = s.get("eval") or {}
            delta = e.get("mean_auc_delta")  # format - reference, as stored in results.json
            row += [
                e.get("reference_format") or MISSING,
                num(e.get("mean_auc"), 4),
                num(0.0 - delta if delta is not None else None, 4),
                num(e.get("max_class_auc_drop"), 4),
                sci(e.get("max_abs_dp")),
                sci(e.get("mean_abs_dp")),
                pct(e.get("call_agreement")),
            ]
        rows.append(row)
    notes = ["golden: the bundle's golden inputs vs its PyTorch FP32 outputs, tolerance from the manifest."]
    if has_eval:
        ev = results["evaluation"]
        notes.append(
            f"evaluation set: {ev['images']} images from {ev['source']}; {AUC_DROP_LABEL} = the 'vs' FP32 "
            "format's mean AUC minus this format's (positive = worse), |dp| against the same format; "
            "agreement = same positive call at the operating points."
        )
        skipped = ev.get("skipped") or []
        if skipped:
            notes.append(
                f"{len(skipped)} image(s) of the evaluation set could not be read, were damaged or refused, "
                f"and are excluded from every format's AUC alike (first: {printable(skipped[0])})."
            )
    return Section("Parity", headers, rows, notes)


def _auc_section(results: dict[str, Any]) -> Section | None:
    if results.get("evaluation") is None:
        return None
    names = [s["name"] for s in results["formats"] if s.get("eval")]
    rows = []
    for label in results["bundle"]["labels"]:
        rows.append(
            [
                label,
                *(num((s["eval"]["auc"] or {}).get(label), 4) for s in results["formats"] if s.get("eval")),
                str(results["evaluation"]["positives"].get(label, MISSING)),
            ]
        )
    return Section("AUC per class", ["finding", *names, "positives"], rows)


def _e2e_section(results: dict[str, Any]) -> Section | None:
    rows = []
    for r in results["rows"]:
        e = r.get("e2e") or {}
        if e.get("status") != "ok":
            continue
        stages = e["stages_ms"]
        rows.append(
            [
                f"{r['name']} @{r['threads']}",
                *(ms(stages[s]["mean"]) for s in STAGES),
                ms(e["total_ms"]),
                pct(e.get("cam_share_of_inference")),
            ]
        )
    failed = [
        f"{r['name']} @{r['threads']}: {r['e2e']['status']}: {r['e2e'].get('error') or 'every image refused'}"
        for r in results["rows"]
        if r.get("e2e") and r["e2e"].get("status") != "ok"
    ]
    if not rows and not failed:
        return None
    notes = [
        "Mean ms per prediction through cxr_core.predictor.Predictor on real files "
        "(one warm-up prediction per image first); CAM for the top finding.",
        *failed,
    ]
    notes += [
        f"{r['name']} @{r['threads']}: refused {x['image']}: {'; '.join(x['reasons'])}"
        for r in results["rows"]
        for x in (r.get("e2e") or {}).get("refused", [])
    ]
    return Section("End-to-end split", ["variant", *STAGES, "total", "CAM/inference"], rows, notes)


def _gate_cost_section(results: dict[str, Any]) -> Section | None:
    costs = results.get("gate_cost") or []
    if not costs:
        return None
    rows = []
    for c in costs:
        verdict = MISSING if c["within_target"] is None else ("met" if c["within_target"] else "MISSED")
        rows.append(
            [
                c["format"],
                str(c["threads"]),
                ms(c["learned_gate_ms"]),
                ms(c["inference_ms"]),
                ms(c.get("inference_without_gate_ms")),
                ms(c.get("added_ms", c["learned_gate_ms"])),
                pct(c["ratio"]),
                verdict,
            ]
        )
    return Section(
        "Learned input gate cost",
        [
            "format",
            "thr",
            "gate stage ms",
            "inference ms",
            "inference without gate ms",
            "gate adds ms",
            "added/model",
            f"<= {COST_TARGET:.0%} target",
        ],
        rows,
        [
            "The gate's image signals run beside the model: 'gate stage' (mean) is the wait for them "
            "after the model returns plus the output signals, 'inference' (mean) the model's time "
            "beside them; each prediction also ran with the gate taken out, and the gate adds the "
            "median paired difference of the wall times, against the gate-less runs' median inference. "
            f"The target (issue 12): the gate adds at most {COST_TARGET:.0%} of the INT8 classifier's "
            f"inference at {COST_TARGET_THREADS} threads (rows marked met / MISSED)."
        ],
    )


def _gate_rates_section(results: dict[str, Any]) -> Section | None:
    block = results.get("gate_rates")
    if not block:
        return None
    rows, notes = [], []
    for name, r in block["formats"].items():
        signals = sorted(set(r["in_refused_by_signal"]) | set(r["ood_refused_by_signal"]) | set(r["auroc"]))
        inside, outside = r["in_refused_by_signal"], r["ood_refused_by_signal"]
        by_signal = ", ".join(f"{s} {inside.get(s, 0)}/{outside.get(s, 0)}" for s in signals)
        rows.append(
            [
                name,
                f"{r['false_refusals']}/{r['in_images']} ({pct(r['false_refusal_rate'])})",
                f"{r['true_refusals']}/{r['ood_images']} ({pct(r['true_refusal_rate'])})",
                f"{r['in_refused_by_rules']}/{r['ood_refused_by_rules']}",
                by_signal or MISSING,
                ", ".join(f"{s} {num(v, 4)}" for s, v in r["auroc"].items()) or MISSING,
            ]
        )
        categories = ", ".join(f"{c} {x['refused']}/{x['images']}" for c, x in r["categories"].items())
        notes.append(f"{name}: refused per out-of-distribution category: {categories}")
    notes.insert(
        0,
        f"In-distribution {block['in_folder']}, out-of-distribution {block['ood_folder']}, "
        f"{block['threads']} thread(s). Refusals by signal and by the rules: in-distribution / "
        "out-of-distribution images; AUROC: out-of-distribution vs in-distribution scores.",
    )
    return Section(
        "Input gate refusal rates",
        ["format", "false refusals", "true refusals", "rules", "refused by signal", "AUROC"],
        rows,
        notes,
    )


def _ratio_section(results: dict[str, Any]) -> Section | None:
    rows = [[r["format"], r["baseline"], str(r["threads"]), num(r["ratio"], 3)] for r in results["ratios"]]
    if not rows:
        return None
    return Section(
        "Latency ratios (p50)",
        ["format", "baseline", "threads", "ratio"],
        rows,
        ["ratio < 1: the format is faster than its baseline at the same thread count."],
    )


def _profile_sections(results: dict[str, Any]) -> list[Section]:
    sections = []
    for r in results["rows"]:
        prof = r.get("profile")
        if not prof:
            continue
        title = f"Operator profile: {r['name']} @ {r['threads']} threads"
        if prof.get("status") == "error":
            sections.append(Section(title, [], [], [f"profiling failed: {prof['error']}"]))
            continue
        if prof.get("ops"):
            rows = [
                [o["op_type"], ms(o["ms_per_run"]), pct(o["share"]), str(o["nodes"])]
                for o in prof["ops"][:12]
            ]
            sections.append(
                Section(
                    title,
                    ["op type", "ms/run", "share", "nodes"],
                    rows,
                    [f"{prof.get('tool')}: trace {prof.get('trace_file')}"],
                )
            )
        else:
            counts = prof.get("op_counts") or {}
            rows = [[op, MISSING, MISSING, str(n)] for op, n in counts.items()]
            sections.append(
                Section(
                    title,
                    ["op type", "ms/run", "share", "nodes"],
                    rows,
                    [str(prof.get("hint") or prof.get("census_error") or "")],
                )
            )
    return sections


def _gate_section(results: dict[str, Any]) -> Section:
    gates = results["gates"]
    rows = [
        [f["gate"], f["format"], f["figure"], sci(f["value"]), sci(f["threshold"])] for f in gates["failures"]
    ]
    set_ = {k: v for k, v in gates["thresholds"].items() if v is not None}
    notes = [
        f"thresholds: {set_}",
        f"exit code {gates['exit_code']}: "
        + ("all gates passed" if gates["passed"] else f"{len(gates['failures'])} gate failure(s)"),
    ]
    if gates["errored_formats"]:
        notes.append(f"formats that could not be measured: {gates['errored_formats']}")
    return Section("Gates", ["gate", "format", "figure", "value", "threshold"], rows, notes)


def _side_by_side_section(results: dict[str, Any]) -> Section | None:
    """A/B settings rows and peer rows against the default rows of the same run."""
    rows = []
    for r in results["rows"]:
        variant = r.get("variant", "default")
        if variant == "default" and r["kind"] != "peer":
            continue
        lat, golden, peer = r.get("latency_ms") or {}, r.get("golden") or {}, r.get("peer") or {}
        rows.append(
            [
                r["name"],
                variant if r["kind"] != "peer" else f"{peer.get('inference_precision', MISSING)}",
                str(r["threads"]),
                r["status"],
                ms(lat.get("p50")),
                num(r.get("vs_default"), 3),
                sci(golden.get("max_abs_dp")),
                MISSING if not golden else ("yes" if golden.get("passed") else "NO"),
            ]
        )
    if not rows:
        return None
    notes = [
        "vs default: p50 / the same format's p50 with the default settings (idle threads sleep, every "
        "graph optimisation, XNNPACK on) at the same threads; < 1 = faster. spin = ONNX Runtime's idle "
        "threads busy-wait (burns a core; battery and shared cores pay), pinned = worker threads pinned "
        "to a CPU. Peer rows run the bundle's FP32 ONNX file; their precision column is what the peer "
        "computed in, and their golden check uses the FP32 entry's tolerance.",
    ]
    return Section(
        "Runtime settings A/B and peers",
        ["row", "settings / precision", "thr", "status", "p50", "vs default", "golden max|dp|", "golden ok"],
        rows,
        notes,
    )


def _tune_section(results: dict[str, Any]) -> Section | None:
    tune = results.get("tune")
    if not tune:
        return None
    choice = tune.get("choice")
    rows = [
        [
            c["model"],
            c["variant"],
            str(c["threads"]),
            ms(c["p50_ms"]),
            sci(c.get("golden_max_abs_dp")),
        ]
        for c in tune["candidates"][:8]
    ]
    notes = [f"machine: {tune['machine']}"]
    if choice and tune.get("cache_file"):
        notes.append(
            f"chosen: {choice['model']} @ {choice['threads']} thread(s) with {choice['settings']}, "
            f"cached in {tune['cache_file']}; open it with open_backend(bundle, tuned=True)"
        )
    elif choice:
        notes.append(
            f"chosen: {choice['model']} @ {choice['threads']} thread(s) with {choice['settings']}, "
            f"NOT cached: {tune.get('error') or tune['status']}"
        )
    else:
        notes.append("no format passed the golden parity check: nothing cached, the defaults stay")
    return Section(
        "Tuning (--tune): passing candidates, fastest first",
        ["model", "settings", "thr", "p50", "golden max|dp|"],
        rows,
        notes,
    )


def sections(results: dict[str, Any]) -> list[Section]:
    """Every section of the report, in order (empty ones left out)."""
    found = [
        _latency_section(results),
        _parity_section(results),
        _side_by_side_section(results),
        _tune_section(results),
        _auc_section(results),
        _e2e_section(results),
        _gate_cost_section(results),
        _gate_rates_section(results),
        _ratio_section(results),
        *_profile_sections(results),
        _gate_section(results),
    ]
    return [s for s in found if s is not None]


def _render(
    results: dict[str, Any],
    table: Callable[[Sequence[str], Sequence[Sequence[str]]], str],
    heading: Callable[[str], str],
    note: Callable[[str], str],
) -> str:
    parts = []
    for section in sections(results):
        parts.append(heading(section.title))
        if section.rows:
            parts.append(table(section.headers, section.rows))
        parts.extend(note(n) for n in section.notes)
        parts.append("")
    return "\n".join(parts)


def _bundle_title(bundle: dict[str, Any], where: str) -> str:
    """``where`` (the bundle's path or name), then its architecture unless ``where`` already says it."""
    architecture = bundle.get("architecture") or MISSING
    if architecture in Path(str(where)).name:
        return str(where)
    return f"{where} ({architecture})"


def _machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    cpu = m["cpu"]
    pk = m["packages"]
    device = results["device_name"]
    model = cpu["model"] or MISSING
    who = model if device == model else f"{device}: {model}"
    return (
        f"{who} ({cpu['arch']}, {cpu['physical_cores']} cores, "
        f"flags {' '.join(cpu['flags']) or MISSING}), {m['os']}, Python {m['python']}, "
        f"onnxruntime {pk.get('onnxruntime') or MISSING}, "
        f"ai-edge-litert {pk.get('ai-edge-litert') or MISSING}"
    )


def notice_lines(results: dict[str, Any]) -> list[str]:
    """``*** SYNTHETIC TRAINING DATA: NOT FOR PATIENTS ***`` (as cxr-predict prints it) per notice."""
    return [f"*** {notice.upper()} ***" for notice in results.get("notices") or []]


def terminal_report(results: dict[str, Any]) -> str:
    """The report as plain text for the terminal."""
    bundle = results["bundle"]
    load = (
        f"load average {results['machine']['load_average']} -> {results['machine'].get('load_average_end')}"
    )
    status = bundle.get("trust") or ""
    trust = "" if not status or status.startswith("signed by trusted key") else f"bundle: {status}\n"
    marks = "".join(f"{line}\n" for line in notice_lines(results))
    head = f"{marks}edge-bench: {_bundle_title(bundle, bundle['path'])}\n{trust}"
    head += f"{_machine_line(results)}; {load}\n"
    # the mark again below the tables, where the eye lands after the figures
    return head + "\n" + _render(results, text_table, lambda t: f"== {t} ==", lambda n: f"  {n}") + marks


def markdown_report(results: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The report as Markdown (results.md), with the plots linked."""
    b = results["bundle"]
    marks = [f"> **{notice.upper()}**" for notice in results.get("notices") or []]
    head = [
        f"# edge-bench: {_bundle_title(b, b['name'])}",
        "",
        *([*marks, ""] if marks else []),
        *([f"- bundle trust: {b['trust']}"] if b.get("trust") else []),
        f"- machine: {_machine_line(results)}",
        f"- run: {results['created_at']}, {results['duration_s']} s, settings `{_settings_line(results)}`",
        f"- thermal: {results['machine']['thermal'] or 'not readable'}; governor: "
        f"{results['machine']['frequency']['governor'] or 'not readable'}; load average: "
        f"{results['machine']['load_average']} at the start, "
        f"{results['machine'].get('load_average_end')} at the end (1/5/15 min)",
        "",
    ]
    body = _render(results, markdown_table, lambda t: f"## {t}\n", lambda n: f"\n{n}")
    images = [f"![{p}]({p})" for p in plots]
    return "\n".join(head) + "\n" + body + ("\n## Plots\n\n" + "\n\n".join(images) + "\n" if images else "")


def _settings_line(results: dict[str, Any]) -> str:
    s = results["settings"]
    return (
        f"threads={s['threads']} runs={s['runs']} warmup={s['warmup']} max_seconds={s['max_seconds']} "
        f"batch={s['batch']} rounds={s['rounds']}"
    )
