"""ONNX Runtime's transformer optimizer as a convert step: fuse, count, check.

python -m convert.optimize --input X.onnx --output Y.onnx [--model_dir DIR] [--num_heads H --hidden_size D]
                           [--allow-partial] [--atol 1e-4]

Runs `onnxruntime.transformers.optimizer.optimize_model` (model_type bert, ORT's own graph
optimisation off, so the written graph holds only the Python fusions and loads on any ORT
build), prints how many fused operators it made (EmbedLayerNormalization, Attention,
BiasGelu, SkipLayerNormalization, ...), and checks the fused graph against the input graph
with `convert.check.check_onnx_against_onnx` on real sentences. If Attention did not fuse in
every layer (the classic cause: an export with SDPA attention instead of eager), the command
fails and writes nothing, unless `--allow-partial`.

Heads and hidden size come from `--num_heads/--hidden_size`, else from the checkpoint's
config.json (`--model_dir`, or the folder the exporter recorded in the graph's metadata),
else from the graph itself (the hidden size is the word-embedding width, the heads the
`(.., .., heads, head_size)` Reshape of the attention).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click

from common.errors import UserError, ValidationError, handle_errors
from common.model_spec import encoder_size
from common.cli import CONTEXT_SETTINGS, model_dir_option

from . import check, onnx_io
from .check import DEFAULT_ATOL, DEFAULT_SENTENCES, CheckResult

# The fused operators worth reporting for an encoder (ORT's statistics list more, all zero for BERT).
REPORTED_FUSIONS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "BiasGelu", "Gelu", "FastGelu",
                    "SkipLayerNormalization", "LayerNormalization")


@dataclass(frozen=True)
class ModelDims:
    num_heads: int
    hidden_size: int
    num_layers: int
    source: str  # where the numbers came from, for the report


@dataclass(frozen=True)
class OptimizeResult:
    output: Path
    dims: ModelDims
    fused: dict  # fused operator -> count (only the non-zero ones of REPORTED_FUSIONS, in that order)
    ops_before: Counter
    ops_after: Counter
    check: CheckResult
    seconds: float
    warnings: list = field(default_factory=list)

    @property
    def attention_complete(self) -> bool:
        return self.fused.get("Attention", 0) + self.fused.get("MultiHeadAttention", 0) >= self.dims.num_layers


# ---------------------------------------------------------------- model dimensions

def _config_for(model, model_dir) -> tuple[dict | None, str]:
    if model_dir is not None:
        config = Path(model_dir) / "config.json"
        if not config.is_file():
            raise UserError(f"{model_dir}: no config.json there (--model_dir is the checkpoint folder)")
    else:
        recorded = onnx_io.metadata(model).get("source_model_dir")
        config = Path(recorded) / "config.json" if recorded else None
        if config is None or not config.is_file():
            return None, ""
    try:
        return json.loads(config.read_text(encoding="utf-8")), str(config)
    except ValueError:
        raise UserError(f"{config}: not valid JSON") from None


def _constants(model) -> dict[str, "object"]:
    from onnx import numpy_helper  # onnx and onnxruntime are heavy: imported where used, `--help` stays instant

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer
              if len(init.dims) <= 1 and (not init.dims or init.dims[0] <= 8)}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def dims_from_graph(model) -> tuple[int | None, int | None, int]:
    """(heads, hidden, layers) read off an unfused BERT graph; None where the graph does not say."""
    inits = {init.name: init for init in model.graph.initializer}
    hidden = None
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == "input_ids" and node.input[0] in inits:
            hidden = int(inits[node.input[0]].dims[1])
            break
    layers = sum(1 for node in model.graph.node if node.op_type == "Softmax")
    heads = None
    if hidden:
        constants = _constants(model)
        for node in model.graph.node:
            if node.op_type != "Reshape" or node.input[1] not in constants:
                continue
            shape = [int(x) for x in constants[node.input[1]].reshape(-1)]
            if len(shape) == 4 and shape[2] > 0 and shape[3] > 0 and shape[2] * shape[3] == hidden:
                heads = shape[2]
                break
    return heads, hidden, layers


def model_dims(model, *, model_dir=None, num_heads: int | None = None, hidden_size: int | None = None) -> ModelDims:
    """Heads, hidden size and layer count: flags, else the checkpoint config, else the graph."""
    config, config_path = _config_for(model, model_dir)
    g_heads, g_hidden, g_layers = dims_from_graph(model)
    sources = []
    if num_heads:
        sources.append("--num_heads")
    elif config and encoder_size(config, "heads"):
        num_heads = encoder_size(config, "heads")
        sources.append(f"num_heads from {config_path}")
    elif g_heads:
        num_heads = g_heads
        sources.append("num_heads from the graph's attention Reshape")
    if hidden_size:
        sources.append("--hidden_size")
    elif config and encoder_size(config, "hidden"):
        hidden_size = encoder_size(config, "hidden")
        sources.append(f"hidden_size from {config_path}")
    elif g_hidden:
        hidden_size = g_hidden
        sources.append("hidden_size from the word embeddings")
    if not num_heads:
        num_heads = 0  # ORT's optimizer detects heads from the attention's Reshape shapes
        sources.append("num_heads detected by the optimizer")
    if not hidden_size:
        raise UserError("cannot tell the hidden size from the graph; "
                        "pass --model_dir (the checkpoint) or --num_heads and --hidden_size")
    if num_heads and hidden_size % num_heads:
        raise UserError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
    layers = (encoder_size(config, "layers") if config else None) or g_layers
    if not layers:
        raise UserError("cannot tell the number of layers: the graph has no Softmax and no config says")
    return ModelDims(num_heads=num_heads, hidden_size=hidden_size, num_layers=layers, source="; ".join(sources))


def _heads_from_fused(model, dims: ModelDims) -> ModelDims:
    for node in model.graph.node:
        if node.op_type in ("Attention", "MultiHeadAttention"):
            for attr in node.attribute:
                if attr.name == "num_heads":
                    return ModelDims(int(attr.i), dims.hidden_size, dims.num_layers, dims.source)
    return dims


# ---------------------------------------------------------------- the step

def fused_counts(optimized) -> dict:
    """Non-zero fused-operator counts of an `OnnxModel` from the optimizer, in REPORTED_FUSIONS order."""
    stats = optimized.get_fused_operator_statistics()
    return {op: int(stats.get(op, 0)) for op in REPORTED_FUSIONS if stats.get(op, 0)}


def optimize_onnx(*, input, output, model_dir=None, num_heads: int | None = None, hidden_size: int | None = None,
                  allow_partial: bool = False, atol: float = DEFAULT_ATOL,
                  num_sentences: int = DEFAULT_SENTENCES) -> OptimizeResult:
    """Fuse `input` with ORT's BERT optimizer, check it against `input`, write `output`.

    Raises ValidationError (and writes nothing) when Attention fused in fewer layers than the
    model has and `allow_partial` is false, or when the fused graph's logits differ by more than `atol`.
    """
    # onnxruntime's transformer tools take seconds to import: only this step needs them
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    started = time.perf_counter()
    input, output = Path(input), Path(output)
    if input.resolve() == output.resolve():
        raise UserError("--output must differ from --input (the input is the reference of the check)")
    model = onnx_io.load(input)
    dims = model_dims(model, model_dir=model_dir, num_heads=num_heads, hidden_size=hidden_size)
    before = onnx_io.op_counts(model)

    options = FusionOptions("bert")
    # ORT's fusion logs every pattern it tries at WARNING; keep the command's output to our table.
    fusion_logger = logging.getLogger("onnxruntime.transformers")
    level = fusion_logger.level
    fusion_logger.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(model, model_type="bert", num_heads=dims.num_heads, hidden_size=dims.hidden_size,
                                   optimization_options=options, opt_level=0, use_gpu=False)
    except Exception as err:  # the optimizer raises plain exceptions on graphs it cannot walk
        raise ValidationError(f"{input}: ONNX Runtime's transformer optimizer failed "
                              f"({type(err).__name__}: {err})") from None
    finally:
        fusion_logger.setLevel(level)
    fused = fused_counts(optimized)
    optimized.topological_sort()
    result_model = optimized.model
    if not any(o.domain == "com.microsoft" for o in result_model.opset_import) and any(
            node.domain == "com.microsoft" for node in result_model.graph.node):
        result_model.opset_import.add(domain="com.microsoft", version=1)  # the fused ops' domain
    if not dims.num_heads:
        dims = _heads_from_fused(result_model, dims)
    after = onnx_io.op_counts(result_model)
    attention = fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0)
    warnings = []
    if attention < dims.num_layers:
        message = (f"Attention fused in {attention} of {dims.num_layers} layers (fused: "
                   f"{', '.join(f'{k} {v}' for k, v in fused.items()) or 'nothing'}); an export with "
                   "attn_implementation='eager' (convert.export's default) fuses fully")
        if not allow_partial:
            raise ValidationError(message + "; --allow-partial writes the partly fused graph anyway")
        warnings.append(message)

    onnx_io.set_metadata(result_model, {
        "optimizer": f"onnxruntime.transformers.optimizer (onnxruntime {_ort_version()}), model_type bert, "
                     f"num_heads {dims.num_heads}, hidden_size {dims.hidden_size}",
        "fused_operators": json.dumps(fused),
    })
    with onnx_io.staged_output(output) as staged:
        onnx_io.save(result_model, staged)
        del result_model, optimized, model
        # No onnx.checker here: the optimizer writes ORT's contrib ops, and (for a partly fused graph)
        # LayerNormalization into an opset-14 graph, which ORT runs but the checker rejects. The
        # equivalence check below loads and runs the graph on ORT, the runtime it is meant for.
        result = check.check_onnx_against_onnx(staged, input, atol=atol, model_dir=model_dir, count=num_sentences,
                                               what=f"fused {output.name} vs {input.name}")
    return OptimizeResult(output=output, dims=dims, fused=fused, ops_before=before, ops_after=after, check=result,
                          seconds=time.perf_counter() - started, warnings=warnings)


def _ort_version() -> str:
    import onnxruntime  # heavy: imported where used (see optimize_onnx)

    return onnxruntime.__version__


def format_fused_table(result: OptimizeResult) -> str:
    width = max(len(op) for op in REPORTED_FUSIONS)
    layers = result.dims.num_layers
    expected = {"EmbedLayerNormalization": 1, "Attention": layers, "BiasGelu": layers,
                "SkipLayerNormalization": 2 * layers}
    lines = [f"{'fused operator':<{width}}  {'count':>5}  {'expected':>8}"]
    for op in REPORTED_FUSIONS:
        count = result.fused.get(op, 0)
        if count or op in expected:
            want = expected.get(op)
            lines.append(f"{op:<{width}}  {count:>5}  {want if want is not None else '':>8}")
    return "\n".join(lines)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--input", "input", required=True, type=click.Path(path_type=Path), help="ONNX model from convert.export.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Fused ONNX model to write.")
@model_dir_option(help="Checkpoint folder (heads, hidden size, tokenizer for the check); default: the one recorded at export.")
@click.option("--num_heads", default=None, type=click.IntRange(1), help="Attention heads (default: from the config).")
@click.option("--hidden_size", default=None, type=click.IntRange(1), help="Hidden size (default: from the config).")
@click.option("--allow-partial", "--allow_partial", "allow_partial", is_flag=True,
              help="Write the graph even if Attention did not fuse in every layer.")
@click.option("--atol", default=DEFAULT_ATOL, show_default=True, type=float,
              help="Largest allowed |fused - input| logit difference on ONNX Runtime.")
@click.option("--num_sentences", default=DEFAULT_SENTENCES, show_default=True, type=click.IntRange(1))
@handle_errors
def main(**kwargs):
    """Fuse a BERT-family ONNX graph with ONNX Runtime's transformer optimizer and check it."""
    result = optimize_onnx(**kwargs)
    click.echo(f"model: {result.dims.num_layers} layers, {result.dims.num_heads} heads, hidden "
               f"{result.dims.hidden_size} ({result.dims.source})")
    click.echo(format_fused_table(result))
    click.echo(f"ops: {sum(result.ops_before.values())} -> {sum(result.ops_after.values())} nodes")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"check vs input graph: {result.check.summary()}")
    click.echo(f"wrote {result.output} ({result.seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
