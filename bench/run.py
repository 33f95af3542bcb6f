"""`run_benchmark`: every path on the same sentences, in one process, and the result as one JSON-ready dict.

The order of the work is told in `bench.cli`'s module docstring.
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Optional

import click

from common.cpu import CpuCapabilities
from common.errors import UserError, ValidationError
from common.model_spec import context_to_run, read_model_spec
from runners.onnxrt import physical_cores
from preprocess.conll import read_conll_file
from preprocess.encode import encode
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy

from . import peak as peak_mod
from .acceptance import acceptance
from .capability import describe as describe_capabilities, detect_capabilities, skip_reasons
from .flops import FLOPS_FORMULA, EncoderShape
from .flow import file_flow
from .int8_source import choose_int8_source, fixed_int8_source
from .machine import cpu_flags, cpu_model, loadavg, logical_cpus, trim_memory, version_of
from .measure import Context, agreement_between, batch_table, finish_record, start_path
from .models import INT8_SOURCES, ORT_INT8, build_float_graphs, build_nncf, build_ort_int8, graphs_for
from .paths import DEFAULT_MAX_TOKENS, DEFAULT_POLICY, FP32_PATHS, OLD_RECIPE, PATHS, PRECISION_OF_PATH, BenchPath, \
    OpenVinoPath, OrtPath, PipelinePath, TorchPath, document_sample, sample_indices
from .peaks import PeakSet, kernels_for, peak_violations
from .timing import interleave, time_pass

DEFAULT_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 256)
# OpenVINO paths keep two batches in flight (`runners.openvino`): +10% for NNCF INT8 on 2 cores, f32 level
DEFAULT_OV_STREAMS = 2
MEMORY_NOTE = ("peak_rss_mb = peak RSS while the path loads, warms up, runs and scores minus RSS before it "
               "(same process; gc + malloc_trim before, VmHWM reset via /proc/self/clear_refs)")
PEAK_RULE = ("per precision, the best MatMul timing over every kernel (fp32: ONNX Runtime and OpenVINO; bf16: "
             "OpenVINO; int8: ONNX Runtime MatMulInteger and OpenVINO int8), every shape and every round; "
             "a path above its peak makes the run invalid")


def make_paths(ctx: Context, files: dict[str, Path], policy: BatchPolicy, io_binding: bool,
               capabilities: Optional[CpuCapabilities] = None, int8_graph: str = "fused",
               ov_streams: int = 1) -> dict[str, BenchPath]:
    common = dict(tokenizer=ctx.tokenizer, spec=ctx.spec, threads=ctx.threads, io_binding=io_binding,
                  words_in=ctx.words_in)
    ov = dict(tokenizer=ctx.tokenizer, spec=ctx.spec, threads=ctx.threads, capabilities=capabilities,
              streams=ov_streams, words_in=ctx.words_in)
    source = {"plain": "plain export", "fused": "fused graph"}[int8_graph]
    return {
        "hf_pipeline": PipelinePath(ctx.model_dir, ctx.threads),
        "torch_batched": TorchPath(ctx.model_dir, ctx.threads, policy, ctx.tokenizer, ctx.spec, ctx.words_in),
        "ort_fixed512": OrtPath("ort_fixed512", files["plain"], OLD_RECIPE, what="plain export (the old recipe)",
                                **common),
        "ort_bucketed_fp32": OrtPath("ort_bucketed_fp32", files["plain"], policy, what="plain export", **common),
        "ort_fused_fp32": OrtPath("ort_fused_fp32", files["fused"], policy, what="fused graph (convert.optimize)",
                                  **common),
        "ort_int8_dynamic": OrtPath("ort_int8_dynamic", files["int8_dynamic"], policy,
                                    what=f"{source}, INT8 dynamic (convert.quantize)", **common),
        "ort_int8_static": OrtPath("ort_int8_static", files["int8_static"], policy,
                                   what=f"{source}, INT8 static QDQ (convert.quantize)", **common),
        "ov_fp32": OpenVinoPath("ov_fp32", files["plain"], policy, what="plain export on OpenVINO, f32",
                                precision="f32", **ov),
        "ov_bf16": OpenVinoPath("ov_bf16", files["plain"], policy, what="plain export on OpenVINO, bf16",
                                precision="bf16", **ov),
        "ov_int8_nncf": OpenVinoPath("ov_int8_nncf", files["int8_nncf"], policy,
                                     what="NNCF INT8 IR of the plain export on OpenVINO (float layers: bf16 where "
                                          "the CPU has it)", precision="auto", **ov),
    }


def load_context(model_dir: Path, input_file: Path, *, sample: int, seed: int, log,
                 context: Optional[str] = None) -> Context:
    """The file, the fixed-seed sample and the model facts every path shares. `context`: sentence or
    document [default: the one the model was trained in]; in document context the sample is whole
    documents (drawn with the seed until they hold `sample` sentences)."""
    spec = read_model_spec(model_dir)
    words_in = context_to_run(spec.trained_context, context)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    conll = read_conll_file(input_file)
    sentences = conll.sentences
    tokenizer = load_tokenizer(model_dir)
    documents = sample_documents = None
    if words_in.context == "document":
        if not conll.has_docstart:
            log(conll.no_docstart_note())
        documents = conll.documents()
        idx, sample_documents = document_sample(documents, sample, seed)
    else:
        idx = sample_indices(sample, len(sentences), seed)
    shape = EncoderShape.from_config(config)
    rows = encode(tokenizer, [sentences[i].words for i in idx], words_in.seq_len or spec.max_positions,
                  documents=sample_documents, overlap=words_in.window_overlap)
    return Context(model_dir=model_dir, input_file=input_file, sentences=sentences, sample_idx=idx,
                   tokenizer=tokenizer, spec=spec, shape=shape, sample_flops=shape.flops(rows.lengths),
                   sample_tokens=int(rows.lengths.sum()), threads=physical_cores(), log=log, words_in=words_in,
                   documents=documents, sample_documents=sample_documents)


def measure_paths(ctx: Context, all_paths: dict[str, BenchPath], names, *, repeats: int, warmup: int,
                  f1_scope: str, peaks: PeakSet) -> tuple[dict, dict, dict]:
    """The MatMul peaks' first round, every path started in turn, then the interleaved rounds with one
    more round of the peaks as one more job. Returns (records by path, predictions by path, load facts)."""
    log = ctx.log
    log(f"[peak] MatMul {', '.join(peaks.precisions())} on {len(peaks.shapes)} shape(s) ...")
    peak_first = time_pass(peaks.measure_round)
    log("[peak] " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peaks.peaks().items()) + " (timed again every round)")

    load_start = loadavg()
    records, predictions, jobs = {}, {}, []
    for name in names:
        records[name], predictions[name] = start_path(ctx, all_paths[name], warmup=warmup, f1_scope=f1_scope)
        jobs.append(((lambda p: lambda: ctx.run_sample(p))(all_paths[name]), records[name]["passes"]))
    log(f"[rounds] {repeats - 1} more timed pass(es) of every path, round-robin")
    # the peaks are one more job of the rounds, so that they meet the same speed regimes as the paths
    interleave(jobs + [(peaks.measure_round, [peak_first])], repeats - 1)
    for name in names:
        all_paths[name].close()
        finish_record(ctx, records[name])
        log(f"[{name}] {records[name]['sentences_per_s']:.1f} sentences/s ({records[name]['gflops']:.1f} GFLOP/s), "
            f"median of {len(records[name]['passes'])} pass(es)")
    trim_memory()
    log("[peak] best of " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peaks.peaks().items())
        + f" over {peaks.rounds} round(s)")
    return records, predictions, {"load_start": load_start, "load_end": loadavg()}


def build_graphs(ctx: Context, work: Path, paths, *, policy, reuse, calib_file, calib_sentences, eval_file,
                 int8_source, repeats, io_binding, capabilities, skipped, log) -> tuple[dict, dict, str]:
    """The graphs `paths` run (`bench.models`), the ORT INT8 source picked by measurement when `auto`.
    A failed NNCF accuracy gate skips ov_int8_nncf (its reason into `skipped`). Returns (files, build facts,
    the INT8 source graph)."""
    needed = graphs_for(paths, int8_source)
    files, info = build_float_graphs(ctx.model_dir, work, reuse=reuse, log=log, needed=needed)
    graph = "fused" if int8_source == "auto" else int8_source
    if needed & set(ORT_INT8):
        source = (choose_int8_source(ctx, files, policy, passes=repeats, io_binding=io_binding)
                  if int8_source == "auto" else fixed_int8_source(int8_source))
        graph, info["int8_source"] = source["graph"], source
        info.update(build_ort_int8(ctx.model_dir, files, source=graph, reuse=reuse, calib_file=calib_file,
                                   calib_sentences=calib_sentences, log=log, needed=needed))
    if "int8_nncf" in needed:
        try:
            info["nncf"] = build_nncf(ctx.model_dir, files, reuse=reuse, calib_file=calib_file,
                                      calib_sentences=calib_sentences, eval_file=eval_file, threads=ctx.threads,
                                      capabilities=capabilities, log=log)
        except ValidationError as err:  # its F1 gate failed: the path has no model to run
            skipped["ov_int8_nncf"] = f"NNCF INT8 failed its accuracy gate: {err}"
    return files, info, graph


def run_benchmark(*, model_dir, input_file, sample: int = 500, seed: int = 0, work_dir=None, reuse: bool = False,
                  repeats: int = 5, warmup: int = 64, f1_scope: str = "file", paths=PATHS,
                  max_rows: int = DEFAULT_POLICY.max_rows, max_tokens: Optional[int] = None,
                  io_binding: bool = False, calib_file=None, calib_sentences: int = 300, eval_file=None,
                  int8_source: str = "auto", buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                  ov_streams: int = DEFAULT_OV_STREAMS, with_batch_table: bool = True, with_file_flow: bool = True,
                  peak_shapes=None, context: Optional[str] = None,
                  capabilities: Optional[CpuCapabilities] = None, command: str = "", log=click.echo) -> dict:
    started = time.perf_counter()
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise UserError(f"unknown path {unknown[0]!r}; paths are {', '.join(PATHS)}")
    if f1_scope not in ("file", "sample"):
        raise UserError("--f1_scope is file or sample")
    if int8_source not in INT8_SOURCES:
        raise UserError(f"--int8_source {int8_source!r}: use one of {', '.join(INT8_SOURCES)}")
    model_dir, input_file = Path(model_dir), Path(input_file)
    ctx = load_context(model_dir, input_file, sample=sample, seed=seed, log=log, context=context)
    # None: the context's default budget; 0: no budget
    max_tokens = (DEFAULT_MAX_TOKENS[ctx.words_in.context] if max_tokens is None else max_tokens) or None
    policy = BatchPolicy(max_rows=max_rows, max_tokens=max_tokens)
    detected, openvino_missing = detect_capabilities()
    capabilities = capabilities or detected
    skipped = skip_reasons(paths, capabilities, openvino_missing)
    for name, reason in skipped.items():
        log(f"[{name}] skipped: {reason}")

    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ner_benchmark_"))
    files, build_info, int8_graph = build_graphs(
        ctx, work, [p for p in paths if p not in skipped], policy=policy, reuse=reuse, calib_file=calib_file,
        calib_sentences=calib_sentences, eval_file=eval_file, int8_source=int8_source, repeats=repeats,
        io_binding=io_binding, capabilities=capabilities, skipped=skipped, log=log)
    names = [p for p in paths if p not in skipped]
    precisions = {"fp32"} | {PRECISION_OF_PATH[p] for p in names}
    # bf16 is among them only where ov_bf16 runs, which needs a CPU with it (`skip_reasons`)
    peaks = PeakSet(peak_shapes or peak_mod.DEFAULT_SHAPES, kernels_for(precisions, openvino=openvino_missing is None),
                    threads=ctx.threads, capabilities=capabilities)
    records, predictions, load = measure_paths(
        ctx, make_paths(ctx, files, policy, io_binding, capabilities, int8_graph, ov_streams), names,
        repeats=repeats,
        warmup=warmup, f1_scope=f1_scope, peaks=peaks)

    # the batch table and the file flow use the fused graph (the one to deploy), else the plain export
    best_ort_fp32 = records.get("ort_fused_fp32") or records.get("ort_bucketed_fp32")
    table = batch_table(ctx, Path(best_ort_fp32["model_file"]), io_binding, repeats) \
        if with_batch_table and best_ort_fp32 else []
    flow = None
    if with_file_flow and best_ort_fp32:
        log(f"[file flow] bin_create --buckets {','.join(map(str, buckets))} -> infer -> bert_metric on {input_file.name}")
        flow = file_flow(ctx, Path(best_ort_fp32["model_file"]), work, buckets=buckets, batchsize=max_rows,
                         max_tokens=max_tokens)
        compare_flow(flow, best_ort_fp32)
        log(f"[file flow] F1 {100 * flow['f1']:.2f}, in process "
            f"{'-' if flow['f1_in_process'] is None else round(100 * flow['f1_in_process'], 2)}, {flow['total_s']:.1f} s")

    runs = [records[name] for name in PATHS if name in records]
    if "torch_batched" in predictions:
        for record in runs:
            record["label_agreement_vs_torch"] = agreement_between(ctx, predictions[record["name"]],
                                                                   predictions["torch_batched"])
    peak_values = peaks.peaks()
    problems = peak_violations(runs, peak_values, PRECISION_OF_PATH)
    fp32 = [r for r in runs if r["name"] in FP32_PATHS]
    best_fp32 = max(fp32, key=lambda r: r["sentences_per_s"]) if fp32 else None

    result = {
        "command": command,
        "valid": not problems,
        "invalid_reasons": problems,
        "machine": _machine(ctx.threads, peaks, load),
        "cpu_capabilities": describe_capabilities(capabilities),
        "matmul_peaks": peaks.describe(),
        "model": {"model_dir": str(model_dir), "layers": ctx.shape.layers, "hidden": ctx.shape.hidden,
                  "intermediate": ctx.shape.intermediate, "labels": ctx.shape.labels,
                  "mflop_per_word_piece": ctx.shape.flops_per_token() / 1e6},
        "data": {"input_file": str(input_file), "sentences": len(ctx.sentences), "sample": len(ctx.sample_idx),
                 "seed": seed, "sample_word_pieces": ctx.sample_tokens, "context": ctx.words_in.as_config(),
                 "sample_documents": len(ctx.sample_documents) if ctx.sample_documents is not None else None,
                 "sample_mean_word_pieces": ctx.sample_tokens / max(1, len(ctx.sample_idx)),
                 "sample_gflop": ctx.sample_flops / 1e9},
        "batching": {"policy": policy.describe(), "old_recipe": OLD_RECIPE.describe(), "openvino_streams": ov_streams},
        "build": build_info,
        "runs": runs,
        "skipped": [{"name": name, "reason": skipped[name]} for name in PATHS if name in skipped],
        "best_fp32": best_fp32["name"] if best_fp32 else None,
        "fp32_fraction_of_peak": best_fp32["gflops"] / peak_values["fp32"] if best_fp32 else None,
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


def compare_flow(flow: dict, in_process: dict) -> None:
    """The file flow's F1 and speed beside the in-process figures of the same graph on the same backend."""
    flow["f1_in_process"] = in_process["f1"] if in_process["f1_on"] == "file" else None
    flow["in_process_path"] = in_process["name"]
    flow["same_f1"] = None if flow["f1_in_process"] is None else round(flow["f1"], 4) == round(flow["f1_in_process"], 4)
    flow["in_process_sentences_per_s"] = in_process["sentences_per_s"]
    flow["speed_vs_in_process"] = flow["sentences_per_s"] / in_process["sentences_per_s"]


def _machine(threads: int, peaks: PeakSet, load: dict) -> dict:
    return {
        "cores": threads, "logical_cpus": logical_cpus(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "matmul_peak_gflops": peaks.peak("fp32"),
        "matmul_peak_samples": peaks.samples("fp32"),
        "matmul_peak_rule": PEAK_RULE,
        "matmul_shapes": peaks.timings_json(),
        "python": platform.python_version(), "onnxruntime": version_of("onnxruntime"), "torch": version_of("torch"),
        "transformers": version_of("transformers"), "openvino": version_of("openvino"),
        "intra_op_threads": threads,
        "loadavg_before_paths": load["load_start"], "loadavg_after_paths": load["load_end"],
    }
