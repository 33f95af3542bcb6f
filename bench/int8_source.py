"""Which graph the ORT INT8 paths quantize: the plain export or the fused graph, whichever runs faster here.

ONNX Runtime fuses the plain export at load time by itself, so `convert.optimize`'s fused graph is
not faster by construction: on a loaded 2-core run it was slower (410 vs 437 sentences/s) while the
INT8 paths were fixed to quantize it. So both fp32 graphs are timed first, in this run, on the
benchmark's own sample and batches (ONNX Runtime, interleaved passes, median), and the faster one
is quantized; the JSON's `build.int8_source` keeps both figures and the choice.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from preprocess.plan import BatchPolicy

from .machine import trim_memory
from .measure import Context, loaded_and_timed_once
from .paths import OrtPath
from .timing import interleave

MIN_PASSES = 3
NAMES = {"plain": "plain export", "fused": "fused graph (convert.optimize)"}


def choose_int8_source(ctx: Context, files: dict[str, Path], policy: BatchPolicy, *, passes: int,
                       io_binding: bool = False) -> dict:
    """Time the plain and the fused fp32 graph on the sample (at least MIN_PASSES interleaved passes each)
    and pick the faster: {"graph", "sentences_per_s", "passes_s", "why"}."""
    sample, jobs, loaded = ctx.sample, [], []
    for graph in ("plain", "fused"):
        path = OrtPath(f"int8_source_{graph}", files[graph], policy, ctx.tokenizer, ctx.spec, what=NAMES[graph],
                       threads=ctx.threads, io_binding=io_binding)
        jobs.append(loaded_and_timed_once(ctx, path))
        loaded.append(path)
    interleave(jobs, max(passes, MIN_PASSES) - 1)
    for path in loaded:
        path.close()
    trim_memory()
    speed = {graph: len(sample) / statistics.median(times) for graph, (_, times) in zip(("plain", "fused"), jobs)}
    chosen = max(speed, key=speed.get)
    other = "fused" if chosen == "plain" else "plain"
    why = (f"the {NAMES[chosen]} ran {speed[chosen]:.1f} sentences/s, the {NAMES[other]} {speed[other]:.1f} "
           f"(fp32, ONNX Runtime, median of {len(jobs[0][1])} interleaved passes on the sample): "
           "the INT8 graphs are quantized from the faster")
    ctx.log(f"[int8 source] {why}")
    return {"graph": chosen, "sentences_per_s": speed,
            "passes_s": {graph: [round(t, 4) for t in times] for graph, (_, times) in zip(("plain", "fused"), jobs)},
            "why": why}


def fixed_int8_source(graph: str) -> dict:
    return {"graph": graph, "sentences_per_s": None, "passes_s": None,
            "why": f"--int8_source {graph}: fixed by the command, not measured"}
