"""Two runners side by side on the same real sentences (Polygraphy's `run --onnxrt --trt` habit).

python -m convert.compare --model A --model B [--model_dir DIR] [--input_file CONLL] [--sentences N]
                          [--backend_a auto|onnxrt|torch] [--backend_b ...] [--opt_level_a disable|basic|extended|all]
                          [--opt_level_b ...] [--batch_size N] [--atol X]

Each side is an .onnx graph on ONNX Runtime (CPU; graph optimisation `disable` by default, so the
graph runs as written; pick another level to see what ORT's rewrite changes) or a checkpoint folder
on PyTorch (`auto` tells them apart by the path). Both get the same sentences, encoded once with
the tokenizer of `--model_dir` (default: the side that is a checkpoint folder, else the folder the
exporter recorded in a graph), batched in file order and shaped for a graph with fixed inputs. It
prints the largest and the mean absolute logit difference on real tokens, and the share of words
whose label (argmax at the first sub-token) agrees, with the commonest label changes by name.
With `--atol`, a largest difference over it exits 1 with one line on stderr and prints nothing else.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from common.errors import InputFileError, UserError, ValidationError, handle_errors
from common.model_spec import read_model_spec
from common.quiet import quiet_transformers
from common.cli import CONTEXT_SETTINGS, model_dir_option
from runners.base import BaseRunner
from runners.onnxrt import GRAPH_OPTIMIZATION_LEVELS
from runners.torchrt import TorchRunner

from . import check
from .check import CheckResult

BACKENDS = ("auto", "onnxrt", "torch")
DEFAULT_SENTENCES = 100
SHOWN_LABEL_CHANGES = 5


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a model path and how it runs."""

    path: Path
    backend: str  # onnxrt or torch (resolved from auto)
    opt_level: str  # ORT graph optimisation level (onnxrt only)

    def describe(self) -> str:
        if self.backend == "torch":
            return f"{self.path} on PyTorch"
        return f"{self.path} on ONNX Runtime (graph optimisation: {self.opt_level})"

    def runner(self) -> BaseRunner:
        if self.backend == "torch":
            return TorchRunner(self.path)
        return check.graph_runner(self.path, graph_optimization=self.opt_level)


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    labels: dict[int, str]
    result: CheckResult


def resolve_side(path, backend: str = "auto", opt_level: str = check.CHECK_OPTIMIZATION) -> Side:
    """The backend a path runs on: a folder is a checkpoint (torch), a file a graph (onnxrt)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "model does not exist (give an .onnx file or a checkpoint folder)")
    if backend == "auto":
        backend = "torch" if path.is_dir() else "onnxrt"
    if backend == "torch" and not path.is_dir():
        raise InputFileError(path, "is a file; the torch backend runs a checkpoint folder")
    if backend == "onnxrt" and path.is_dir():
        raise InputFileError(path, "is a folder; the onnxrt backend runs an .onnx file")
    return Side(path=path, backend=backend, opt_level=opt_level)


def tokenizer_folder(a: Side, b: Side, model_dir=None) -> Path:
    """`--model_dir`, else the checkpoint side, else the checkpoint recorded in a graph; checked against the graphs."""
    folder = Path(model_dir) if model_dir is not None else None
    for side in (a, b):
        if folder is None and side.backend == "torch":
            folder = side.path
    for side in (a, b):
        if folder is None and side.backend == "onnxrt":
            folder = check.recorded_model_dir(side.path)
    if folder is None:
        raise UserError(f"{a.path}, {b.path}: no tokenizer found (no checkpoint side, and the graphs record no "
                        "checkpoint folder that still exists); pass --model_dir")
    for side in (a, b):
        if side.backend == "onnxrt":
            check.checked_tokenizer_dir(folder, side.path)
    return folder


def _shared_shape(runners: list[BaseRunner]) -> tuple[Optional[int], Optional[int]]:
    """The fixed (batch, sequence) the graphs need, one shape for both; None where free."""
    shapes = [check.fixed_input_shape(r) for r in runners]
    fixed = []
    for axis, what in ((0, "batch size"), (1, "sequence length")):
        values = {shape[axis] for shape in shapes if shape[axis] is not None}
        if len(values) > 1:
            raise ValidationError(f"{runners[0].name} and {runners[1].name} fix different {what}s "
                                  f"({' and '.join(map(str, sorted(values)))}): they cannot take the same batches")
        fixed.append(values.pop() if values else None)
    return fixed[0], fixed[1]


def compare_models(a: Side, b: Side, *, model_dir=None, input_file=None, sentences: int = DEFAULT_SENTENCES,
                   batch_size: int = check.DEFAULT_BATCH) -> Comparison:
    """Run both sides on the same sentences; measure only (the caller holds the result against a tolerance)."""
    folder = tokenizer_folder(a, b, model_dir)
    spec = read_model_spec(folder)
    quiet_transformers()  # no progress bars or load notes around the report
    tokenizer = check.load_tokenizer(folder)
    if input_file is not None:
        words, source = check.read_sentences(input_file, sentences), str(input_file)
        if not words:
            raise InputFileError(input_file, "has no sentences")
    else:
        words, source = check.real_sentences(sentences)
    runner_a, runner_b = a.runner(), b.runner()
    with runner_a, runner_b:  # activated once here for the shapes; compare() keeps them active
        fixed_batch, fixed_seq = _shared_shape([runner_a, runner_b])
        inputs = check.encode_inputs(tokenizer, words, source, batch_size=batch_size, fixed_batch=fixed_batch,
                                     fixed_seq=fixed_seq,
                                     max_len=min(spec.max_positions, check.tokenizer_max_len(tokenizer)))
        result = check.compare(runner_a, runner_b, inputs, atol=None, what=f"{a.path} vs {b.path}")
    return Comparison(a=a, b=b, labels=dict(spec.id2label), result=result)


def report_lines(comparison: Comparison) -> list[str]:
    result, labels = comparison.result, comparison.labels
    lines = [f"A: {comparison.a.describe()}", f"B: {comparison.b.describe()}",
             f"inputs: {result.sentences} sentences, {result.tokens} tokens, {result.words} words ({result.inputs})",
             f"max |diff|: {result.max_abs_diff:.3g}",
             f"mean |diff|: {result.mean_abs_diff:.3g}",
             f"word labels agree: {100 * result.agreement:.2f}% "
             f"({result.words - result.label_mismatches} of {result.words})"]
    if result.label_changes:
        shown = ", ".join(f"{labels.get(got, got)} -> {labels.get(want, want)} {count}"
                          for (got, want), count in result.label_changes[:SHOWN_LABEL_CHANGES])
        lines.append(f"label changes (A -> B): {shown}")
    return lines


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", "models", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Twice: model A, then model B (an .onnx file, or a checkpoint folder).")
@model_dir_option(help="Checkpoint folder for the tokenizer and labels [default: the checkpoint side, else the one "
                   "recorded in a graph].")
@click.option("--input_file", default=None, type=click.Path(path_type=Path),
              help="CoNLL file of sentences [default: CoNLL-2003 test.txt].")
@click.option("--sentences", default=DEFAULT_SENTENCES, show_default=True, type=click.IntRange(1),
              help="First N sentences of the file.")
@click.option("--backend_a", default="auto", show_default=True, type=click.Choice(BACKENDS))
@click.option("--backend_b", default="auto", show_default=True, type=click.Choice(BACKENDS))
@click.option("--opt_level_a", default=check.CHECK_OPTIMIZATION, show_default=True,
              type=click.Choice(GRAPH_OPTIMIZATION_LEVELS), help="ONNX Runtime graph optimisation of A.")
@click.option("--opt_level_b", default=check.CHECK_OPTIMIZATION, show_default=True,
              type=click.Choice(GRAPH_OPTIMIZATION_LEVELS), help="ONNX Runtime graph optimisation of B.")
@click.option("--batch_size", default=check.DEFAULT_BATCH, show_default=True, type=click.IntRange(1),
              help="Rows per batch (a graph with a fixed batch size sets it).")
@click.option("--atol", default=None, type=click.FloatRange(min=0),
              help="Fail (exit 1) when the largest |A - B| logit difference is over this.")
@handle_errors
def main(models, model_dir, input_file, sentences, backend_a, backend_b, opt_level_a, opt_level_b, batch_size, atol):
    """Run two models on the same real sentences and print how far their logits and labels are apart."""
    if len(models) != 2:
        raise UserError(f"--model is given {len(models)} time(s); give it exactly twice (A, then B)")
    a = resolve_side(models[0], backend_a, opt_level_a)
    b = resolve_side(models[1], backend_b, opt_level_b)
    comparison = compare_models(a, b, model_dir=model_dir, input_file=input_file, sentences=sentences,
                                batch_size=batch_size)
    result = comparison.result
    if atol is not None and result.max_abs_diff > atol:
        raise ValidationError(f"{a.path} vs {b.path}: max |diff| {result.max_abs_diff:.3g} over --atol {atol:g} "
                              f"(mean |diff| {result.mean_abs_diff:.3g}, word labels agree "
                              f"{100 * result.agreement:.2f}%, {result.tokens} tokens of {result.sentences} "
                              f"sentences of {result.inputs})")
    for line in report_lines(comparison):
        click.echo(line)


if __name__ == "__main__":
    sys.exit(main())
