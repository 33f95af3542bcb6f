"""Hand an `.om` model to the real ais_bench (`python -m ais_bench`), with the same flags.

Followed: ais_bench of Ascend/tools (ais-bench_workload, mid-2023) and of ait
(components/benchmark, 2024). The latter refuses soft links and group/other-writable inputs and
output folders; so inputs are checked first, and gear folders are hard links (or copies).

ais_bench drives the Ascend NPU through CANN's ACL; nothing here can stand in for it, so when
it is not importable the run stops with one line that says what to install and source.
The command is built as an argv list (no shell), by a pure function that tests can check.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from common.errors import InputFileError, ToolMissingError, UserError
from common.paths import CANN_SET_ENV
from convert.atc import RECORD_FORMAT, RECORD_SUFFIX, record_path
from preprocess.binfile import GROUP_OTHER_WRITE, link_gear_folders, make_input_dir

from .inputs import pair_samples, parse_input_arg

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


def read_atc_record(model) -> Optional[dict]:
    """What convert_om.sh built `model` with (`<model>.atc.json` beside it), or None when there is none."""
    path = record_path(model)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputFileError(path, f"unreadable convert_om.sh record ({err})") from None
    if (not isinstance(record, dict) or record.get("format") != RECORD_FORMAT
            or not isinstance(record.get("batch_size"), int) or not isinstance(record.get("seq_lens"), list)):
        raise InputFileError(path, f"not a convert_om.sh record ({RECORD_FORMAT}); delete it or rebuild the OM")
    return record


def om_batchsize(model, record: Optional[dict], requested: Optional[int]) -> Optional[int]:
    """The OM's batch is fixed by ATC (--bs); --batchsize may only repeat it."""
    if record is None:
        return requested
    built = record["batch_size"]
    if requested is not None and requested != built:
        raise UserError(f"{model}: built with --bs {built} ({record_path(model)}), not --batchsize {requested}; "
                        f"leave --batchsize out or give {built}")
    return built


def check_ais_bench_path(path: Path) -> None:
    """ait's ais_bench (path_security_check.FileStat) refuses soft links and group/other-writable inputs."""
    if path.is_symlink():
        raise InputFileError(path, "is a soft link; ais_bench refuses soft links as input: give the file itself")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & GROUP_OTHER_WRITE:
        raise InputFileError(path, f"is group- or other-writable (mode {mode:o}), which ais_bench refuses: "
                                   f"run chmod -R go-w {path}")


def check_ais_bench_inputs(folders) -> None:
    """Each --input folder and every entry in it, as ais_bench checks them (before anything runs)."""
    for folder in folders:
        if not folder.exists():
            raise InputFileError(folder, "input folder does not exist")
        check_ais_bench_path(folder)
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                check_ais_bench_path(entry)


def prepare_output(output: Path) -> None:
    """ais_bench refuses an existing --output that group/others can write; make it without those bits."""
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            raise InputFileError(output, "--output is not a folder")
        check_ais_bench_path(output)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    make_input_dir(output)


def files_by_length(folders) -> dict[int, list[tuple[Path, ...]]]:
    """Sample files grouped by sequence length (int64 (1, L) inputs); {} when --input names files, not folders."""
    if not all(folder.is_dir() for folder in folders):
        return {}
    groups = defaultdict(list)
    for sample in pair_samples(folders):
        groups[sample.files[0].stat().st_size // 8].append(sample.files)
    return dict(groups)


def gear_dims(input: str, batchsize: int, length: int) -> str:
    """ais_bench's `--dymDims` for one gear: `input_ids:N,L;attention_mask:N,L;...` (folder names are input names)."""
    return ";".join(f"{folder.name}:{batchsize},{length}" for folder in parse_input_arg(input))


def run_ais_bench(*, model, seq_len: Optional[int] = None, extra_args: Sequence[str] = (), **flags) -> int:
    """Run ais_bench on an `.om` model and return its exit code; ToolMissingError when it is absent.

    An OM built with gears (its convert_om.sh record says so), or inputs of several lengths, become
    one ais_bench run per gear on folders made for this run alone (hard links, removed afterwards),
    all writing into one result folder `OUTPUT/<ts>/` that bert_metric.py reads whole; each gear's
    summary is kept as `<ts>_gear<L>_summary.json`."""
    if seq_len is not None:
        raise UserError("--seq_len is for the ONNX Runtime runner; an OM model's shapes are fixed by ATC")
    if not ais_bench_available():
        raise missing_ais_bench_error(model)
    record = read_atc_record(model)
    flags["batchsize"] = batchsize = om_batchsize(model, record, flags.get("batchsize"))
    input_arg, output = flags.get("input"), flags.get("output")
    folders = parse_input_arg(input_arg) if input_arg else []
    check_ais_bench_path(Path(model))
    check_ais_bench_inputs(folders)
    groups = files_by_length(folders)
    if record is not None and groups:
        unknown = sorted(set(groups) - set(record["seq_lens"]))
        if unknown:
            raise InputFileError(groups[unknown[0]][0][0], f"holds {unknown[0]} tokens but {model} takes "
                                 f"{', '.join(map(str, record['seq_lens']))} ({record_path(model)})")
    use_gears = bool((record or {}).get("gears") and groups) or len(groups) > 1
    if use_gears and output is None:
        raise UserError("inputs of several lengths (length buckets) need --output to gather the gears' results")
    if use_gears and batchsize is None:
        raise UserError(f"{model}: give --batchsize, the --bs the OM was built with (each gear's --dymDims "
                        f"needs it; convert_om.sh's {RECORD_SUFFIX} record beside the OM would say)")
    if output is not None:
        prepare_output(Path(output))
    if not use_gears:
        argv = build_ais_bench_argv(model=model, **flags) + list(extra_args)
        print("[INFO] running: " + " ".join(argv), flush=True)
        return subprocess.run(argv, check=False).returncode
    dirname = flags.get("output_dirname") or time.strftime("%Y_%m_%d-%H_%M_%S")
    stage = Path(tempfile.mkdtemp(prefix=".gears-", dir=output))
    try:
        gear_folders = link_gear_folders(stage / "gears", groups, [folder.name for folder in folders])
        for length, dirs in gear_folders.items():
            gear_input = ",".join(str(d) for d in dirs)
            argv = build_ais_bench_argv(model=model, **{**flags, "input": gear_input, "output_dirname": dirname})
            argv += ["--dymDims", gear_dims(gear_input, batchsize, length)] + list(extra_args)
            print(f"[INFO] gear {length}: running: " + " ".join(argv), flush=True)
            code = subprocess.run(argv, check=False).returncode
            if code != 0:
                return code
            summary = Path(output) / f"{dirname}_summary.json"
            if summary.exists():
                os.replace(summary, Path(output) / f"{dirname}_gear{length}_summary.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return 0
