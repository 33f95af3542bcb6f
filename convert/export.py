"""HF token-classification checkpoint -> ONNX, validated against PyTorch on real sentences.

python -m convert.export --model_dir DIR --output X.onnx [--opset 14] [--static --batch_size N --seq_len L]

Inputs are named and ordered as `common.model_spec` says (so a model without
`token_type_ids` needs no special case), the output is `logits`, and batch and sequence
axes are dynamic unless `--static`. The exported graph is run on ONNX Runtime against the
PyTorch model on real CoNLL sentences; a difference over `--atol` fails the command.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from common.errors import InputFileError, UserError, ValidationError, handle_errors
from common.model_spec import DYNAMIC_AXES, OUTPUT_NAME, read_model_spec
from common.quiet import quiet_transformers
from common.cli import CONTEXT_SETTINGS, model_dir_option
from runners.torchrt import TorchRunner

from . import check, onnx_io
from .check import DEFAULT_ATOL, DEFAULT_SENTENCES, CheckResult

# 14: well inside what ATC's ONNX parser reads (its operator list targets ONNX 1.12, opsets up to
# 17); below 17 the exporter writes LayerNorm as primitive ops, a pattern ATC fuses itself.
DEFAULT_OPSET = 14

# The classic MatMul -> Mul -> Add(mask) -> Softmax attention. transformers' SDPA path, traced,
# adds a per-layer Where(-inf) and an IsNaN/Where guard after every Softmax: more ops, same numbers.
DEFAULT_ATTENTION = "eager"


@dataclass(frozen=True)
class ExportResult:
    output: Path
    files: tuple[Path, ...]
    input_names: tuple[str, ...]
    input_dims: tuple[tuple, ...]
    opset: int
    check: CheckResult
    seconds: float


def export_onnx(*, model_dir, output, opset: int = DEFAULT_OPSET, static: bool = False,
                batch_size: int | None = None, seq_len: int | None = None, atol: float = DEFAULT_ATOL,
                attn_implementation: str = DEFAULT_ATTENTION, num_sentences: int = DEFAULT_SENTENCES,
                data_dir=None, log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export `model_dir` to `output` and check it against PyTorch; raises ValidationError if they differ.

    `log` gets one line as each slow step starts (loading, exporting, checking).
    """
    started = time.perf_counter()
    spec = read_model_spec(model_dir, weights=True)
    output = Path(output)
    if static and (not batch_size or not seq_len):
        raise UserError("--static needs --batch_size and --seq_len")
    if not static and (batch_size or seq_len):
        raise UserError("--batch_size/--seq_len fix the input shape: they need --static")
    if seq_len and seq_len > spec.max_positions:
        raise UserError(f"--seq_len {seq_len} is over the model's {spec.max_positions} positions")
    if output.exists() and output.is_dir():
        raise InputFileError(output, "output path is a folder")

    import torch  # seconds to import: only after the cheap argument checks above

    log(f"loading {spec.model_dir} with PyTorch ...")
    model, tokenizer = _load(spec, attn_implementation)
    names = list(spec.input_names)
    sentences, source = check.real_sentences(max(num_sentences, 2), data_dir)
    max_len = min(spec.max_positions, check.tokenizer_max_len(tokenizer))
    if static:
        dummy_inputs = check.encode_inputs(tokenizer, sentences[:batch_size], source, fixed_batch=batch_size,
                                           fixed_seq=seq_len)
        dynamic_axes = None
    else:
        # Two sentences of different lengths: a padded batch of 2, so nothing specialises to 1.
        dummy_inputs = check.encode_inputs(tokenizer, sentences[:2], source, batch_size=2, max_len=max_len)
        dynamic_axes = {name: DYNAMIC_AXES[name] for name in names + [OUTPUT_NAME]}
    dummy = dummy_inputs.feed(dummy_inputs.batches[0], names)

    with onnx_io.staged_output(output) as staged:
        raw = staged.parent / "torch_export.onnx"
        log(f"exporting to ONNX (opset {opset}, {'static' if static else 'dynamic'} shapes) ...")
        _torch_export(model, names, dummy, raw, opset=opset, dynamic_axes=dynamic_axes)
        graph = onnx_io.load(raw)
        _check_interface(graph, names, static=static)
        dims = tuple(tuple(d) for _, d in onnx_io.graph_inputs(graph))
        onnx_io.set_metadata(graph, {
            "source_model_dir": str(Path(spec.model_dir).resolve()),
            "model_type": spec.model_type,
            "id2label": json.dumps({str(k): v for k, v in sorted(spec.id2label.items())}, ensure_ascii=False),
            "input_names": ",".join(names),
            "exporter": f"torch {torch.__version__} (TorchScript), transformers {_transformers_version()}, "
                        f"attention {attn_implementation}",
        })
        for leftover in staged.parent.iterdir():  # the raw export (and its data file, if any)
            leftover.unlink()
        files = onnx_io.save(graph, staged)
        del graph
        onnx_io.check_model(staged)
        log(f"checking {output.name} against PyTorch on {min(num_sentences, len(sentences))} real sentences ...")
        inputs = check.encode_inputs(tokenizer, sentences[:num_sentences], source,
                                     batch_size=batch_size or check.DEFAULT_BATCH, fixed_batch=batch_size if static
                                     else None, fixed_seq=seq_len, max_len=max_len)
        # compare() activates and releases both runners: the session is closed before the file moves
        result = check.compare(check.graph_runner(staged), TorchRunner.from_model(model, spec), inputs,
                               atol=atol, what=f"{output.name} vs PyTorch")
    return ExportResult(output=output, files=tuple(output.parent / f.name for f in files),
                        input_names=tuple(names), input_dims=dims, opset=opset, check=result,
                        seconds=time.perf_counter() - started)


def _load(spec, attn_implementation: str):
    # torch and transformers take seconds to import: loaded once the cheap checks have passed
    import torch
    from transformers import AutoModelForTokenClassification

    quiet_transformers()  # here, not in main(): the import is slow and must come after the checks
    tokenizer = check.load_tokenizer(spec.model_dir)
    try:
        # dtype=float32 also casts a checkpoint stored as float16 (the default model is).
        model = AutoModelForTokenClassification.from_pretrained(
            str(spec.model_dir), dtype=torch.float32, attn_implementation=attn_implementation,
            use_safetensors=True)
    except (OSError, ValueError) as err:
        raise InputFileError(spec.model_dir, f"cannot load the checkpoint ({onnx_io.first_line(err)})") from None
    return model.float().eval(), tokenizer


def _torch_export(model, names, dummy, path: Path, *, opset: int, dynamic_axes) -> None:
    import torch  # already loaded by _load(); deferred for the same reason

    # Positional inputs in spec order -> logits only (the graph has one output). Set on the
    # instance rather than wrapping the model in another module, so that node and weight names
    # stay the checkpoint's own ("bert.encoder.layer.0...") instead of gaining a wrapper prefix.
    forward = model.forward
    model.forward = lambda *inputs: forward(**dict(zip(names, inputs)), return_dict=True).logits
    args = tuple(torch.from_numpy(dummy[name]) for name in names)
    with warnings.catch_warnings():
        # Expected and harmless here: the legacy-exporter notice (chosen on purpose, the dynamo
        # exporter needs onnxscript), tracer notes on shape-dependent Python branches that are
        # constant for an encoder, and the advanced-indexing note (indices are never negative).
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(path), input_names=names, output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
        finally:
            del model.forward


def _check_interface(graph, names, *, static: bool) -> None:
    inputs = onnx_io.graph_inputs(graph)
    if [n for n, _ in inputs] != names:
        raise ValidationError(f"exported inputs {[n for n, _ in inputs]} != expected {names}")
    outputs = onnx_io.graph_outputs(graph)
    if [n for n, _ in outputs] != [OUTPUT_NAME]:
        raise ValidationError(f"exported outputs {[n for n, _ in outputs]} != ['{OUTPUT_NAME}']")
    for name, dims in inputs + outputs:
        fixed = [isinstance(d, int) for d in dims[:2]]
        if static != all(fixed) or (not static and any(fixed)):
            raise ValidationError(f"{name} has dims {dims}; expected {'fixed' if static else 'dynamic'} "
                                  "batch and sequence")


def _transformers_version() -> str:
    import transformers  # already loaded by _load(); deferred for the same reason

    return transformers.__version__


@click.command(context_settings=CONTEXT_SETTINGS)
@model_dir_option(required=True, help="Hugging Face checkpoint folder.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="ONNX file to write.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=click.IntRange(11, 20))
@click.option("--static", is_flag=True, help="Fixed batch_size x seq_len inputs instead of dynamic axes.")
@click.option("--batch_size", type=click.IntRange(1), default=None, help="With --static.")
@click.option("--seq_len", type=click.IntRange(1), default=None, help="With --static.")
@click.option("--atol", default=DEFAULT_ATOL, show_default=True, type=click.FloatRange(min=0),
              help="Largest allowed |ONNX - PyTorch| logit difference.")
@click.option("--num_sentences", default=DEFAULT_SENTENCES, show_default=True, type=click.IntRange(1),
              help="Real CoNLL test sentences used for the check.")
@click.option("--attn_implementation", default=DEFAULT_ATTENTION, show_default=True,
              type=click.Choice(["eager", "sdpa"]),
              help="transformers attention code to trace; eager gives the classic pattern ATC fuses.")
@handle_errors
def main(**kwargs):
    """Export a token-classification checkpoint to ONNX and check it against PyTorch."""
    result = export_onnx(**kwargs, log=lambda message: click.echo(message, err=True))
    dims = "; ".join(f"{n}{list(d)}" for n, d in zip(result.input_names, result.input_dims))
    click.echo(f"wrote {', '.join(str(f) for f in result.files)} (opset {result.opset}; inputs {dims}; "
               f"output {OUTPUT_NAME})")
    click.echo(f"check vs PyTorch: {result.check.summary()}")
    click.echo(f"largest abs difference: {result.check.max_abs_diff:.3g} ({result.seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
