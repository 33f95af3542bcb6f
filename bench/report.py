"""A benchmark result as a Markdown table (what the README shows) and a PNG plot (matplotlib)."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError

from .paths import BF16_PATHS, FP32_PATHS


def _sample_words(data: dict) -> str:
    """How the sample was drawn and how words reached the model (runs before contexts: sentences)."""
    context = (data.get("context") or {}).get("context", "sentence")
    if context == "document":
        c = data["context"]
        return (f"{data['sample_documents']} whole documents drawn with seed {data['seed']}; document context: each "
                f"document's words in windows of {c['seq_len']} word pieces overlapping by {c['window_overlap']}, "
                f"{data['sample_word_pieces']} word pieces in all, special tokens included; the transformers "
                "pipeline labels sentence by sentence")
    return (f"fixed seed {data['seed']}, sentence context, {data['sample_mean_word_pieces']:.1f} word pieces each on "
            "average, special tokens included")


def markdown(result: dict) -> str:
    runs = {r["name"]: r for r in result["runs"]}
    base_fixed = runs.get("ort_fixed512", {}).get("sentences_per_s")
    base_pipe = runs.get("hf_pipeline", {}).get("sentences_per_s")
    m, d = result["machine"], result["data"]
    lines = [
        "## Speed: words to word labels",
        "",
        *_invalid_banner(result),
        f"{d['sample']} sentences of `{Path(d['input_file']).name}` ({_sample_words(d)}), the same for every path; "
        f"{m['cores']} cores ({m['cpu']}), {m['intra_op_threads']} intra-op threads, one process. "
        "Times include tokenising, batching, inference and decoding. "
        f"Entity F1 (conlleval) on the whole file ({d['sentences']} sentences) unless marked *sample*. "
        "Model MB: the file the path loads (PyTorch paths: the checkpoint's float16 safetensors, run in float32). "
        "Peak RSS MB: the path's own peak resident memory on top of the process before it (model, sessions, "
        "buffers; same process, see the JSON's `memory`).",
        "",
        "| path | what | sentences/s | x fixed512 | x pipeline | GFLOP/s | % of peak | entity F1 | labels = torch "
        "| model MB | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        sps = r["sentences_per_s"]
        f1 = f"{100 * r['f1']:.2f}" + (" *sample*" if r["f1_on"] == "sample" else "")
        cells = [r["name"], r["description"], f"{sps:.1f}", _ratio(sps, base_fixed, 1), _ratio(sps, base_pipe, 2),
                 f"{r['gflops']:.1f}", _share(r), f1, _pct(r.get("label_agreement_vs_torch")), _num(r["model_mb"], 1),
                 _num(r["peak_rss_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"| {s['name']} | skipped: {s['reason']} | - | - | - | - | - | - | - | - | - |"
              for s in result.get("skipped", [])]
    frac = result.get("fp32_fraction_of_peak")
    lines += [
        "",
        f"fp32 MatMul peak on this machine (measured by the benchmark): "
        f"**{m['matmul_peak_gflops']:.1f} GFLOP/s**; the fastest fp32 path ({result['best_fp32']}) reaches "
        f"**{100 * frac:.0f}%** of it" if frac is not None else "",
        f"(FLOPs from real word-piece counts: {result['flops_formula']}; "
        f"{result['model']['mflop_per_word_piece']:.1f} MFLOP per word piece).",
        *_peak_lines(result),
        "",
    ]
    source = result.get("build", {}).get("int8_source")
    if source:
        lines += [f"INT8 source graph: {source['graph']}: {source['why']}.", ""]
    if result.get("batch_table"):
        lines += ["| batch size | sentences/s |", "|---:|---:|"]
        lines += [f"| {row['batch_size']} | {row['sentences_per_s']:.1f} |" for row in result["batch_table"]]
        lines += ["", f"(batch table: the {result['batch_table_path']} graph, rows sorted by length, padded to each "
                      "batch's longest, no token budget)", ""]
    flow = result.get("file_flow")
    if flow:
        st = flow["stages"]
        lines += [
            f"File-based flow on the whole file ({flow['sentences']} sentences, buckets {flow['buckets']}, "
            f"batch {flow['batchsize']}{_regrouped(flow)}): bin_create {st['bin_create_s']:.1f} s, "
            f"infer {st['infer_s']:.1f} s, "
            f"bert_metric {st['bert_metric_s']:.1f} s; F1 {100 * flow['f1']:.2f} " + (
                "(in-process F1 scored on the sample only: not compared)." if flow["f1_in_process"] is None else
                f"({'same as' if flow['same_f1'] else 'DIFFERS from'} in-process {flow['in_process_path']} "
                f"{100 * flow['f1_in_process']:.2f})") + (
                "" if flow.get("speed_vs_in_process") is None else
                f"; {flow['sentences_per_s']:.1f} sentences/s end to end, {flow['speed_vs_in_process']:.2f}x the "
                f"in-process {flow['in_process_path']}."),
            "",
        ]
    if result.get("acceptance"):
        lines += ["| acceptance | value | pass |", "|---|---|---|"]
        lines += [f"| {c['id']}. {c['criterion']} | {c['value']} | {'yes' if c['pass'] else 'NO'} |"
                  for c in result["acceptance"]]
        lines.append("")
    if result.get("command"):
        lines += ["Made with:", "", "```bash", result["command"], "```", ""]
    return "\n".join(line for line in lines if line is not None)


def _invalid_banner(result: dict) -> list[str]:
    if result.get("valid", True):
        return []
    return ["**INVALID RUN: a path runs faster than the MatMul peak measured beside it, so the peak is not a "
            "peak and no share of it means anything.**", "", *(f"- {reason}" for reason in result["invalid_reasons"]),
            ""]


def _peak_lines(result: dict) -> list[str]:
    peaks = result.get("matmul_peaks") or {}
    if not peaks:
        return []
    parts = [f"{precision} {p['gflops']:.1f} ({p['backend']}, {p['shape']})" for precision, p in peaks.items()]
    rounds = max(p["rounds"] for p in peaks.values())
    return [f"MatMul peaks, GFLOP/s, best of every kernel, shape and round ({rounds} round(s)): " + "; ".join(parts)
            + ". \"% of peak\" is each path's GFLOP/s over the peak of its precision."]


def _share(run: dict) -> str:
    frac = run.get("fraction_of_peak")
    return "-" if frac is None else f"{100 * frac:.0f}% {run['peak_precision']}"


def _ratio(value, base, digits: int) -> str:
    return f"{value / base:.{digits}f}" if base else "-"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(result: dict, path: Path) -> None:
    try:
        # matplotlib is optional (requirements-dev) and slow to import: only --plot needs it
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install matplotlib)") from None
    runs = result["runs"]
    names = [r["name"] for r in runs]
    speeds = [r["sentences_per_s"] for r in runs]
    colors = ["#999999" if n in ("hf_pipeline", "torch_batched", "ort_fixed512") else
              "#1f77b4" if n in FP32_PATHS else "#9467bd" if n in BF16_PATHS else "#2ca02c" for n in names]
    has_table = bool(result.get("batch_table"))
    fig, axes = plt.subplots(1, 2 if has_table else 1, figsize=(13 if has_table else 8, 4.8),
                             gridspec_kw={"width_ratios": [2, 1]} if has_table else None)
    ax = axes[0] if has_table else axes
    bars = ax.barh(names[::-1], speeds[::-1], color=colors[::-1])
    ax.set_xscale("log")
    ax.set_xlabel("sentences/s (log scale)")
    for bar, r in zip(bars, runs[::-1]):
        ax.text(bar.get_width() * 1.05, bar.get_y() + bar.get_height() / 2,
                f"{r['sentences_per_s']:.0f}  (F1 {100 * r['f1']:.2f})", va="center", fontsize=8)
    ax.set_xlim(right=max(speeds) * 6)
    m = result["machine"]
    ax.set_title(f"words -> labels, {result['data']['sample']} CoNLL sentences, {m['cores']} cores", fontsize=10)
    if has_table:
        table = result["batch_table"]
        axes[1].plot([row["batch_size"] for row in table], [row["sentences_per_s"] for row in table], "o-")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("batch size (sorted by length)")
        axes[1].set_ylabel("sentences/s")
        axes[1].set_title(f"{result['batch_table_path']}: batch size", fontsize=10)
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _regrouped(flow: dict) -> str:
    return f", regrouped by real length up to {flow['max_tokens']} padded tokens" if flow.get("max_tokens") else ""
