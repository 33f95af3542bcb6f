"""Hand an `.om` model to the real ais_bench (`python -m ais_bench`), with the same flags.

ais_bench drives the Ascend NPU through CANN's ACL; nothing here can stand in for it, so when
it is not importable the run stops with one line that says what to install and source.
The command is built as an argv list (no shell), by a pure function that tests can check.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Optional, Sequence

from common.errors import ToolMissingError, UserError

CANN_SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
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


def run_ais_bench(*, model, seq_len: Optional[int] = None, extra_args: Sequence[str] = (), **flags) -> int:
    """Run ais_bench on an `.om` model and return its exit code; ToolMissingError when it is absent."""
    if seq_len is not None:
        raise UserError("--seq_len is for the ONNX Runtime runner; an OM model's shapes are fixed by ATC")
    if not ais_bench_available():
        raise missing_ais_bench_error(model)
    argv = build_ais_bench_argv(model=model, **flags) + list(extra_args)
    print("[INFO] running: " + " ".join(argv), flush=True)
    return subprocess.run(argv, check=False).returncode
