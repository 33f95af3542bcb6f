"""Words -> word labels, seven ways, on the same sentences, in one process and one run.

python -m infer.benchmark --model_dir DIR --input_file test.txt --json OUT.json --markdown OUT.md --plot OUT.png
                          [--sample 500] [--seed 0] [--work_dir D] [--reuse]

What runs, in this order:
1. the ONNX models the ORT paths need are built from the checkpoint with the project's own
   steps (`convert.export` -> `convert.optimize` -> `convert.quantize` dynamic and static) into
   `--work_dir` (`--reuse` keeps ones already there);
2. this machine's fp32 MatMul peak on ONNX Runtime (`infer.bench_peak`);
3. every path, on a fixed-seed sample of `--sample` sentences of `--input_file`, timed from
   words to word labels (tokenising, batching, inference, decoding) after a warm-up, and its
   entity F1 (conlleval) on the whole file (`--f1_scope`; the pipeline path is scored on the
   sample: a sentence at a time it would take minutes for a figure torch_batched already gives);
4. a batch-size table (1, 4, 8, 16, 32, 64) for the fused fp32 graph;
5. the file-based flow on the whole file: `bin_create --buckets` -> `python -m infer` ->
   `bert_metric`, each stage timed, its F1 compared with the in-process F1 of the same graph.

Paths: hf_pipeline (transformers pipeline, a sentence at a time), torch_batched (PyTorch fp32),
ort_fixed512 (the old recipe: every sentence padded to 512, batches of 8 in file order, the plain
export), ort_bucketed_fp32 (the plain export, rows sorted by length and batched with little
padding), ort_fused_fp32 (the same on the fused graph), ort_int8_dynamic, ort_int8_static.

Timing: each path is loaded, warmed up, timed once and scored in turn, and stays loaded; then
`--repeats` - 1 more passes of every path run round-robin, with a re-timing of the MatMul peak's
best shape in each round, so that all figures meet the same drift of this VM's speed (regimes
~20% apart and tens of seconds long were seen). The median pass gives sentences/s, the median
peak timing the peak. A path whose first pass takes over 60 s is not repeated. Threads:
intra-op = physical cores for ORT and torch.

Memory (`peak_rss_mb`): all paths live in this process. Before a path loads, garbage is
collected, freed heap goes back to the OS (malloc_trim) and the kernel's peak-RSS mark is reset
(/proc/self/clear_refs); the figure is the peak RSS while the path loads, warms up, runs its
first pass and scores, minus the RSS before it: the path's own footprint on top of the shared
imports (and of the paths loaded before it).

FLOPs (`gflops`, `fp32_fraction_of_peak`): counted from the real word-piece count n of each model
row (padding is not useful work): n x 2 x (4h^2 + 2hi) per layer (QKV, attention output, FFN)
+ 4 n^2 h per layer (QK^T and PV) + 2nh x labels (classifier); MiniLM-L6: 21.2 MFLOP per word piece.
fp32_fraction_of_peak = GFLOP/s of the fastest fp32 path / the measured MatMul peak.
"""
from __future__ import annotations

import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import click
import numpy as np

from common.atomic import write_json, write_text
from common.errors import UserError, handle_errors

from .bench_core import BatchPolicy, EncoderShape, RssMeter, cpu_flags, cpu_model, encode, logical_cpus, trim_memory
from .bench_paths import BenchPath, OrtPath, PipelinePath, TorchPath, agreement, sample_indices

PATHS = ("hf_pipeline", "torch_batched", "ort_fixed512", "ort_bucketed_fp32", "ort_fused_fp32",
         "ort_int8_dynamic", "ort_int8_static")
FP32_PATHS = PATHS[:5]
INT8_PATHS = PATHS[5:]
BATCH_TABLE_SIZES = (1, 4, 8, 16, 32, 64)
OLD_RECIPE = BatchPolicy(max_rows=8, sort=False, pad_to=512)
# Measured on the 2-core AMD EPYC (AVX-512) this was tuned on: a few hundred padded tokens per
# batch keep the activations cache-resident; fp32 slows down past ~1000 tokens per batch.
DEFAULT_POLICY = BatchPolicy(max_rows=256, max_tokens=512)
DEFAULT_BUCKETS = "16,24,32,48,64,96,128,256"
LONG_PASS_S = 60.0


@dataclass
class Context:
    model_dir: Path
    input_file: Path
    sentences: list  # preprocess.conll.Sentence
    sample_idx: np.ndarray
    tokenizer: object
    spec: object  # common.model_spec.ModelSpec
    shape: EncoderShape
    sample_flops: int
    sample_tokens: int
    threads: int
    log: Callable[[str], None]

    @property
    def sample(self) -> list[list[str]]:
        return [list(self.sentences[i].words) for i in self.sample_idx]

    @property
    def all_words(self) -> list[list[str]]:
        return [list(s.words) for s in self.sentences]

    def gold(self, indices=None) -> list[list[str]]:
        chosen = self.sentences if indices is None else [self.sentences[i] for i in indices]
        return [list(s.tags) for s in chosen]


# ---------------------------------------------------------------- models

def build_models(model_dir: Path, work_dir: Path, *, reuse: bool, calib_file, calib_sentences: int,
                 log) -> tuple[dict[str, Path], dict]:
    """The plain export, the fused graph and both INT8 graphs, made by the convert steps."""
    from convert.export import export_onnx
    from convert.optimize import optimize_onnx
    from convert.quantize import quantize_onnx

    work_dir.mkdir(parents=True, exist_ok=True)
    files = {"plain": work_dir / "model.onnx", "fused": work_dir / "model_fused.onnx",
             "int8_dynamic": work_dir / "model_int8_dynamic.onnx", "int8_static": work_dir / "model_int8_static.onnx"}
    info: dict = {}

    def fresh(key):
        return not (reuse and files[key].is_file())

    if fresh("plain"):
        log(f"[build] export {model_dir} -> {files['plain']}")
        result = export_onnx(model_dir=model_dir, output=files["plain"])
        info["export"] = {"max_abs_diff_vs_torch": result.check.max_abs_diff, "seconds": round(result.seconds, 1)}
    if fresh("fused"):
        log(f"[build] optimize -> {files['fused']}")
        result = optimize_onnx(input=files["plain"], output=files["fused"], model_dir=model_dir)
        info["optimize"] = {"fused_operators": result.fused, "max_abs_diff": result.check.max_abs_diff,
                            "seconds": round(result.seconds, 1)}
    else:
        from convert.onnx_io import load, metadata

        recorded = metadata(load(files["fused"], load_external_data=False)).get("fused_operators")
        info["optimize"] = {"fused_operators": json.loads(recorded) if recorded else None}
    for mode in ("dynamic", "static"):
        key = f"int8_{mode}"
        if fresh(key):
            log(f"[build] quantize {mode} -> {files[key]}")
            extra = {"calib_file": calib_file, "calib_sentences": calib_sentences} if mode == "static" else {}
            result = quantize_onnx(input=files["fused"], output=files[key], mode=mode, model_dir=model_dir, **extra)
            info[f"quantize_{mode}"] = {"settings": result.settings, "kept_float": list(result.kept_float),
                                        "label_agreement_vs_fp32": result.agreement,
                                        "size_mb": round(result.size_output_mb, 1), "seconds": round(result.seconds, 1)}
    return files, info


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


# ---------------------------------------------------------------- measuring

def time_pass(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(jobs: list, rounds: int) -> None:
    """`rounds` more timed passes of every job, round-robin: job after job, then again.

    This machine (a VM) drifts between speed regimes ~20% apart that last tens of seconds;
    passes of all paths spread over the same window meet the same mix of regimes, so their
    ratios hold even when the absolute figures move. A job is (function, list of its pass times);
    a job whose first pass took over LONG_PASS_S is not repeated."""
    for _ in range(rounds):
        for fn, times in jobs:
            if times[0] <= LONG_PASS_S:
                times.append(time_pass(fn))


def warmup_set(ctx: Context, count: int) -> list[list[str]]:
    """`count` sentences of the sample, the longest among them, so buffers reach their full size."""
    sample = ctx.sample
    longest = max(range(len(sample)), key=lambda i: len(sample[i]))
    chosen = [sample[longest]] + [s for i, s in enumerate(sample[:count]) if i != longest]
    return chosen[:max(1, count)]


def _loadavg() -> Optional[list[float]]:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def _agreement(ctx: Context, got: dict, ref: dict) -> Optional[float]:
    """Share of words two paths label alike, on the sentences both scored (the sample at least)."""
    if got["scope"] == ref["scope"]:
        return agreement(got["pred"], ref["pred"])
    if got["scope"] == "sample" and ref["scope"] == "file":
        return agreement(got["pred"], [ref["pred"][i] for i in ctx.sample_idx])
    if got["scope"] == "file" and ref["scope"] == "sample":
        return agreement([got["pred"][i] for i in ctx.sample_idx], ref["pred"])
    return None


def start_path(ctx: Context, path: BenchPath, *, warmup: int, f1_scope: str) -> tuple[dict, dict]:
    """Load, warm up, time one pass, score; the path stays loaded for the interleaved passes.

    Returns (the run's JSON record, its predictions). The memory figure covers all of this."""
    from postprocess.metrics import classification_report

    ctx.log(f"[{path.name}] {path.description}")
    sample = ctx.sample
    with RssMeter() as memory:
        t0 = time.perf_counter()
        path.load()
        load_s = time.perf_counter() - t0
        path.predict(warmup_set(ctx, warmup))
        first = time_pass(lambda: path.predict(sample))
        scope = "sample" if f1_scope == "sample" or path.name == "hf_pipeline" else "file"
        if scope == "file":
            pred, gold = path.predict(ctx.all_words), ctx.gold()
        else:
            pred, gold = path.predict(sample), ctx.gold(ctx.sample_idx)
    report = classification_report(gold, pred)
    record = {
        "name": path.name,
        "description": path.description,
        "passes": [first],
        "f1": report["f1"],
        "precision": report["precision"],
        "recall": report["recall"],
        "f1_on": scope,
        "f1_sentences": len(gold),
        "model_mb": path.model_mb,
        "model_file": str(path.model_file) if path.model_file else None,
        "peak_rss_mb": memory.growth_mb,
        "process_peak_rss_mb": memory.peak_mb,
        "load_s": load_s,
    }
    ctx.log(f"[{path.name}] first pass {len(sample) / first:.1f} sentences/s, F1 {100 * record['f1']:.2f} on the "
            f"{scope}, peak RSS +{record['peak_rss_mb'] or 0:.0f} MB")
    return record, {"scope": scope, "pred": pred}


def finish_record(ctx: Context, record: dict) -> dict:
    """Speed from the median pass."""
    seconds = statistics.median(record["passes"])
    record.update(sentences_per_s=len(ctx.sample_idx) / seconds, seconds=seconds,
                  gflops=ctx.sample_flops / seconds / 1e9, passes=[round(t, 4) for t in record["passes"]])
    return record


def batch_table(ctx: Context, model_file: Path, io_binding: bool, repeats: int) -> list[dict]:
    """Sentences/s of one graph at batch sizes 1..64 (sorted by length, no token budget), interleaved."""
    sample = ctx.sample
    jobs, paths = [], []
    for size in BATCH_TABLE_SIZES:
        path = OrtPath(f"batch{size}", model_file, BatchPolicy(max_rows=size), ctx.tokenizer, ctx.spec, what="",
                       threads=ctx.threads, io_binding=io_binding)
        path.load()
        path.predict(warmup_set(ctx, 64))
        fn = (lambda p: lambda: p.predict(sample))(path)
        jobs.append((fn, [time_pass(fn)]))
        paths.append(path)
    interleave(jobs, repeats - 1)
    rows = []
    for size, path, (_, times) in zip(BATCH_TABLE_SIZES, paths, jobs):
        path.close()
        seconds = statistics.median(times)
        rows.append({"batch_size": size, "sentences_per_s": len(sample) / seconds,
                     "gflops": ctx.sample_flops / seconds / 1e9})
        ctx.log(f"[batch table] batch {size}: {rows[-1]['sentences_per_s']:.1f} sentences/s")
    trim_memory()
    return rows


def file_flow(ctx: Context, model_file: Path, work_dir: Path, *, buckets: str, batchsize: int) -> dict:
    """bin_create --buckets -> python -m infer -> bert_metric on the whole file, each stage timed."""
    from postprocess.score import score_run
    from preprocess.pipeline import create_bins

    from .offline import run_offline

    flow_dir = Path(tempfile.mkdtemp(prefix="file_flow_", dir=work_dir))
    t0 = time.perf_counter()
    binset = create_bins(ctx.input_file, ctx.model_dir, flow_dir / "bert_bin", seq_len=512, buckets=buckets,
                         show_progress=False)
    t1 = time.perf_counter()
    run = run_offline(model=model_file, input=",".join(str(d) for d in binset.input_dirs()),
                      output=flow_dir / "result", outfmt="BIN", batchsize=batchsize, log=lambda _: None, progress=False)
    t2 = time.perf_counter()
    scored = score_run(run.out_dir, binset.anno_file)
    t3 = time.perf_counter()
    n = len(ctx.sentences)
    stages = {"bin_create_s": t1 - t0, "infer_s": t2 - t1, "bert_metric_s": t3 - t2}
    command = (f"python bin_create.py --input_file {ctx.input_file} --model_name_from_hub {ctx.model_dir} "
               f"--save_dir BIN --buckets {buckets} && python -m infer --model {model_file} --input "
               f"\"{','.join('BIN/bert_bin_<ts>/' + name for name in ctx.spec.input_names)}\" --output OUT "
               f"--outfmt BIN --batchsize {batchsize} && python bert_metric.py --result_dir OUT/<ts> "
               "--anno_file BIN/bert_bin_<ts>.anno")
    return {"model_file": str(model_file), "buckets": buckets, "batchsize": batchsize, "sentences": n,
            "samples": run.total, "stages": stages, "total_s": sum(stages.values()),
            "sentences_per_s": n / sum(stages.values()),
            "infer_sentences_per_s": n / stages["infer_s"], "throughput_ais_bench": run.summary["throughput"],
            "f1": scored.result["f1"], "work_dir": str(flow_dir), "command": command}


# ---------------------------------------------------------------- the run

def run_benchmark(*, model_dir, input_file, sample: int = 500, seed: int = 0, work_dir=None, reuse: bool = False,
                  repeats: int = 5, warmup: int = 64, f1_scope: str = "file", paths=PATHS,
                  max_rows: int = DEFAULT_POLICY.max_rows, max_tokens: Optional[int] = DEFAULT_POLICY.max_tokens,
                  io_binding: bool = False, calib_file=None, calib_sentences: int = 300,
                  buckets: str = DEFAULT_BUCKETS, flow_batchsize: int = 16, with_batch_table: bool = True,
                  with_file_flow: bool = True, peak_shapes=None, command: str = "", log=click.echo) -> dict:
    from transformers import AutoTokenizer

    from common.model_spec import read_model_spec
    from preprocess.conll import read_conll

    from .bench_peak import DEFAULT_SHAPES, matmul_peak, time_matmul
    from .runners.onnxrt import physical_cores

    started = time.perf_counter()
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise UserError(f"unknown path {unknown[0]!r}; paths are {', '.join(PATHS)}")
    if f1_scope not in ("file", "sample"):
        raise UserError("--f1_scope is file or sample")
    model_dir, input_file = Path(model_dir), Path(input_file)
    spec = read_model_spec(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    sentences = read_conll(input_file)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    threads = physical_cores()
    idx = sample_indices(sample, len(sentences), seed)
    shape = EncoderShape.from_config(config)
    rows = encode(tokenizer, [sentences[i].words for i in idx], spec.max_positions)
    ctx = Context(model_dir=model_dir, input_file=input_file, sentences=sentences, sample_idx=idx, tokenizer=tokenizer,
                  spec=spec, shape=shape, sample_flops=shape.flops(rows.lengths), sample_tokens=int(rows.lengths.sum()),
                  threads=threads, log=log)
    policy = BatchPolicy(max_rows=max_rows, max_tokens=max_tokens)

    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ner_benchmark_"))
    files, build_info = build_models(model_dir, work, reuse=reuse, calib_file=calib_file,
                                     calib_sentences=calib_sentences, log=log)

    log("[peak] fp32 MatMul on ONNX Runtime ...")
    peak_first, timings = matmul_peak(peak_shapes or DEFAULT_SHAPES, threads=threads)
    best_shape = max(timings, key=lambda t: t.gflops)
    peak_samples = [peak_first]
    log(f"[peak] {peak_first:.1f} GFLOP/s ({best_shape.m}x{best_shape.k}x{best_shape.n}; timed again in every round)")

    all_paths = make_paths(ctx, files, policy, io_binding)
    load_start = _loadavg()
    records, predictions, jobs = {}, {}, []
    for name in paths:
        records[name], predictions[name] = start_path(ctx, all_paths[name], warmup=warmup, f1_scope=f1_scope)
        jobs.append(((lambda p: lambda: p.predict(ctx.sample))(all_paths[name]), records[name]["passes"]))
    # the MatMul peak is one more job of the rounds, so that it meets the same speed regimes
    peak_job = (lambda: peak_samples.append(
        time_matmul(best_shape.m, best_shape.k, best_shape.n, threads=threads).gflops), [0.0])
    log(f"[rounds] {repeats - 1} more timed pass(es) of every path, round-robin")
    interleave(jobs + [peak_job], repeats - 1)
    for name in paths:
        all_paths[name].close()
        finish_record(ctx, records[name])
        log(f"[{name}] {records[name]['sentences_per_s']:.1f} sentences/s ({records[name]['gflops']:.1f} GFLOP/s), "
            f"median of {len(records[name]['passes'])} pass(es)")
    trim_memory()
    peak = statistics.median(peak_samples)
    log(f"[peak] median {peak:.1f} GFLOP/s over {len(peak_samples)} timings")
    load_end = _loadavg()

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
            record["label_agreement_vs_torch"] = _agreement(ctx, predictions[record["name"]],
                                                            predictions["torch_batched"])
    fp32 = [r for r in runs if r["name"] in FP32_PATHS]
    best_fp32 = max(fp32, key=lambda r: r["sentences_per_s"]) if fp32 else None

    result = {
        "command": command,
        "machine": {
            "cores": threads, "logical_cpus": logical_cpus(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
            "matmul_peak_gflops": peak,
            "matmul_peak_samples": peak_samples,
            "matmul_shapes": [{"m": t.m, "k": t.k, "n": t.n, "ms": t.median_ms, "gflops": t.gflops} for t in timings],
            "python": platform.python_version(), "onnxruntime": _version("onnxruntime"), "torch": _version("torch"),
            "transformers": _version("transformers"), "intra_op_threads": threads,
            "loadavg_before_paths": load_start, "loadavg_after_paths": load_end,
        },
        "model": {"model_dir": str(model_dir), "layers": shape.layers, "hidden": shape.hidden,
                  "intermediate": shape.intermediate, "labels": shape.labels,
                  "mflop_per_word_piece": shape.flops_per_token() / 1e6},
        "data": {"input_file": str(input_file), "sentences": len(sentences), "sample": len(idx), "seed": seed,
                 "sample_word_pieces": ctx.sample_tokens,
                 "sample_mean_word_pieces": ctx.sample_tokens / max(1, len(idx)),
                 "sample_gflop": ctx.sample_flops / 1e9},
        "batching": {"policy": policy.describe(), "old_recipe": OLD_RECIPE.describe()},
        "build": build_info,
        "runs": runs,
        "best_fp32": best_fp32["name"] if best_fp32 else None,
        "fp32_fraction_of_peak": best_fp32["gflops"] / peak if best_fp32 else None,
        "batch_table": table,
        "batch_table_path": best_ort_fp32["name"] if table else None,
        "file_flow": flow,
        "flops_formula": ("per model row of n real word pieces: layers x (n x 2 x (4h^2 + 2hi) + 4 n^2 h) + "
                          "2 n h labels; padding excluded"),
        "memory": "peak_rss_mb = peak RSS while the path loads, warms up, runs and scores minus RSS before it "
                  "(same process; gc + malloc_trim before, VmHWM reset via /proc/self/clear_refs)",
        "seconds": None,
    }
    result["acceptance"] = acceptance(result)
    result["seconds"] = time.perf_counter() - started
    return result


def _version(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


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


# ---------------------------------------------------------------- reports

def markdown(result: dict) -> str:
    runs = {r["name"]: r for r in result["runs"]}
    base_fixed = runs.get("ort_fixed512", {}).get("sentences_per_s")
    base_pipe = runs.get("hf_pipeline", {}).get("sentences_per_s")
    m, d = result["machine"], result["data"]
    lines = [
        "## Speed: words to word labels",
        "",
        f"{d['sample']} sentences of `{Path(d['input_file']).name}` (fixed seed {d['seed']}, "
        f"{d['sample_mean_word_pieces']:.1f} word pieces each on average, special tokens included), the same for every path; "
        f"{m['cores']} cores ({m['cpu']}), {m['intra_op_threads']} intra-op threads, one process. "
        "Times include tokenising, batching, inference and decoding. "
        f"Entity F1 (conlleval) on the whole file ({d['sentences']} sentences) unless marked *sample*. "
        "Model MB: the file the path loads (PyTorch paths: the checkpoint's float16 safetensors, run in float32). "
        "Peak RSS MB: the path's own peak resident memory on top of the process before it (model, sessions, "
        "buffers; same process, see the JSON's `memory`).",
        "",
        "| path | what | sentences/s | x fixed512 | x pipeline | GFLOP/s | entity F1 | labels = torch | model MB "
        "| peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        sps = r["sentences_per_s"]
        f1 = f"{100 * r['f1']:.2f}" + (" *sample*" if r["f1_on"] == "sample" else "")
        cells = [r["name"], r["description"], f"{sps:.1f}", _ratio(sps, base_fixed, 1), _ratio(sps, base_pipe, 2),
                 f"{r['gflops']:.1f}", f1, _pct(r.get("label_agreement_vs_torch")), _num(r["model_mb"], 1),
                 _num(r["peak_rss_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    frac = result.get("fp32_fraction_of_peak")
    lines += [
        "",
        f"fp32 MatMul peak on this machine (ONNX Runtime, measured by the benchmark): "
        f"**{m['matmul_peak_gflops']:.1f} GFLOP/s**; the fastest fp32 path ({result['best_fp32']}) reaches "
        f"**{100 * frac:.0f}%** of it" if frac is not None else "",
        f"(FLOPs from real word-piece counts: {result['flops_formula']}; "
        f"{result['model']['mflop_per_word_piece']:.1f} MFLOP per word piece).",
        "",
    ]
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
            f"batch {flow['batchsize']}): bin_create {st['bin_create_s']:.1f} s, infer {st['infer_s']:.1f} s, "
            f"bert_metric {st['bert_metric_s']:.1f} s; F1 {100 * flow['f1']:.2f} " + (
                "(in-process F1 scored on the sample only: not compared)." if flow["f1_in_process"] is None else
                f"({'same as' if flow['same_f1'] else 'DIFFERS from'} in-process {flow['in_process_path']} "
                f"{100 * flow['f1_in_process']:.2f})."),
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


def _ratio(value, base, digits: int) -> str:
    return f"{value / base:.{digits}f}" if base else "-"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install matplotlib)") from None
    runs = result["runs"]
    names = [r["name"] for r in runs]
    speeds = [r["sentences_per_s"] for r in runs]
    colors = ["#999999" if n in ("hf_pipeline", "torch_batched", "ort_fixed512") else
              "#1f77b4" if n in FP32_PATHS else "#2ca02c" for n in names]
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


@click.command()
@click.option("--model_dir", required=True, type=click.Path(path_type=Path), help="Fine-tuned checkpoint folder.")
@click.option("--input_file", required=True, type=click.Path(path_type=Path), help="CoNLL file (e.g. test.txt).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the results here.")
@click.option("--markdown", "md_path", type=click.Path(path_type=Path), default=None, help="Write a Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None, help="Write a PNG plot (matplotlib).")
@click.option("--sample", type=click.IntRange(1), default=500, show_default=True,
              help="Sentences timed on every path (a fixed-seed sample of the file).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--paths", default=",".join(PATHS), show_default=True, help="Comma-separated paths to run.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Timed passes per path (median).")
@click.option("--warmup", type=click.IntRange(1), default=64, show_default=True, help="Warm-up sentences per path.")
@click.option("--f1_scope", type=click.Choice(["file", "sample"]), default="file", show_default=True,
              help="Score F1 on the whole file or on the sample only (quick runs).")
@click.option("--max_rows", type=click.IntRange(1), default=DEFAULT_POLICY.max_rows, show_default=True,
              help="Rows per batch of the batched paths.")
@click.option("--max_tokens", type=click.IntRange(0), default=DEFAULT_POLICY.max_tokens, show_default=True,
              help="Padded tokens per batch of the batched paths (0: no budget).")
@click.option("--io_binding", is_flag=True, help="Run ORT through IO binding.")
@click.option("--work_dir", type=click.Path(path_type=Path), default=None,
              help="Where the ONNX models and the file-flow outputs go [default: a temporary folder].")
@click.option("--reuse", is_flag=True, help="Reuse the ONNX models already in --work_dir.")
@click.option("--calib_file", type=click.Path(path_type=Path), default=None,
              help="Calibration sentences of the static INT8 model [default: CoNLL-2003 train.txt].")
@click.option("--calib_sentences", type=click.IntRange(1), default=300, show_default=True)
@click.option("--buckets", default=DEFAULT_BUCKETS, show_default=True, help="bin_create --buckets of the file flow.")
@click.option("--no_batch_table", is_flag=True)
@click.option("--no_file_flow", is_flag=True)
@handle_errors
def main(json_path, md_path, plot_path, paths, max_tokens, no_batch_table, no_file_flow, **kwargs):
    """Benchmark words -> word labels: pipeline, PyTorch, and ONNX Runtime fp32 / fused / INT8."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    command = "python -m infer.benchmark " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_benchmark(paths=[p for p in paths.split(",") if p], max_tokens=max_tokens or None,
                           with_batch_table=not no_batch_table, with_file_flow=not no_file_flow, command=command,
                           **kwargs)
    text = markdown(result)
    click.echo(text)
    if json_path:
        write_json(json_path, result)
        click.echo(f"wrote {json_path}")
    if md_path:
        write_text(md_path, text)
        click.echo(f"wrote {md_path}")
    if plot_path:
        plot(result, plot_path)
        click.echo(f"wrote {plot_path}")


if __name__ == "__main__":
    sys.exit(main())
