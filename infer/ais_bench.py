"""Hand an `.om` model to the real ais_bench (`python -m ais_bench`), with the same flags.

ais_bench drives the Ascend NPU through CANN's ACL; nothing here can stand in for it, so when
it is not importable the run stops with one line that says what to install and source.
The command is built as an argv list (no shell), by a pure function that tests can check.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from common.errors import ToolMissingError, UserError
from common.paths import CANN_SET_ENV

AIS_BENCH_WHEEL_HINT = ("the ais_bench wheel (from the ait repository, "
                        "ait/components/benchmark: pip install ./ais_bench-*.whl)")


def is_om_model(model) -> bool:
    return str(model).lower().endswith(".om")


def ais_bench_available() -> bool:
    """True when `python -m ais_bench` could start here (the package is importable; it is not imported)."""
    try:
        return importlib.util.find_spec("ais_bench") is not None
    except (ImportError, ValueError):
        return False


def build_ais_bench_argv(*, model, input: Optional[str] = None, output=None, outfmt: Optional[str] = None,
                         batchsize: Optional[int] = None, loop: Optional[int] = None,
                         warmup_count: Optional[int] = None, device: Optional[int] = None,
                         output_dirname: Optional[str] = None, display_all_summary: bool = False,
                         python: Optional[str] = None) -> list[str]:
    """`[python, -m, ais_bench, --model, X.om, ...]`: only the flags that were given, in ais_bench's spelling."""
    argv = [python or sys.executable, "-m", "ais_bench", "--model", str(model)]
    flags = (("--input", input), ("--output", output), ("--output_dirname", output_dirname),
             ("--outfmt", outfmt.upper() if outfmt else None), ("--batchsize", batchsize), ("--loop", loop),
             ("--warmup_count", warmup_count), ("--device", device))
    for flag, value in flags:
        if value is not None:
            argv += [flag, str(value)]
    if display_all_summary:
        argv += ["--display_all_summary", "1"]
    return argv


def missing_ais_bench_error(model) -> ToolMissingError:
    return ToolMissingError(
        f"{model} is an Ascend OM model but ais_bench is not installed here (it needs CANN on an Ascend "
        f"machine): run `source {CANN_SET_ENV}`, install {AIS_BENCH_WHEEL_HINT}, then rerun; "
        "or pass the .onnx model to run it on ONNX Runtime")


def split_by_length(input: str, gear_root: Path) -> dict[int, str]:
    """Length-bucketed inputs (bin_create --buckets) hold samples of several lengths, but one
    ais_bench run feeds one gear (`--dymDims`). Link each length's files into folders of their
    own under `gear_root`, named as the originals so outputs keep their names.
    Returns {length: --input value}; a single length gives {} (run as given)."""
    from .inputs import pair_samples, parse_input_arg

    folders = parse_input_arg(input)
    if not all(folder.is_dir() for folder in folders):
        return {}
    by_length = defaultdict(list)
    for sample in pair_samples(folders):
        by_length[sample.files[0].stat().st_size // 8].append(sample)  # int64 (1, L) inputs
    if len(by_length) < 2:
        return {}
    inputs = {}
    for length, samples in sorted(by_length.items()):
        dirs = [gear_root / str(length) / folder.name for folder in folders]
        for directory in dirs:
            directory.mkdir(parents=True, exist_ok=True)
        for sample in samples:
            for directory, source in zip(dirs, sample.files):
                link = directory / source.name
                if not link.exists():
                    os.symlink(source.resolve(), link)
        inputs[length] = ",".join(str(d) for d in dirs)
    return inputs


def gear_dims(input: str, batchsize: int, length: int) -> str:
    """ais_bench's `--dymDims` for one gear: `input_ids:N,L;attention_mask:N,L;...` (folder names are input names)."""
    from .inputs import parse_input_arg

    return ";".join(f"{folder.name}:{batchsize},{length}" for folder in parse_input_arg(input))


def run_ais_bench(*, model, seq_len: Optional[int] = None, extra_args: Sequence[str] = (), **flags) -> int:
    """Run ais_bench on an `.om` model and return its exit code; ToolMissingError when it is absent.

    Inputs of several lengths (length buckets against an OM built with gears) become one ais_bench
    run per gear, all writing into one result folder `OUTPUT/<ts>/` that bert_metric.py reads whole;
    each gear's summary is kept as `<ts>_gear<L>_summary.json`."""
    if seq_len is not None:
        raise UserError("--seq_len is for the ONNX Runtime runner; an OM model's shapes are fixed by ATC")
    if not ais_bench_available():
        raise missing_ais_bench_error(model)
    input_arg, output = flags.get("input"), flags.get("output")
    gears = split_by_length(input_arg, Path(output or ".") / ".gears") if input_arg else {}
    if not gears:
        argv = build_ais_bench_argv(model=model, **flags) + list(extra_args)
        print("[INFO] running: " + " ".join(argv), flush=True)
        return subprocess.run(argv, check=False).returncode
    if output is None:
        raise UserError("inputs of several lengths (length buckets) need --output to gather the gears' results")
    dirname = flags.get("output_dirname") or time.strftime("%Y_%m_%d-%H_%M_%S")
    batchsize = flags.get("batchsize") or 1
    for length, gear_input in gears.items():
        argv = build_ais_bench_argv(model=model, **{**flags, "input": gear_input, "output_dirname": dirname})
        argv += ["--dymDims", gear_dims(gear_input, batchsize, length)] + list(extra_args)
        print(f"[INFO] gear {length}: running: " + " ".join(argv), flush=True)
        code = subprocess.run(argv, check=False).returncode
        if code != 0:
            return code
        summary = Path(output) / f"{dirname}_summary.json"
        if summary.exists():
            os.replace(summary, Path(output) / f"{dirname}_gear{length}_summary.json")
    return 0
