"""onnxsim with every input fixed to batch_size x seq_len, checked against the input graph.

python -m convert.simplify --input X.onnx --output Y.onnx --batch_size N --seq_len L

onnxsim's own check feeds random data, and random int64 token ids index outside the
embedding table, so it is switched off; our checker runs both graphs on real sentences instead.
"""
from __future__ import annotations

import inspect
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from common.errors import UserError, handle_errors
from common.cli import CONTEXT_SETTINGS, model_dir_option

from . import check, onnx_io
from .check import DEFAULT_ATOL, CheckResult


@dataclass(frozen=True)
class SimplifyResult:
    output: Path
    shapes: dict[str, list[int]]
    ops_before: Counter
    ops_after: Counter
    check: CheckResult


def shape_keyword(simplify_fn) -> str:
    """The name onnxsim gives its input-shape argument: `overwrite_input_shapes` (>= 0.4), else `input_shapes`."""
    params = inspect.signature(simplify_fn).parameters
    for name in ("overwrite_input_shapes", "input_shapes"):
        if name in params:
            return name
    raise UserError("this onnxsim has neither overwrite_input_shapes nor input_shapes; install onnxsim>=0.4")


def simplify_onnx(*, input, output, batch_size: int, seq_len: int, atol: float = DEFAULT_ATOL,
                  model_dir=None) -> SimplifyResult:
    """Fix every input to (batch_size, seq_len), simplify, check against `input`, write `output`."""
    import onnxsim  # seconds to import (and optional on some machines): only this step needs it

    model = onnx_io.load(input)
    inputs = onnx_io.graph_inputs(model)
    for name, dims in inputs:
        if len(dims) != 2:
            raise UserError(f"{input}: input {name!r} has dims {dims}, expected (batch, sequence)")
        for dim, want in zip(dims, (batch_size, seq_len)):
            if isinstance(dim, int) and dim != want:
                raise UserError(f"{input}: input {name!r} is fixed at {dims}; cannot make it {[batch_size, seq_len]}")
    shapes = {name: [batch_size, seq_len] for name, _ in inputs}
    before = onnx_io.op_counts(model)
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, **{shape_keyword(onnxsim.simplify): shapes})
    except Exception as err:  # onnxsim raises plain RuntimeError/ValueError on graphs it cannot handle
        raise UserError(f"onnxsim failed on {input}: {type(err).__name__}: {err}") from None
    if not ok:
        raise UserError(f"onnxsim could not validate the simplified {input}")
    del model
    after = onnx_io.op_counts(simplified)
    with onnx_io.staged_output(output) as staged:
        onnx_io.save(simplified, staged)
        del simplified
        result = check.check_onnx_against_onnx(staged, input, atol=atol, model_dir=model_dir,
                                               what=f"simplified {Path(output).name} vs {Path(input).name}")
    return SimplifyResult(output=Path(output), shapes=shapes, ops_before=before, ops_after=after, check=result)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--input", "input", required=True, type=click.Path(path_type=Path), help="ONNX model to simplify.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Simplified ONNX to write.")
@click.option("--batch_size", required=True, type=click.IntRange(1))
@click.option("--seq_len", required=True, type=click.IntRange(1))
@click.option("--atol", default=DEFAULT_ATOL, show_default=True, type=click.FloatRange(min=0))
@model_dir_option(help="Checkpoint whose tokenizer makes the check inputs (default: the one recorded at export).")
@handle_errors
def main(**kwargs):
    """Simplify an ONNX model with fixed input shapes (onnxsim) and check it against the input."""
    result = simplify_onnx(**kwargs)
    click.echo(onnx_io.format_op_table(result.ops_before, result.ops_after))
    shapes = "; ".join(f"{n}:{','.join(map(str, s))}" for n, s in result.shapes.items())
    click.echo(f"wrote {result.output} (inputs {shapes})")
    click.echo(f"check vs input graph: {result.check.summary()}")


if __name__ == "__main__":
    sys.exit(main())
