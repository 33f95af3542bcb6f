"""The issues' acceptance criteria, evaluated on a benchmark run's figures (pure: a result dict in, checks out).

Rows are reported, pass or fail; they do not decide the exit code. Only an invalid run does (a path
above its MatMul peak, `bench.peaks`), and then no row that measures against the peak passes.
"""
from __future__ import annotations

from .paths import BF16_PATHS, FP32_PATHS, INT8_PATHS

SPEEDUP_GOAL = 3.0  # best INT8 / bf16 path over ort_fused_fp32
F1_TOLERANCE_POINTS = 0.3
TORCH_AGREEMENT_GOAL = 0.995
FP32_PEAK_SHARE_GOAL = 0.80
FLOW_SPEED_GOAL = 0.8  # file flow / in-process, same graph and backend


def _row(key: str, text: str, value, ok) -> dict:
    return {"id": key, "criterion": text, "value": value, "pass": bool(ok) if ok is not None else None}


def acceptance(result: dict) -> list[dict]:
    """The acceptance criteria, evaluated on this run's figures."""
    runs = {r["name"]: r for r in result["runs"]}
    valid = result.get("valid", True)
    checks = []

    def add(key, text, value, ok):
        checks.append(_row(key, text, value, ok))

    b, f, p, t = (runs.get(n) for n in ("ort_bucketed_fp32", "ort_fixed512", "hf_pipeline", "torch_batched"))
    if b and f:
        ratio = b["sentences_per_s"] / f["sentences_per_s"]
        add("1a", "ort_bucketed_fp32 >= 30x ort_fixed512", round(ratio, 2), ratio >= 30)
    if b and p:
        ratio = b["sentences_per_s"] / p["sentences_per_s"]
        add("1b", "ort_bucketed_fp32 >= 4x hf_pipeline", round(ratio, 2), ratio >= 4)
    if b and t and b["f1_on"] == t["f1_on"]:
        add("1c", "ort_bucketed_fp32 entity F1 == torch_batched to 4 decimals",
            f"{b['f1']:.4f} vs {t['f1']:.4f}", round(b["f1"], 4) == round(t["f1"], 4))
    frac = result.get("fp32_fraction_of_peak")
    invalid = "" if valid else " (run INVALID: a path exceeds its MatMul peak)"
    if frac is not None:
        add("2", "best fp32 path >= 60% of the MatMul peak" + invalid, round(frac, 3), valid and frac >= 0.60)
    fp32 = [r for n, r in runs.items() if n in FP32_PATHS]
    int8 = [r for n, r in runs.items() if n in INT8_PATHS]
    if fp32 and int8:
        best_fp, best_int = max(fp32, key=lambda r: r["sentences_per_s"]), max(int8, key=lambda r: r["sentences_per_s"])
        ratio = best_int["sentences_per_s"] / best_fp["sentences_per_s"]
        add("3a", f"best INT8 ({best_int['name']}) >= 1.5x best fp32 ({best_fp['name']})", round(ratio, 2), ratio >= 1.5)
        ref = runs.get("ort_fused_fp32") or best_fp
        if best_int["f1_on"] == ref["f1_on"]:
            delta = 100 * (best_int["f1"] - ref["f1"])
            add("3b", f"{best_int['name']} entity F1 within 0.3 points of fp32 ({ref['name']})", round(delta, 3),
                abs(delta) <= 0.3)
    flow = result.get("file_flow")
    if flow:
        add("4", "file-based flow (bin_create --buckets -> infer -> bert_metric) F1 == in-process F1",
            f"{flow['f1']:.4f} vs {flow['f1_in_process'] if flow['f1_in_process'] is None else round(flow['f1_in_process'], 4)}",
            flow["same_f1"])
    checks += _issue12(runs, fp32, frac, valid, invalid, flow)
    return checks


def _issue12(runs: dict, fp32: list, frac, valid: bool, invalid: str, flow) -> list[dict]:
    """Issue 12's goals: INT8 / bf16 speed-up at fp32's accuracy, fp32 near the peak, the file flow near in-process."""
    checks = []

    def add(key, text, value, ok):
        checks.append(_row(key, text, value, ok))

    base = runs.get("ort_fused_fp32")
    low = [r for n, r in runs.items() if n in INT8_PATHS or n in BF16_PATHS]
    if base and low:
        best = max(low, key=lambda r: r["sentences_per_s"])
        ratio = best["sentences_per_s"] / base["sentences_per_s"]
        add("5a", f"best INT8 or bf16 path ({best['name']}) >= {SPEEDUP_GOAL:g}x ort_fused_fp32", round(ratio, 2),
            ratio >= SPEEDUP_GOAL)
        if best["f1_on"] == base["f1_on"]:
            delta = 100 * (best["f1"] - base["f1"])
            add("5b", f"{best['name']} entity F1 within {F1_TOLERANCE_POINTS:g} points of fp32 (ort_fused_fp32)",
                round(delta, 3), abs(delta) <= F1_TOLERANCE_POINTS)
        share = best.get("label_agreement_vs_torch")
        if share is not None:
            add("5c", f"{best['name']} word labels equal to PyTorch's on >= {100 * TORCH_AGREEMENT_GOAL:g}% of words",
                round(share, 5), share >= TORCH_AGREEMENT_GOAL)
    if frac is not None:
        best_fp = max(fp32, key=lambda r: r["sentences_per_s"])
        add("6", f"fp32 ({best_fp['name']}, the fastest) >= {100 * FP32_PEAK_SHARE_GOAL:g}% of the measured fp32 "
                 "MatMul peak" + invalid, round(frac, 3), valid and frac >= FP32_PEAK_SHARE_GOAL)
    if flow and flow.get("speed_vs_in_process") is not None:
        ratio = flow["speed_vs_in_process"]
        add("7", f"file flow (bin_create --buckets -> infer -> bert_metric) >= {FLOW_SPEED_GOAL:g}x in-process "
                 f"{flow['in_process_path']} (same graph, ONNX Runtime)", round(ratio, 2), ratio >= FLOW_SPEED_GOAL)
    return checks
