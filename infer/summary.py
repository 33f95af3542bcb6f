"""The ais_bench `<ts>_summary.json` and the performance lines it prints, as pure functions.

Matches ais_bench's `infer/summary.py` (ait benchmark component): top-level keys `filesinfo`
({sample index: {"infiles": [...], "outfiles": [...]}}), `args` (the command line as a list),
`NPU_compute_time` / `H2D_latency` / `D2H_latency` ({min, max, mean, median, percentile(99%),
count}, ms), `throughput` (1000 x mean batch size / mean compute ms), `npu_compute_time_list`
and `pid`. For ONNX Runtime the "NPU" time is one `session.run` per batch; ORT does its own
host/device copies inside `run`, so the H2D/D2H lists are empty (all zeros, count 0), as
ais_bench reports for a latency it did not measure.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

import numpy as np

PERCENTILE = 99
_PCT_KEY = f"percentile({PERCENTILE}%)"


def time_stats(times_ms: Sequence[float]) -> dict:
    """min/max/mean/median/percentile(99%)/count of a list of ms; zeros for an empty list."""
    if len(times_ms) == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, _PCT_KEY: 0.0, "count": 0}
    values = np.asarray(times_ms, dtype=np.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "median": float(np.median(values)), _PCT_KEY: float(np.percentile(values, PERCENTILE)),
            "count": int(values.size)}


def throughput(batchsizes: Sequence[int], compute_ms: Sequence[float]) -> float:
    """ais_bench's figure: 1000 x mean batch size / mean compute time (ms) = samples/s of pure compute."""
    if not batchsizes or not compute_ms:
        return 0.0
    mean_ms = float(np.mean(compute_ms))
    return 1000.0 * float(np.mean(batchsizes)) / mean_ms if mean_ms > 0 else 0.0


def build_summary(*, filesinfo: Mapping, args: Sequence[str], compute_ms: Sequence[float],
                  batchsizes: Sequence[int], h2d_ms: Sequence[float] = (), d2h_ms: Sequence[float] = (),
                  pid: Optional[int] = None) -> dict:
    return {
        "filesinfo": {str(k): v for k, v in filesinfo.items()},
        "args": list(args),
        "NPU_compute_time": time_stats(compute_ms),
        "H2D_latency": time_stats(h2d_ms),
        "D2H_latency": time_stats(d2h_ms),
        "throughput": throughput(batchsizes, compute_ms),
        "npu_compute_time_list": [float(t) for t in compute_ms],
        "pid": os.getpid() if pid is None else pid,
    }


def summary_lines(summary: Mapping, batchsize_mean: float, display_all: bool = False) -> list[str]:
    """The lines ais_bench logs at the end of a run, in its words and order."""
    def fmt(name: str) -> str:
        s = summary[name]
        return (f"[INFO] {name} (ms): min = {s['min']}, max = {s['max']}, mean = {s['mean']}, "
                f"median = {s['median']}, {_PCT_KEY} = {s[_PCT_KEY]}")

    lines = ["[INFO] -----------------Performance Summary------------------"]
    if display_all:
        lines.append(fmt("H2D_latency"))
    lines.append(fmt("NPU_compute_time"))
    if display_all:
        lines.append(fmt("D2H_latency"))
    lines.append(f"[INFO] throughput 1000*batchsize.mean({batchsize_mean})/NPU_compute_time.mean"
                 f"({summary['NPU_compute_time']['mean']}): {summary['throughput']}")
    lines.append("[INFO] ------------------------------------------------------")
    return lines
