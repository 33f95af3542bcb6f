"""The issue's acceptance criteria, evaluated on a benchmark run's figures (pure: a result dict in, checks out)."""
from __future__ import annotations

from .paths import FP32_PATHS, INT8_PATHS


def acceptance(result: dict) -> list[dict]:
    """The issue's acceptance criteria, evaluated on this run's figures."""
    runs = {r["name"]: r for r in result["runs"]}
    checks = []

    def add(key, text, value, ok):
        checks.append({"id": key, "criterion": text, "value": value, "pass": bool(ok) if ok is not None else None})

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
    if frac is not None:
        add("2", "best fp32 path >= 60% of the MatMul peak", round(frac, 3), frac >= 0.60)
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
    return checks
