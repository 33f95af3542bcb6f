"""INT8 with onnxruntime.quantization: dynamic, or static QDQ calibrated on real training sentences.

python -m convert.quantize --input Y.onnx --output Z.onnx --mode dynamic
python -m convert.quantize --input Y.onnx --output Z.onnx --mode static [--calib_file train.txt --calib_sentences 300]

Best fed the fused graph of `convert.optimize` (its Attention nodes then become QAttention).

- dynamic: weights int8 (per output channel by default), activations quantized at run time
  (uint8, range of each call). MatMul -> MatMulInteger, ORT fuses it to DynamicQuantizeMatMul;
  Attention -> QAttention. On CPUs with AVX512-VNNI / AVX-VNNI these run on the int8 dot-product units.
- static: QDQ with activation ranges calibrated once on `--calib_sentences` training sentences
  (a fixed-seed sample, fed one sentence per call so padding never enters a range; MinMax, as
  ORT's histogram calibrators need equal shapes in every call). ORT's own
  symbolic shape inference runs first, because onnx's cannot type the outputs of the fused
  contrib ops and the calibrator would then silently leave every activation float. MatMul
  outputs stay float (`OpTypesToExcludeOutputQuantization`): ORT fuses Q -> DQ -> MatMul into
  MatMulIntegerToFloat, and BiasGelu / SkipLayerNormalization keep float inputs. QDQ has no
  form for the fused Attention node, so `--attention dynamic` (default) quantizes it as in the
  dynamic mode; `--attention float` keeps it float (in either mode).

Kept float in both modes: the classifier (the last MatMul before `logits`: 9 outputs, cheap, and
the logits are what is scored), the embeddings (Gather), every LayerNorm, Softmax and GELU, plus
any node named in `--keep_float`. The result is checked against the input graph on real sentences
(share of word labels that agree; below `--min_agreement` fails and writes nothing), and with
`--eval_file` (default: CoNLL valid.txt) the entity F1 of both graphs is reported with their sizes.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import click

from common.errors import UserError, ValidationError, handle_errors
from common.paths import conll_dir
from common.quiet import quiet_root_logging
from runners.onnxrt import OrtRunner
from common.model_spec import ModelSpec
from common.cli import CONTEXT_SETTINGS, model_dir_option
from preprocess.conll import read_conll

from . import onnx_io
from .check import checked_tokenizer_dir, compare, load_tokenizer, encode_inputs, graph_runner, one_row_feeds, real_sentences
from .accuracy import CHECK_POLICY, DEFAULT_MAX_F1_DROP, DEFAULT_SEED, F1Check, f1_check, gate, sample_sentences
from .quantize_nncf import quantize_nncf, summary_lines

MODES = ("dynamic", "static")
ATTENTION_CHOICES = ("dynamic", "float")
DEFAULT_CALIB_SENTENCES = 300
DEFAULT_CHECK_SENTENCES = 200
DEFAULT_MIN_AGREEMENT = 0.97


@dataclass(frozen=True)
class QuantizeResult:
    output: Path
    mode: str
    settings: dict
    ops_before: Counter
    ops_after: Counter
    kept_float: tuple[str, ...]
    size_input_mb: float
    size_output_mb: float
    agreement: float  # share of word labels equal to the input graph's, on real sentences
    agreement_words: int
    accuracy: Optional[F1Check]
    seconds: float


# ---------------------------------------------------------------- graph facts

def classifier_nodes(model) -> list[str]:
    """The MatMul/Gemm nodes that produce the graph output through Add/Identity only (the token classifier)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found = []
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type in ("Add", "Identity", "Reshape"):
            # follow the non-constant input
            inits = {i.name for i in model.graph.initializer}
            nxt = [i for i in node.input if i in producers and i not in inits]
            node = producers.get(nxt[0]) if nxt else None
        if node is not None and node.op_type in ("MatMul", "Gemm"):
            found.append(node.name)
    return found


def _labels_of(model, model_dir) -> tuple[dict[int, str], Optional[Path]]:
    meta = onnx_io.metadata(model)
    folder = Path(model_dir) if model_dir else (Path(meta["source_model_dir"]) if meta.get("source_model_dir") else None)
    if "id2label" in meta:
        id2label = {int(k): v for k, v in json.loads(meta["id2label"]).items()}
    elif folder is not None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        id2label = {int(k): v for k, v in config["id2label"].items()}
    else:
        id2label = {}
    if folder is not None and not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()):
        if model_dir:
            raise UserError(f"{model_dir}: no tokenizer there")
        folder = None
    return id2label, folder


def _spec_for_check(model_dir, tok_dir, input_names, id2label) -> ModelSpec:
    """The graph's inputs and labels as a ModelSpec, for the F1 gate (the graph, not a folder, is checked)."""
    return ModelSpec(model_dir=Path(model_dir or tok_dir), input_names=tuple(input_names), id2label=dict(id2label),
                     label2id={label: i for i, label in id2label.items()}, model_type="graph", max_positions=512)


# ---------------------------------------------------------------- calibration

class SentenceReader:
    """onnxruntime.quantization's CalibrationDataReader over real sentences, one unpadded sentence per call."""

    def __init__(self, tokenizer, sentences, input_names, max_len: int = 512):
        self._feeds = one_row_feeds(tokenizer, sentences, input_names, max_len=max_len)
        self._iter = iter(self._feeds)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self._feeds)

    def __len__(self):
        return len(self._feeds)


# ---------------------------------------------------------------- the step

def quantize_onnx(*, input, output, mode: str = "dynamic", calib_file=None,
                  calib_sentences: int = DEFAULT_CALIB_SENTENCES,
                  per_channel: bool = True, reduce_range: bool = False, attention: str = "dynamic",
                  keep_float: Sequence[str] = (), model_dir=None, eval_file=None,
                  check_sentences: int = DEFAULT_CHECK_SENTENCES, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                  max_f1_drop: float = DEFAULT_MAX_F1_DROP, seed: int = DEFAULT_SEED) -> QuantizeResult:
    """Quantize `input` to int8 (see the module docstring); check it; write `output` only if the check passes."""
    # onnx, onnxruntime and transformers take seconds to import: only the quantizing itself needs them
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    started = time.perf_counter()
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    if attention not in ATTENTION_CHOICES:
        raise UserError(f"--attention {attention!r}: use one of {', '.join(ATTENTION_CHOICES)}")
    if mode == "dynamic" and calib_file is not None:
        raise UserError("--calib_file is for --mode static; dynamic quantization needs no calibration")
    input, output = Path(input), Path(output)
    if input.resolve() == output.resolve():
        raise UserError("--output must differ from --input (the input is the reference of the check)")
    model = onnx_io.load(input)
    id2label, tok_dir = _labels_of(model, model_dir)
    if tok_dir is None:
        raise UserError(f"{input}: no tokenizer found for the check (the graph names no checkpoint); pass --model_dir")
    input_names = [name for name, _ in onnx_io.graph_inputs(model)]
    names = {node.name for node in model.graph.node}
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        raise UserError(f"--keep_float: no node named {unknown[0]!r} in {input}")
    kept = tuple(dict.fromkeys([*classifier_nodes(model), *keep_float]))
    before = onnx_io.op_counts(model)
    has_attention = before.get("Attention", 0) > 0
    tokenizer = load_tokenizer(checked_tokenizer_dir(tok_dir, input))
    settings = {"mode": mode, "weights": "int8 symmetric, " + ("per channel" if per_channel else "per tensor"),
                "reduce_range": reduce_range}
    with onnx_io.staged_output(output) as staged:
        # the quantizer logs a pre-processing hint and per-tensor notes at WARNING; our summary says what matters
        with quiet_root_logging():
            if mode == "dynamic":
                ops = ["MatMul", "Attention"] if has_attention and attention == "dynamic" else ["MatMul"]
                settings.update(activations="uint8, dynamic (per call)", op_types=ops,
                                attention=attention if has_attention else None)
                quantize_dynamic(model, staged, op_types_to_quantize=ops, per_channel=per_channel,
                                 reduce_range=reduce_range, weight_type=QuantType.QInt8, nodes_to_exclude=list(kept),
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                                "MatMulConstBOnly": True})
            else:
                from onnxruntime.quantization import CalibrationMethod
                from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

                calib_path = Path(calib_file) if calib_file else conll_dir() / "train.txt"
                reader = SentenceReader(tokenizer, sample_sentences(calib_path, calib_sentences, seed), input_names)
                typed = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
                settings.update(activations=f"uint8, static (calibrated: MinMax, {len(reader)} sentences "
                                            f"of {calib_path.name}, seed {seed})",
                                op_types=["MatMul"], format="QDQ", attention=attention if has_attention else None)
                calibrated = staged.parent / "static_qdq.onnx"
                quantize_static(typed, calibrated, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                                per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=list(kept),
                                calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"MatMulConstBOnly": True,
                                               "OpTypesToExcludeOutputQuantization": ["MatMul"]})
                if has_attention and attention == "dynamic":
                    quantize_dynamic(calibrated, staged, op_types_to_quantize=["Attention"], per_channel=per_channel,
                                     reduce_range=reduce_range, weight_type=QuantType.QInt8,
                                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
                    calibrated.unlink()
                else:
                    calibrated.replace(staged)
                for leftover in staged.parent.glob("*augmented*"):
                    leftover.unlink()
        quantized = onnx_io.load(staged)
        onnx_io.set_metadata(quantized, {"quantization": json.dumps(settings), "kept_float": ",".join(kept)})
        after = onnx_io.op_counts(quantized)
        onnx_io.save(quantized, staged)
        del quantized
        agreement, words = label_agreement(staged, input, tokenizer=tokenizer, count=check_sentences)
        if agreement < min_agreement:
            raise ValidationError(f"{output.name}: only {100 * agreement:.2f}% of {words} word labels agree with "
                                  f"{input.name} (--min_agreement {100 * min_agreement:.1f}%)")
        accuracy = None
        if eval_file is not None:
            sentences = read_conll(eval_file)
            spec = _spec_for_check(model_dir, tok_dir, input_names, id2label)
            accuracy = f1_check(lambda: OrtRunner.from_path(staged, providers=["CPUExecutionProvider"]),
                                lambda: OrtRunner.from_path(input, providers=["CPUExecutionProvider"]),
                                sentences=sentences, source=str(eval_file), tokenizer=tokenizer, spec=spec)
            gate(accuracy, max_f1_drop, output.name)
    return QuantizeResult(output=output, mode=mode, settings=settings, ops_before=before, ops_after=after,
                          kept_float=kept, size_input_mb=_size_mb(input), size_output_mb=_size_mb(output),
                          agreement=agreement, agreement_words=words, accuracy=accuracy,
                          seconds=time.perf_counter() - started)


def _size_mb(path: Path) -> float:
    total = path.stat().st_size
    data = path.parent / (path.name + ".data")
    if data.is_file():
        total += data.stat().st_size
    return total / 2**20


def label_agreement(candidate, reference, *, tokenizer, count: int = DEFAULT_CHECK_SENTENCES):
    """Share of word labels (argmax at each word's first sub-token) two graphs agree on, over real sentences.

    The shared checker's runners (graph optimisation off) on the shared encoder's batches; only measured
    here, the caller holds it against --min_agreement."""
    sentences, source = real_sentences(count)
    inputs = encode_inputs(tokenizer, sentences, source, batch_size=CHECK_POLICY.max_rows)
    result = compare(graph_runner(candidate), graph_runner(reference), inputs, atol=None,
                     what=f"{Path(candidate).name} vs {Path(reference).name}")
    return result.agreement, result.words


# ---------------------------------------------------------------- command

def _default_eval_file() -> Optional[Path]:
    path = conll_dir() / "valid.txt"
    return path if path.is_file() else None


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--input", "input", required=True, type=click.Path(path_type=Path),
              help="ONNX model (best: the fused graph from convert.optimize).")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="INT8 ONNX model to write.")
@click.option("--mode", type=click.Choice(MODES), default="dynamic", show_default=True)
@click.option("--calib_file", type=click.Path(path_type=Path), default=None,
              help="CoNLL file of calibration sentences for --mode static [default: CoNLL-2003 train.txt].")
@click.option("--calib_sentences", type=click.IntRange(1), default=DEFAULT_CALIB_SENTENCES, show_default=True,
              help="Sentences sampled (fixed seed) from --calib_file.")
@click.option("--per_channel/--per_tensor", default=True, show_default=True, help="Weight scales per output channel.")
@click.option("--reduce_range", is_flag=True,
              help="7-bit weights: only for CPUs without VNNI, where u8s8 products can saturate.")
@click.option("--attention", type=click.Choice(ATTENTION_CHOICES), default="dynamic", show_default=True,
              help="The fused Attention nodes as QAttention (dynamic activations, in both modes), or kept float.")
@click.option("--keep_float", default="", help="Comma-separated node names to keep float (the classifier always is).")
@model_dir_option(help="Checkpoint folder for the tokenizer [default: the one recorded at export].")
@click.option("--eval_file", type=click.Path(path_type=Path), default=None,
              help="CoNLL file to report entity F1 of input and output on [default: CoNLL-2003 valid.txt].")
@click.option("--no_eval", is_flag=True, help="Skip the F1 report.")
@click.option("--min_agreement", type=click.FloatRange(0, 1), default=DEFAULT_MIN_AGREEMENT, show_default=True,
              help="Least share of word labels that must agree with the input graph (200 test sentences).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the calibration sample.")
@click.option("--tool", type=click.Choice(("ort", "nncf")), default="ort", show_default=True,
              help="ort: onnxruntime.quantization, writes ONNX; nncf: NNCF post-training INT8 "
                   "(convert.quantize_nncf), writes an OpenVINO IR (.xml + .bin).")
@click.option("--max_f1_drop", type=float, default=DEFAULT_MAX_F1_DROP, show_default=True,
              help="Most entity F1 points the INT8 model may lose against its input on --eval_file (both "
                   "tools); a bigger drop fails and writes nothing.")
@handle_errors
def main(keep_float, eval_file, no_eval, tool, max_f1_drop, **kwargs):
    """Quantize an ONNX token classifier to INT8 with onnxruntime.quantization (or NNCF) and check it."""
    if no_eval and eval_file is not None:
        raise UserError("--no_eval and --eval_file contradict each other")
    eval_file = None if no_eval else (eval_file or _default_eval_file())
    if tool == "nncf":
        if no_eval:
            raise UserError("--no_eval: --tool nncf always checks entity F1 before it writes")
        result = quantize_nncf(eval_file=eval_file, max_f1_drop=max_f1_drop,
                               **{key: kwargs[key] for key in ("input", "output", "calib_file", "calib_sentences",
                                                               "model_dir", "seed")})
        click.echo("\n".join(summary_lines(result)))
        return
    result = quantize_onnx(keep_float=[n for n in keep_float.split(",") if n], eval_file=eval_file,
                           max_f1_drop=max_f1_drop, **kwargs)
    for key, value in result.settings.items():
        click.echo(f"{key}: {value}")
    click.echo(f"kept float: {', '.join(result.kept_float) or 'nothing'} (+ embeddings, LayerNorm, Softmax, GELU)")
    changed = sorted(op for op in set(result.ops_before) | set(result.ops_after)
                     if result.ops_before[op] != result.ops_after[op])
    click.echo("ops: " + ", ".join(f"{op} {result.ops_before[op]}->{result.ops_after[op]}" for op in changed))
    click.echo(f"size: {result.size_input_mb:.1f} MB -> {result.size_output_mb:.1f} MB")
    click.echo(f"check vs input graph: {100 * result.agreement:.2f}% of {result.agreement_words} word labels agree")
    if result.accuracy:
        acc = result.accuracy
        click.echo(f"entity F1 on {acc.file} ({acc.sentences} sentences): input {100 * acc.f1_reference:.2f}, "
                   f"int8 {100 * acc.f1_candidate:.2f} ({acc.delta_points:+.2f} points)")
    click.echo(f"wrote {result.output} ({result.seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
