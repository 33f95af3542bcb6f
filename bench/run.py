"""`run_benchmark`: every path on the same sentences, in one process, and the result as one JSON-ready dict.

The order of the work is told in `bench.cli`'s module docstring.
"""
from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import click

from common.errors import UserError
from common.model_spec import read_model_spec
from runners.onnxrt import physical_cores
from preprocess.conll import read_conll
from preprocess.encode import encode
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy

from . import peak as peak_mod
from .acceptance import acceptance
from .flops import FLOPS_FORMULA, EncoderShape
from .flow import file_flow
from .machine import cpu_flags, cpu_model, loadavg, logical_cpus, trim_memory, version_of
from .measure import Context, agreement_between, batch_table, finish_record, start_path
from .models import build_models, graphs_for
from .paths import DEFAULT_POLICY, FP32_PATHS, OLD_RECIPE, PATHS, BenchPath, OrtPath, PipelinePath, TorchPath, \
    sample_indices
from .timing import interleave

DEFAULT_BUCKETS = "16,24,32,48,64,96,128,256"
MEMORY_NOTE = ("peak_rss_mb = peak RSS while the path loads, warms up, runs and scores minus RSS before it "
               "(same process; gc + malloc_trim before, VmHWM reset via /proc/self/clear_refs)")


def make_paths(ctx: Context, files: dict[str, Path], policy: BatchPolicy, io_binding: bool) -> dict[str, BenchPath]:
    common = dict(tokenizer=ctx.tokenizer, spec=ctx.spec, threads=ctx.threads, io_binding=io_binding)
    return {
        "hf_pipeline": PipelinePath(ctx.model_dir, ctx.threads),
        "torch_batched": TorchPath(ctx.model_dir, ctx.threads, policy, ctx.tokenizer, ctx.spec),
        "ort_fixed512": OrtPath("ort_fixed512", files["plain"], OLD_RECIPE, what="plain export (the old recipe)",
                                **common),
        "ort_bucketed_fp32": OrtPath("ort_bucketed_fp32", files["plain"], policy, what="plain export", **common),
        "ort_fused_fp32": OrtPath("ort_fused_fp32", files["fused"], policy, what="fused graph (convert.optimize)",
                                  **common),
        "ort_int8_dynamic": OrtPath("ort_int8_dynamic", files["int8_dynamic"], policy,
                                    what="fused graph, INT8 dynamic (convert.quantize)", **common),
        "ort_int8_static": OrtPath("ort_int8_static", files["int8_static"], policy,
                                   what="fused graph, INT8 static QDQ (convert.quantize)", **common),
    }


def load_context(model_dir: Path, input_file: Path, *, sample: int, seed: int, log) -> Context:
    """The file, the fixed-seed sample and the model facts every path shares."""
    spec = read_model_spec(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    sentences = read_conll(input_file)
    tokenizer = load_tokenizer(model_dir)
    idx = sample_indices(sample, len(sentences), seed)
    shape = EncoderShape.from_config(config)
    rows = encode(tokenizer, [sentences[i].words for i in idx], spec.max_positions)
    return Context(model_dir=model_dir, input_file=input_file, sentences=sentences, sample_idx=idx,
                   tokenizer=tokenizer, spec=spec, shape=shape, sample_flops=shape.flops(rows.lengths),
                   sample_tokens=int(rows.lengths.sum()), threads=physical_cores(), log=log)


def measure_paths(ctx: Context, all_paths: dict[str, BenchPath], names, *, repeats: int, warmup: int,
                  f1_scope: str, peak_shapes) -> tuple[dict, dict, dict]:
    """Every path started in turn, then the interleaved rounds with the MatMul peak as one more job.

    Returns (records by path, predictions by path, the peak's facts)."""
    log = ctx.log
    log("[peak] fp32 MatMul on ONNX Runtime ...")
    peak_first, timings = peak_mod.matmul_peak(peak_shapes or peak_mod.DEFAULT_SHAPES, threads=ctx.threads)
    best_shape = max(timings, key=lambda t: t.gflops)
    peak_samples = [peak_first]
    log(f"[peak] {peak_first:.1f} GFLOP/s ({best_shape.m}x{best_shape.k}x{best_shape.n}; timed again in every round)")

    load_start = loadavg()
    records, predictions, jobs = {}, {}, []
    for name in names:
        records[name], predictions[name] = start_path(ctx, all_paths[name], warmup=warmup, f1_scope=f1_scope)
        jobs.append(((lambda p: lambda: p.predict(ctx.sample))(all_paths[name]), records[name]["passes"]))
    # the MatMul peak is one more job of the rounds, so that it meets the same speed regimes
    peak_job = (lambda: peak_samples.append(
        peak_mod.time_matmul(best_shape.m, best_shape.k, best_shape.n, threads=ctx.threads).gflops), [0.0])
    log(f"[rounds] {repeats - 1} more timed pass(es) of every path, round-robin")
    interleave(jobs + [peak_job], repeats - 1)
    for name in names:
        all_paths[name].close()
        finish_record(ctx, records[name])
        log(f"[{name}] {records[name]['sentences_per_s']:.1f} sentences/s ({records[name]['gflops']:.1f} GFLOP/s), "
            f"median of {len(records[name]['passes'])} pass(es)")
    trim_memory()
    peak = statistics.median(peak_samples)
    log(f"[peak] median {peak:.1f} GFLOP/s over {len(peak_samples)} timings")
    facts = {"peak": peak, "samples": peak_samples, "timings": timings, "load_start": load_start,
             "load_end": loadavg()}
    return records, predictions, facts


def run_benchmark(*, model_dir, input_file, sample: int = 500, seed: int = 0, work_dir=None, reuse: bool = False,
                  repeats: int = 5, warmup: int = 64, f1_scope: str = "file", paths=PATHS,
                  max_rows: int = DEFAULT_POLICY.max_rows, max_tokens: Optional[int] = DEFAULT_POLICY.max_tokens,
                  io_binding: bool = False, calib_file=None, calib_sentences: int = 300,
                  buckets: str = DEFAULT_BUCKETS, flow_batchsize: int = 16, with_batch_table: bool = True,
                  with_file_flow: bool = True, peak_shapes=None, command: str = "", log=click.echo) -> dict:
    started = time.perf_counter()
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise UserError(f"unknown path {unknown[0]!r}; paths are {', '.join(PATHS)}")
    if f1_scope not in ("file", "sample"):
        raise UserError("--f1_scope is file or sample")
    model_dir, input_file = Path(model_dir), Path(input_file)
    ctx = load_context(model_dir, input_file, sample=sample, seed=seed, log=log)
    policy = BatchPolicy(max_rows=max_rows, max_tokens=max_tokens)

    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ner_benchmark_"))
    files, build_info = build_models(model_dir, work, reuse=reuse, calib_file=calib_file,
                                     calib_sentences=calib_sentences, log=log, needed=graphs_for(paths))
    records, predictions, peak = measure_paths(ctx, make_paths(ctx, files, policy, io_binding), paths,
                                               repeats=repeats, warmup=warmup, f1_scope=f1_scope,
                                               peak_shapes=peak_shapes)

    # the batch table and the file flow use the fused graph (the one to deploy), else the plain export
    best_ort_fp32 = records.get("ort_fused_fp32") or records.get("ort_bucketed_fp32")
    table = []
    if with_batch_table and best_ort_fp32:
        table = batch_table(ctx, Path(best_ort_fp32["model_file"]), io_binding, repeats)
    flow = None
    if with_file_flow and best_ort_fp32:
        log(f"[file flow] bin_create --buckets {buckets} -> infer -> bert_metric on {input_file.name}")
        flow = file_flow(ctx, Path(best_ort_fp32["model_file"]), work, buckets=buckets, batchsize=flow_batchsize)
        flow["f1_in_process"] = best_ort_fp32["f1"] if best_ort_fp32["f1_on"] == "file" else None
        flow["in_process_path"] = best_ort_fp32["name"]
        flow["same_f1"] = (None if flow["f1_in_process"] is None
                           else round(flow["f1"], 4) == round(flow["f1_in_process"], 4))
        log(f"[file flow] F1 {100 * flow['f1']:.2f}, in process "
            f"{'-' if flow['f1_in_process'] is None else round(100 * flow['f1_in_process'], 2)}, {flow['total_s']:.1f} s")

    runs = [records[name] for name in PATHS if name in records]
    if "torch_batched" in predictions:
        for record in runs:
            record["label_agreement_vs_torch"] = agreement_between(ctx, predictions[record["name"]],
                                                                   predictions["torch_batched"])
    fp32 = [r for r in runs if r["name"] in FP32_PATHS]
    best_fp32 = max(fp32, key=lambda r: r["sentences_per_s"]) if fp32 else None

    result = {
        "command": command,
        "machine": _machine(ctx.threads, peak),
        "model": {"model_dir": str(model_dir), "layers": ctx.shape.layers, "hidden": ctx.shape.hidden,
                  "intermediate": ctx.shape.intermediate, "labels": ctx.shape.labels,
                  "mflop_per_word_piece": ctx.shape.flops_per_token() / 1e6},
        "data": {"input_file": str(input_file), "sentences": len(ctx.sentences), "sample": len(ctx.sample_idx),
                 "seed": seed, "sample_word_pieces": ctx.sample_tokens,
                 "sample_mean_word_pieces": ctx.sample_tokens / max(1, len(ctx.sample_idx)),
                 "sample_gflop": ctx.sample_flops / 1e9},
        "batching": {"policy": policy.describe(), "old_recipe": OLD_RECIPE.describe()},
        "build": build_info,
        "runs": runs,
        "best_fp32": best_fp32["name"] if best_fp32 else None,
        "fp32_fraction_of_peak": best_fp32["gflops"] / peak["peak"] if best_fp32 else None,
        "batch_table": table,
        "batch_table_path": best_ort_fp32["name"] if table else None,
        "file_flow": flow,
        "flops_formula": FLOPS_FORMULA,
        "memory": MEMORY_NOTE,
        "seconds": None,
    }
    result["acceptance"] = acceptance(result)
    result["seconds"] = time.perf_counter() - started
    return result


def _machine(threads: int, peak: dict) -> dict:
    return {
        "cores": threads, "logical_cpus": logical_cpus(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "matmul_peak_gflops": peak["peak"],
        "matmul_peak_samples": peak["samples"],
        "matmul_shapes": [{"m": t.m, "k": t.k, "n": t.n, "ms": t.median_ms, "gflops": t.gflops}
                          for t in peak["timings"]],
        "python": platform.python_version(), "onnxruntime": version_of("onnxruntime"), "torch": version_of("torch"),
        "transformers": version_of("transformers"), "intra_op_threads": threads,
        "loadavg_before_paths": peak["load_start"], "loadavg_after_paths": peak["load_end"],
    }
