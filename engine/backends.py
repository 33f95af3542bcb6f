"""Runners by backend name: the one factory the raw-text predictor, the demo and corpus jobs open them with.

    runner = open_runner("onnxrt", model_dir)            # not active yet: `with runner: ...`

- `onnxrt`: the checkpoint's ONNX export on ONNX Runtime (CPU). `onnx=PATH` names the graph; without
  it the export cached in `<model_dir>/.onnx-cache/` is used, made on first use (`convert.onnx_cache`);
- `torch`: the checkpoint itself on PyTorch, the reference the ONNX paths are compared with;
- `openvino`: the same ONNX export (or `onnx=` an OpenVINO IR `.xml`) on OpenVINO's CPU plugin, at
  `precision` auto / f32 / bf16 (`runners.openvino`); the other backends run f32 only.

`check_runner` then checks, once the runner is active, that its graph is the model folder's (inputs,
output, and the labels `convert.export` wrote into it): an `--onnx` of another checkpoint would run,
and label with the wrong names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from common.errors import UserError, ValidationError
from common.model_spec import OUTPUT_NAME, ModelSpec
from convert.onnx_cache import ensure_onnx
from runners.base import BaseRunner
from runners.onnxrt import OrtRunner
from runners.openvino import OpenVinoRunner
from runners.torchrt import TorchRunner

Log = Callable[[str], None]


def _silent(message: str) -> None:
    pass


def open_onnxrt(model_dir, onnx, threads: Optional[int], log: Log, precision: str = "f32") -> OrtRunner:
    _f32_only("onnxrt", precision)
    path = ensure_onnx(model_dir, onnx, log)
    return OrtRunner.from_path(path, providers=["CPUExecutionProvider"], intra_op_threads=threads)


def open_torch(model_dir, onnx, threads: Optional[int], log: Log, precision: str = "f32") -> TorchRunner:
    _f32_only("torch", precision)
    if onnx is not None:
        raise UserError("--onnx names the graph of --backend onnxrt or openvino; --backend torch runs the checkpoint")
    return TorchRunner(model_dir, threads=threads)


def open_openvino(model_dir, onnx, threads: Optional[int], log: Log, precision: str = "auto") -> OpenVinoRunner:
    # an IR (.xml) is run as it is; anything else is the ONNX export, made first if missing
    path = Path(onnx) if onnx is not None and Path(onnx).suffix == ".xml" else ensure_onnx(model_dir, onnx, log)
    return OpenVinoRunner.from_path(path, precision=precision, threads=threads)


def _f32_only(backend: str, precision: str) -> None:
    if precision not in ("auto", "f32"):
        raise UserError(f"--precision {precision}: backend {backend} runs f32 only (bf16: --backend openvino)")


# name -> opener(model_dir, onnx, threads, log, precision); `open_runner` is the front door
BACKENDS: dict[str, Callable[..., BaseRunner]] = {"onnxrt": open_onnxrt, "torch": open_torch,
                                                   "openvino": open_openvino}


def open_runner(backend: str, model_dir, *, onnx=None, threads: Optional[int] = None, log: Log = _silent,
                precision: str = "auto") -> BaseRunner:
    """The runner of `backend` for the checkpoint in `model_dir`, not activated yet (see the module docstring)."""
    opener = BACKENDS.get(backend)
    if opener is None:
        raise UserError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return opener(Path(model_dir), onnx, threads, log, precision)


def check_runner(runner: BaseRunner, spec: ModelSpec) -> None:
    """ValidationError unless the active `runner` takes the spec's inputs, gives `logits`, and (where its
    graph says) was exported with the spec's labels."""
    inputs = [m.name for m in runner.get_input_metadata()]
    outputs = [m.name for m in runner.get_output_metadata()]
    if inputs != list(spec.input_names) or outputs != [OUTPUT_NAME]:
        raise ValidationError(f"{runner.name}: inputs {inputs} and outputs {outputs}; {spec.model_dir} "
                              f"needs inputs {list(spec.input_names)} and output {OUTPUT_NAME!r}")
    session = getattr(runner, "session", None)  # an ONNX Runtime session has the export's metadata
    meta = session.get_modelmeta().custom_metadata_map if session is not None else {}
    if "id2label" in meta:  # written by convert.export
        theirs = {int(k): v for k, v in json.loads(meta["id2label"]).items()}
        if theirs != spec.id2label:
            raise ValidationError(f"{runner.name} was exported with labels {theirs}, {spec.model_dir} "
                                  f"has {spec.id2label}: wrong --onnx for this --model_dir?")
