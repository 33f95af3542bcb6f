"""Make an ONNX BERT safe for fp16 compilers, and prove it still gives the same logits.

python fix_onnx.py in.onnx out.onnx [--passes attention_mask,clamp_fp16] [--mask_value -10000]
(also `python -m convert.fix ...`)

Runs the named passes of `convert.fix_passes`, says what each changed, then runs the fixed and
the input graph on ONNX Runtime on real sentences: a largest difference over `--atol` exits 1
and writes nothing.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from common.errors import InputFileError, ValidationError, handle_errors
from common.cli import CONTEXT_SETTINGS, model_dir_option

from . import check, onnx_io
from .check import DEFAULT_ATOL, DEFAULT_SENTENCES, CheckResult
from .fix_passes import DEFAULT_MASK_VALUE, PASSES, PassReport, out_of_fp16_constants, resolve_passes, run_passes


@dataclass(frozen=True)
class FixResult:
    output: Path
    reports: tuple[PassReport, ...]
    check: CheckResult | None  # None when nothing changed (the output is a copy of the input)
    seconds: float

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.reports)


def fix_onnx(*, input, output, passes=None, mask_value: float = DEFAULT_MASK_VALUE, model_dir=None,
             atol: float = DEFAULT_ATOL, num_sentences: int = DEFAULT_SENTENCES) -> FixResult:
    """Run `passes` (None: all) on `input`, check against it, write `output` only if the check passes."""
    started = time.perf_counter()
    input, output = Path(input), Path(output)
    resolve_passes(passes)  # an unknown pass name fails before the (possibly large) model is read
    if output.is_dir():
        raise InputFileError(output, "output path is a folder; give the .onnx file to write")
    model = onnx_io.load(input)
    _require_attention(model, input)
    reports = run_passes(model, passes, mask_value=mask_value)
    if passes is None and (left := out_of_fp16_constants(model)):
        raise ValidationError(f"constants still outside fp16 range after the passes: {left[:5]}")
    with onnx_io.staged_output(output) as staged:
        if not any(r.changed for r in reports):
            # Nothing to prove: the output is the input, byte for byte (external data included).
            del model
            _copy_model(input, staged)
            result = None
        else:
            onnx_io.save(model, staged)
            del model
            onnx_io.check_model(staged)
            result = check.check_onnx_against_onnx(staged, input, atol=atol, model_dir=model_dir,
                                                   count=num_sentences,
                                                   what=f"fixed {output.name} vs {input.name}")
    return FixResult(output=output, reports=tuple(reports), check=result, seconds=time.perf_counter() - started)


# Softmax is the eager/SDPA export; the others are what ORT's transformer fusion leaves in its place.
ATTENTION_OPS = ("Softmax", "Attention", "MultiHeadAttention", "PackedAttention")


def _require_attention(model, path: Path) -> None:
    """The passes look for BERT's attention mask; a graph without attention has none ("0 of 0")."""
    counts = onnx_io.op_counts(model)
    if not any(counts.get(op) for op in ATTENTION_OPS):
        raise InputFileError(path, "has no attention (no Softmax or Attention node): not a BERT-family "
                                   "encoder graph, so there is no attention mask to fix")


def _copy_model(source: Path, staged: Path) -> None:
    model = onnx_io.load(source, load_external_data=False)
    locations = {entry.value for init in model.graph.initializer for entry in init.external_data
                 if entry.key == "location"}
    if not locations:
        shutil.copyfile(source, staged)
        return
    # Re-save so that the data file is named after the output, not the input.
    onnx_io.save(onnx_io.load(source), staged)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--passes", default=None,
              help=f"Comma-separated passes to run, in this order: {', '.join(PASSES)} (default: all).")
@click.option("--mask_value", default=DEFAULT_MASK_VALUE, show_default=True, type=float,
              help="Attention-mask fill value that replaces float32's minimum; within fp16's range.")
@model_dir_option(help="Checkpoint whose tokenizer makes the check inputs (default: the one recorded at export).")
@click.option("--atol", default=DEFAULT_ATOL, show_default=True, type=click.FloatRange(min=0),
              help="Largest allowed |fixed - input| logit difference on ONNX Runtime.")
@click.option("--num_sentences", default=DEFAULT_SENTENCES, show_default=True, type=click.IntRange(1))
@handle_errors
def main(passes, **kwargs):
    """Make INPUT fp16-safe for ATC (attention-mask constant and friends) and write OUTPUT."""
    result = fix_onnx(passes=passes.split(",") if passes is not None else None, **kwargs)
    for report in result.reports:
        click.echo(f"[{report.name}] {PASSES[report.name].description}: {report.changed} changed")
        for line in report.lines:
            click.echo(f"    {line}")
    if result.check is None:
        click.echo(f"nothing to change; wrote {result.output} as a copy of the input")
    else:
        click.echo(f"check vs input graph: {result.check.summary()}")
        click.echo(f"wrote {result.output} ({result.changed} constants changed, {result.seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
