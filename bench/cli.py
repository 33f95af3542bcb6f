"""Words -> word labels, ten ways, on the same sentences, in one process and one run.

python -m bench --model_dir DIR --input_file test.txt --json OUT.json --markdown OUT.md --plot OUT.png
                [--sample 500] [--seed 0] [--work_dir D] [--reuse]

What runs, in this order:
1. the models the paths need are built from the checkpoint with the project's own steps into
   `--work_dir` (`--reuse` keeps ones already there): `convert.export` -> `convert.optimize`; then the
   plain and the fused fp32 graph are timed against each other and the faster is quantized by
   `convert.quantize` dynamic and static (`--int8_source auto`; `plain` / `fused` fix it; the JSON's
   `build.int8_source` says which and why); NNCF's INT8 IR of the plain export (`convert.quantize_nncf`,
   calibrated like the static INT8, its F1 gate on `--eval_file`);
2. this machine's MatMul peaks (`bench.peaks`): fp32, bf16 and int8, each the best over ONNX Runtime's
   and OpenVINO's kernels, three shapes and every round (timed again in each round of step 3);
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
padding), ort_fused_fp32 (the same on the fused graph), ort_int8_dynamic, ort_int8_static, ov_fp32 and
ov_bf16 (the plain export on OpenVINO at f32 / bf16), ov_int8_nncf (NNCF's INT8 IR on OpenVINO). ov_bf16
needs a CPU with native BF16, ov_int8_nncf one with VNNI / AMX int8 (`common.cpu`; `$NER_CPU_FLAGS`
plays another CPU): elsewhere they are listed under `skipped` with the reason, not run.

Validity: a path whose GFLOP/s exceed the measured peak of its precision means the peak was not a
peak; the run is then marked invalid (`valid: false`, `invalid_reasons` in the JSON, a banner in the
Markdown), its results are still written, and the command exits with code 3. Acceptance rows pass or
fail without changing the exit code.

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
fp32_fraction_of_peak = GFLOP/s of the fastest fp32 path / the measured fp32 MatMul peak; every run
has its `fraction_of_peak` of the peak of its precision (`peak_precision`).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from common.atomic import write_json, write_text
from common.errors import handle_errors
from common.cli import CONTEXT_SETTINGS, parse_lengths, model_dir_option
from common.model_spec import CONTEXTS

from .models import INT8_SOURCES
from .paths import DEFAULT_MAX_TOKENS, DEFAULT_POLICY, PATHS
from .report import markdown, plot
from .run import DEFAULT_BUCKETS, DEFAULT_OV_STREAMS, run_benchmark

INVALID_RUN_EXIT = 3  # measured, written, but a path beat its peak: not 1 (an error) nor 2 (a usage error)


@click.command(context_settings=CONTEXT_SETTINGS)
@model_dir_option(required=True, help="Fine-tuned checkpoint folder.")
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
@click.option("--max_tokens", type=click.IntRange(0), default=None,
              help="Padded tokens per batch of the batched paths (0: no budget) [default: "
                   f"{DEFAULT_MAX_TOKENS['sentence']} in sentence context, {DEFAULT_MAX_TOKENS['document']} in document "
                   "context].")
@click.option("--context", type=click.Choice(CONTEXTS), default=None,
              help="How words reach the model: each sentence alone, or document windows [default: the context "
                   "the model was trained in, config.json ner_context]; the transformers pipeline stays per sentence.")
@click.option("--io_binding", is_flag=True, help="Run ORT through IO binding.")
@click.option("--work_dir", type=click.Path(path_type=Path), default=None,
              help="Where the ONNX models and the file-flow outputs go [default: a temporary folder].")
@click.option("--reuse", is_flag=True, help="Reuse the ONNX models already in --work_dir.")
@click.option("--calib_file", type=click.Path(path_type=Path), default=None,
              help="Calibration sentences of the static INT8 model [default: CoNLL-2003 train.txt].")
@click.option("--calib_sentences", type=click.IntRange(1), default=300, show_default=True)
@click.option("--eval_file", type=click.Path(path_type=Path), default=None,
              help="Sentences of the NNCF INT8 build's F1 gate [default: CoNLL-2003 valid.txt].")
@click.option("--int8_source", type=click.Choice(INT8_SOURCES), default="auto", show_default=True,
              help="Graph the ORT INT8 paths quantize: auto times plain vs fused and takes the faster.")
@click.option("--buckets", default=",".join(map(str, DEFAULT_BUCKETS)), show_default=True,
              help="bin_create --buckets of the file flow.")
@click.option("--ov_streams", type=click.IntRange(1), default=DEFAULT_OV_STREAMS, show_default=True,
              help="OpenVINO streams of the ov_* paths (batches in flight; 1: one synchronous request).")
@click.option("--no_batch_table", is_flag=True)
@click.option("--no_file_flow", is_flag=True)
@handle_errors
def main(json_path, md_path, plot_path, paths, max_tokens, no_batch_table, no_file_flow, buckets, **kwargs):
    """Benchmark words -> word labels: pipeline, PyTorch, ONNX Runtime fp32 / fused / INT8, OpenVINO f32 / bf16 / INT8."""
    # transformers takes seconds to import: not at module level, so `--help` stays instant
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_benchmark(paths=[p for p in paths.split(",") if p], max_tokens=max_tokens,
                           with_batch_table=not no_batch_table, with_file_flow=not no_file_flow, command=command,
                           buckets=parse_lengths(buckets),
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
    if not result["valid"]:
        click.echo(f"error: invalid run: {result['invalid_reasons'][0]}"
                   + (f" (and {len(result['invalid_reasons']) - 1} more)" if len(result["invalid_reasons"]) > 1 else ""),
                   err=True)
        sys.exit(INVALID_RUN_EXIT)
