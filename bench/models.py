"""The graphs the ONNX Runtime and OpenVINO paths run, made from the checkpoint with the project's own convert steps.

plain export (`convert.export`) -> fused graph (`convert.optimize`); the ORT INT8 graphs
(`convert.quantize` dynamic and static) from the INT8 source graph, plain or fused, which
`bench.int8_source` picks by measurement; NNCF's INT8 IR (`convert.quantize_nncf`) from the plain
export, the graph the OpenVINO paths run (OpenVINO makes its own fusions when it compiles).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Optional

from common.atomic import write_json
from common.cpu import CpuCapabilities
from common.errors import ValidationError
from convert.export import export_onnx
from convert.onnx_io import load, metadata
from convert.optimize import optimize_onnx
from convert.quantize import quantize_onnx
from convert.quantize_nncf import quantize_nncf

MODEL_FILES = {"plain": "model.onnx", "fused": "model_fused.onnx", "int8_dynamic": "model_int8_dynamic.onnx",
               "int8_static": "model_int8_static.onnx", "int8_nncf": "model_int8_nncf.xml"}
# which graph each ORT INT8 file was quantized from, so that --reuse keeps only files of this run's choice
SOURCE_RECORD = "int8_sources.json"
INT8_SOURCES = ("auto", "plain", "fused")
ORT_INT8 = ("int8_dynamic", "int8_static")

# The graph each path runs, and the graphs each graph is made from.
GRAPH_OF_PATH = {"ort_fixed512": "plain", "ort_bucketed_fp32": "plain", "ort_fused_fp32": "fused",
                 "ort_int8_dynamic": "int8_dynamic", "ort_int8_static": "int8_static",
                 "ov_fp32": "plain", "ov_bf16": "plain", "ov_int8_nncf": "int8_nncf"}
MADE_FROM = {"fused": ("plain",), "int8_nncf": ("plain",)}


def graphs_for(paths: Iterable[str], int8_source: str = "auto") -> set[str]:
    """The graphs that running `paths` takes, with the graphs they are made from (`auto`: the ORT INT8
    graphs need both candidates, plain and fused, to time them)."""
    sources = ("plain", "fused") if int8_source == "auto" else (int8_source,)
    made_from = {**MADE_FROM, **{key: sources for key in ORT_INT8}}
    needed: set[str] = set()
    pending = [GRAPH_OF_PATH[p] for p in paths if p in GRAPH_OF_PATH]
    while pending:
        key = pending.pop()
        if key not in needed:
            needed.add(key)
            pending.extend(made_from.get(key, ()))
    return needed


def model_files(work_dir: Path) -> dict[str, Path]:
    return {key: Path(work_dir) / name for key, name in MODEL_FILES.items()}


def build_float_graphs(model_dir: Path, work_dir: Path, *, reuse: bool, log: Callable[[str], None],
                       needed: Iterable[str] = ("plain", "fused")) -> tuple[dict[str, Path], dict]:
    """The plain export and the fused graph, those `needed`; with `reuse`, files already in `work_dir` are kept."""
    work_dir.mkdir(parents=True, exist_ok=True)
    files, info, needed = model_files(work_dir), {}, set(needed)
    if "plain" in needed and not (reuse and files["plain"].is_file()):
        log(f"[build] export {model_dir} -> {files['plain']}")
        result = export_onnx(model_dir=model_dir, output=files["plain"])
        info["export"] = {"max_abs_diff_vs_torch": result.check.max_abs_diff, "seconds": round(result.seconds, 1)}
    if "fused" in needed and not (reuse and files["fused"].is_file()):
        log(f"[build] optimize -> {files['fused']}")
        result = optimize_onnx(input=files["plain"], output=files["fused"], model_dir=model_dir)
        info["optimize"] = {"fused_operators": result.fused, "max_abs_diff": result.check.max_abs_diff,
                            "seconds": round(result.seconds, 1)}
    elif "fused" in needed:
        recorded = metadata(load(files["fused"], load_external_data=False)).get("fused_operators")
        info["optimize"] = {"fused_operators": json.loads(recorded) if recorded else None}
    return files, info


def _recorded_sources(work_dir: Path) -> dict[str, str]:
    try:
        return json.loads((work_dir / SOURCE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_ort_int8(model_dir: Path, files: dict[str, Path], *, source: str, reuse: bool, calib_file,
                   calib_sentences: int, log: Callable[[str], None], needed: Iterable[str] = ORT_INT8) -> dict:
    """The ORT INT8 graphs `needed`, quantized from `files[source]`. A file of an earlier run is reused
    (with `reuse`) only if it was made from the same source (files without a record: the fused graph,
    the fixed source of earlier versions). If the quantized graph fails `convert.quantize`'s agreement
    check, the other candidate is tried, and the JSON says so. Returns the build facts by step."""
    work_dir = files["plain"].parent
    recorded = {"int8_dynamic": "fused", "int8_static": "fused", **_recorded_sources(work_dir)}
    info = {}
    for key in [k for k in ORT_INT8 if k in set(needed)]:
        mode = key.split("_", 1)[1]
        if reuse and files[key].is_file() and recorded.get(key) == source:
            info[f"quantize_{mode}"] = {"source": source, "reused": True}
            continue
        extra = {"calib_file": calib_file, "calib_sentences": calib_sentences} if mode == "static" else {}
        candidates = [source] + [other for other in ("plain", "fused") if other != source and files[other].is_file()]
        failures = []
        for graph in candidates:
            log(f"[build] quantize {mode} {files[graph].name} -> {files[key]}")
            try:
                result = quantize_onnx(input=files[graph], output=files[key], mode=mode, model_dir=model_dir, **extra)
            except ValidationError as err:  # the agreement check failed: nothing was written
                failures.append(f"{graph}: {err}")
                continue
            info[f"quantize_{mode}"] = {"source": graph, "settings": result.settings,
                                        "kept_float": list(result.kept_float),
                                        "label_agreement_vs_fp32": result.agreement,
                                        "size_mb": round(result.size_output_mb, 1),
                                        "seconds": round(result.seconds, 1), "failed_sources": failures}
            recorded[key] = graph
            write_json(work_dir / SOURCE_RECORD, recorded)
            break
        else:
            raise ValidationError(f"{files[key]}: INT8 {mode} failed its check from every source: "
                                  + "; ".join(failures))
    return info


def build_nncf(model_dir: Path, files: dict[str, Path], *, reuse: bool, calib_file, calib_sentences: int,
               eval_file, threads: Optional[int], capabilities: Optional[CpuCapabilities],
               log: Callable[[str], None]) -> dict:
    """NNCF's INT8 IR of the plain export (`convert.quantize_nncf`, with its F1 gate on `eval_file`).
    A gate that fails raises `ValidationError` (nothing written): the caller reports the path as skipped."""
    output = files["int8_nncf"]
    if reuse and output.is_file() and output.with_suffix(".bin").is_file():
        return {"source": "plain", "reused": True}
    log(f"[build] NNCF INT8 {files['plain'].name} -> {output}")
    result = quantize_nncf(input=files["plain"], output=output, calib_file=calib_file, calib_sentences=calib_sentences,
                           eval_file=eval_file, model_dir=model_dir, threads=threads, capabilities=capabilities)
    check = result.check
    log(f"[build] NNCF INT8 check on {Path(check.file).name}: entity F1 fp32 {100 * check.f1_reference:.2f}, "
        f"int8 {100 * check.f1_candidate:.2f}; {100 * check.agreement:.2f}% of word labels agree")
    return {"source": "plain", "settings": result.settings, "notes": list(result.notes),
            "check": {"file": check.file, "sentences": check.sentences, "f1_fp32": check.f1_reference,
                      "f1_int8": check.f1_candidate, "label_agreement_vs_fp32": check.agreement},
            "size_mb": round(result.size_output_mb, 1), "seconds": round(result.seconds, 1)}
