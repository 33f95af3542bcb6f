"""The ONNX graphs the ORT paths run, made from the checkpoint with the project's own convert steps."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from convert.export import export_onnx
from convert.onnx_io import load, metadata
from convert.optimize import optimize_onnx
from convert.quantize import quantize_onnx

MODEL_FILES = {"plain": "model.onnx", "fused": "model_fused.onnx", "int8_dynamic": "model_int8_dynamic.onnx",
               "int8_static": "model_int8_static.onnx"}


# The graph each ONNX Runtime path runs, and the graph each graph is made from.
GRAPH_OF_PATH = {"ort_fixed512": "plain", "ort_bucketed_fp32": "plain", "ort_fused_fp32": "fused",
                 "ort_int8_dynamic": "int8_dynamic", "ort_int8_static": "int8_static"}
MADE_FROM = {"fused": "plain", "int8_dynamic": "fused", "int8_static": "fused"}


def graphs_for(paths: Iterable[str]) -> set[str]:
    """The graphs that running `paths` takes, with the graphs they are made from."""
    needed: set[str] = set()
    pending = [GRAPH_OF_PATH[p] for p in paths if p in GRAPH_OF_PATH]
    while pending:
        key = pending.pop()
        if key not in needed:
            needed.add(key)
            pending.extend([MADE_FROM[key]] if key in MADE_FROM else [])
    return needed


def build_models(model_dir: Path, work_dir: Path, *, reuse: bool, calib_file, calib_sentences: int,
                 log: Callable[[str], None],
                 needed: Iterable[str] = tuple(MODEL_FILES)) -> tuple[dict[str, Path], dict]:
    """Of the plain export, the fused graph and both INT8 graphs (`convert.export` -> `convert.optimize` ->
    `convert.quantize` dynamic and static), those `needed` (`graphs_for`; a quick run on the torch path
    and the plain export skips the quantizing); with `reuse`, files already in `work_dir` are kept."""
    work_dir.mkdir(parents=True, exist_ok=True)
    files = {key: work_dir / name for key, name in MODEL_FILES.items()}
    info: dict = {}
    needed = set(needed)

    def fresh(key):
        return key in needed and not (reuse and files[key].is_file())

    if fresh("plain"):
        log(f"[build] export {model_dir} -> {files['plain']}")
        result = export_onnx(model_dir=model_dir, output=files["plain"])
        info["export"] = {"max_abs_diff_vs_torch": result.check.max_abs_diff, "seconds": round(result.seconds, 1)}
    if fresh("fused"):
        log(f"[build] optimize -> {files['fused']}")
        result = optimize_onnx(input=files["plain"], output=files["fused"], model_dir=model_dir)
        info["optimize"] = {"fused_operators": result.fused, "max_abs_diff": result.check.max_abs_diff,
                            "seconds": round(result.seconds, 1)}
    elif "fused" in needed:
        recorded = metadata(load(files["fused"], load_external_data=False)).get("fused_operators")
        info["optimize"] = {"fused_operators": json.loads(recorded) if recorded else None}
    for mode in ("dynamic", "static"):
        key = f"int8_{mode}"
        if fresh(key):
            log(f"[build] quantize {mode} -> {files[key]}")
            extra = {"calib_file": calib_file, "calib_sentences": calib_sentences} if mode == "static" else {}
            result = quantize_onnx(input=files["fused"], output=files[key], mode=mode, model_dir=model_dir, **extra)
            info[f"quantize_{mode}"] = {"settings": result.settings, "kept_float": list(result.kept_float),
                                        "label_agreement_vs_fp32": result.agreement,
                                        "size_mb": round(result.size_output_mb, 1), "seconds": round(result.seconds, 1)}
    return files, info
