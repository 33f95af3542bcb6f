"""INT8 with NNCF post-training quantization, written as an OpenVINO IR (.xml + .bin).

python -m convert.quantize --tool nncf --input model.onnx --output model_int8.xml
       [--calib_file train.txt --calib_sentences 300 --eval_file valid.txt --max_f1_drop 0.3]

`nncf.quantize(..., model_type=TRANSFORMER)` (SmoothQuant, then int8 weights and activations for the
MatMuls, fast bias correction; Softmax, LayerNorm and GELU stay float) calibrated on a fixed-seed
sample of real sentences (default: CoNLL-2003 train), one unpadded sentence per call, so padding
never enters an activation range. On a CPU with VNNI / AMX the int8 MatMuls run on the int8
dot-product units; elsewhere a note says so (it still runs).

The result is checked before it is written: entity F1 on `--eval_file` (default: CoNLL-2003 valid)
of the INT8 model against the input run by OpenVINO in f32; a drop over `--max_f1_drop` points
fails, and nothing is written (the IR is staged in a temporary folder and moved into place only
after the check passes). The share of word labels that agree with f32 is reported too.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


from common.cpu import CpuCapabilities, detect, int8_note
from common.errors import ToolMissingError, UserError, ValidationError
from common.model_spec import read_model_spec
from common.paths import DEFAULT_MODEL_DIR, conll_dir
from preprocess.conll import read_conll
from runners.openvino import OpenVinoRunner, import_openvino, read_model

from . import onnx_io
from .accuracy import DEFAULT_MAX_F1_DROP, DEFAULT_SEED, F1Check, f1_check, gate, sample_sentences
from .check import load_tokenizer, one_row_feeds, recorded_model_dir

NNCF_REQUIREMENT = "nncf==3.4.0"
DEFAULT_CALIB_SENTENCES = 300


@dataclass(frozen=True)
class NncfResult:
    output: Path
    settings: dict
    check: F1Check
    size_input_mb: float
    size_output_mb: float
    notes: tuple[str, ...]
    seconds: float


def import_nncf():
    """The nncf module, or a one-line ToolMissingError saying what to install."""
    try:
        # imported on demand: NNCF takes seconds to import and only this tool needs it
        import nncf
    except ImportError:
        raise ToolMissingError(f"--tool nncf needs the nncf package: pip install {NNCF_REQUIREMENT}") from None
    return nncf


def _checkpoint_of(input: Path, model_dir) -> Path:
    """The checkpoint whose tokenizer and labels go with `input`: --model_dir, the one recorded at export, the default."""
    if model_dir is not None:
        return Path(model_dir)
    return (recorded_model_dir(input) if input.suffix == ".onnx" else None) or DEFAULT_MODEL_DIR


def _check_inputs(model, input: Path, input_names: Sequence[str]) -> None:
    """The model must take exactly the checkpoint's inputs, each (batch, sequence)."""
    got = {port.get_any_name(): port.get_partial_shape().rank for port in model.inputs}
    if sorted(got) != sorted(input_names):
        raise ValidationError(f"{input}: the model takes {sorted(got)}, the checkpoint's tokenizer gives "
                              f"{sorted(input_names)}")
    for name, rank in got.items():
        if rank.is_static and rank.get_length() != 2:
            raise ValidationError(f"{input}: input {name!r} has rank {rank.get_length()}, not 2 (batch, sequence)")


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.is_file()) / 2**20


def quantize_nncf(*, input, output, calib_file=None, calib_sentences: int = DEFAULT_CALIB_SENTENCES,
                  eval_file=None, max_f1_drop: float = DEFAULT_MAX_F1_DROP, model_dir=None,
                  seed: int = DEFAULT_SEED, precision: str = "auto", threads: Optional[int] = None,
                  capabilities: Optional[CpuCapabilities] = None) -> NncfResult:
    """Quantize `input` (.onnx or IR .xml) to an INT8 IR at `output` (.xml); see the module docstring.

    `precision`: how the INT8 model's float layers run in the check (auto / f32 / bf16, `common.cpu`);
    `capabilities`: the CPU's (default: detected), injectable for tests."""
    started = time.perf_counter()
    input, output = Path(input), Path(output)
    if output.suffix != ".xml":
        raise UserError(f"{output}: --tool nncf writes an OpenVINO IR: give the --output an .xml name "
                        f"(its weights go beside it as {output.with_suffix('.bin').name})")
    if input.resolve() == output.resolve():
        raise UserError(f"{output}: --output must differ from --input (the input is the reference of the check)")
    if calib_sentences < 1:
        raise UserError(f"--calib_sentences {calib_sentences}: give at least 1")
    nncf = import_nncf()
    ov = import_openvino()
    calib_path = Path(calib_file) if calib_file is not None else conll_dir() / "train.txt"
    eval_path = Path(eval_file) if eval_file is not None else conll_dir() / "valid.txt"
    sentences = sample_sentences(calib_path, calib_sentences, seed)
    eval_sentences = read_conll(eval_path)  # read before the slow part: a bad file fails at once
    model = read_model(input)
    spec = read_model_spec(_checkpoint_of(input, model_dir))
    _check_inputs(model, input, spec.input_names)
    tokenizer = load_tokenizer(spec.model_dir)
    feeds = one_row_feeds(tokenizer, sentences, spec.input_names, max_len=spec.max_positions)
    capabilities = capabilities or detect(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    notes = tuple(note for note in (int8_note(capabilities),) if note)
    settings = {"tool": f"nncf {nncf.__version__}", "model_type": "TRANSFORMER", "preset": "nncf default (mixed)",
                "calibration": f"{len(feeds)} sentences of {calib_path.name}, seed {seed}, one per call"}
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds))
    quantized.set_rt_info(json.dumps(settings), ["model_info", "quantization"])
    with onnx_io.staged_output(output) as staged:
        ov.save_model(quantized, str(staged))  # writes staged .xml and its .bin beside it
        del quantized
        check = f1_check(lambda: OpenVinoRunner.from_path(staged, precision=precision, threads=threads,
                                                          capabilities=capabilities),
                         lambda: OpenVinoRunner.from_path(input, precision="f32", threads=threads,
                                                          capabilities=capabilities),
                         sentences=eval_sentences, source=str(eval_path), tokenizer=tokenizer, spec=spec)
        gate(check, max_f1_drop, str(output))
    return NncfResult(output=output, settings=settings, check=check, size_input_mb=_size_mb(input),
                      size_output_mb=_size_mb(output), notes=notes, seconds=time.perf_counter() - started)


def summary_lines(result: NncfResult) -> list[str]:
    """What the command prints after a successful run."""
    check = result.check
    return [*(f"{key}: {value}" for key, value in result.settings.items()), *result.notes,
            f"size: {result.size_input_mb:.1f} MB -> {result.size_output_mb:.1f} MB",
            f"check vs fp32 (OpenVINO f32) on {check.file} ({check.sentences} sentences): "
            f"{100 * check.agreement:.2f}% of {check.words} word labels agree; entity F1 fp32 "
            f"{100 * check.f1_reference:.2f}, int8 {100 * check.f1_candidate:.2f} ({check.delta_points:+.2f} points)",
            f"wrote {result.output} and {result.output.with_suffix('.bin').name} ({result.seconds:.1f} s)"]
