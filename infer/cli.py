"""`python -m infer`: ais_bench's command line over the ORT runner (or the real ais_bench for .om).

A thin wrapper: parse, pick the library function, call it with keyword arguments. Errors
from the library are `UserError`s, printed as one line with exit code 1 by `handle_errors`.
"""
from __future__ import annotations

import sys

import click

from common.errors import UserError, handle_errors
from common.cli import CONTEXT_SETTINGS

from .ais_bench import is_om_model, run_ais_bench
from .offline import BACKENDS, OUTFMTS, PRECISIONS, check_model_path, run_offline, run_pure, runner_factory_for


@click.command(name="infer", context_settings=CONTEXT_SETTINGS)
@click.option("--model", "-m", required=True,
              help="ONNX model (.onnx: ONNX Runtime or OpenVINO), OpenVINO IR (.xml) or Ascend model (.om: ais_bench).")
@click.option("--input", "-i", "input_", default=None,
              help='Comma-separated input folders, one per model input in model order, e.g. '
                   '"d/input_ids,d/attention_mask,d/token_type_ids". Omitted: --loop runs on zero inputs.')
@click.option("--output", "-o", default=None, help="Results go to OUTPUT/<YYYY_mm_dd-HH_MM_SS>/ (+ _summary.json).")
@click.option("--output_dirname", default=None, help="Use OUTPUT/<this>/ instead of a timestamped folder.")
@click.option("--outfmt", type=click.Choice(OUTFMTS, case_sensitive=False), default="BIN", show_default=True,
              help="NPY (with header) or BIN (raw float32).")
@click.option("--batchsize", type=int, default=None,
              help="Rows per run (default: the model's fixed batch, else 1).")
@click.option("--loop", "-l", type=int, default=1, show_default=True,
              help="Runs per batch (with --input) or runs in all (without).")
@click.option("--warmup_count", "--warmup-count", type=int, default=1, show_default=True,
              help="Untimed runs per input shape before timing.")
@click.option("--device", "-d", type=int, default=0, show_default=True,
              help="Device id: the NPU for .om, the CUDA device for ORT when it has CUDA (else CPU).")
@click.option("--seq_len", type=int, default=None,
              help="Sequence length of the zero inputs without --input, for dynamic graphs (default 128).")
@click.option("--display_all_summary", type=click.BOOL, default=False, help="Also print H2D/D2H latency lines.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="onnxrt: ONNX Runtime; openvino: OpenVINO (.onnx or IR .xml); auto: openvino for .xml, else onnxrt.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="f32", show_default=True,
              help="--backend openvino: f32 (the fp32 logits), bf16 (where the CPU has it), auto (bf16 if present).")
@click.option("--max_tokens", type=int, default=None,
              help="Dynamic graphs: regroup the samples by real length (where the attention mask ends), "
                   "batches of up to this many padded tokens (--batchsize caps the rows); default: "
                   "ais_bench's batches by length on disk.")
@click.pass_context
@handle_errors
def infer_command(ctx, model, input_, output, output_dirname, outfmt, batchsize, loop, warmup_count, device,
                  seq_len, display_all_summary, backend, precision, max_tokens):
    """Batch offline inference with ais_bench's flags and output layout."""
    if output_dirname is not None and output is None:
        raise UserError("--output_dirname needs --output (as in ais_bench)")
    check_model_path(model)
    flags = dict(output=output, outfmt=outfmt.upper(), batchsize=batchsize, loop=loop,
                 warmup_count=warmup_count, device=device, output_dirname=output_dirname,
                 display_all_summary=display_all_summary)

    if max_tokens is not None and (is_om_model(model) or input_ is None):
        raise UserError("--max_tokens regroups the samples of --input for a dynamic ONNX/IR graph"
                        + ("; an OM's gears fix its shapes" if is_om_model(model) else ""))
    if is_om_model(model):
        sys.exit(run_ais_bench(model=model, input=input_, seq_len=seq_len, **flags))
    flags["runner_factory"] = runner_factory_for(model, backend, precision)
    argv = (ctx.obj or {}).get("argv")
    if input_ is None:
        run_pure(model=model, seq_len=seq_len, argv=argv, **flags)
    else:
        if seq_len is not None:
            raise UserError("--seq_len only shapes the zero inputs; with --input the lengths come from the files")
        # the bar goes to stderr even in a log file: a long run is never silent (rate and ETA)
        run_offline(model=model, input=input_, argv=argv, progress=True, max_tokens=max_tokens, **flags)


def main() -> None:
    # The real command line goes into the summary's "args", as ais_bench records sys.argv.
    infer_command(obj={"argv": list(sys.argv)}, prog_name="python -m infer")
