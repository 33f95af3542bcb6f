"""`python -m bench` through its real entry point: the flags of the former `python -m infer.benchmark`,
and user mistakes as one `error:` line, exit code 1, no Traceback, nothing written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the command's interface, unchanged by its move from infer/ to bench/ (issue 12 added --eval_file, --int8_source)
FLAGS = ["--model_dir", "--input_file", "--json", "--markdown", "--plot", "--sample", "--seed", "--paths",
         "--repeats", "--warmup", "--f1_scope", "--max_rows", "--max_tokens", "--context", "--io_binding", "--work_dir", "--reuse",
         "--calib_file", "--calib_sentences", "--eval_file", "--int8_source", "--buckets", "--ov_streams",
         "--no_batch_table", "--no_file_flow"]


def _bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_the_benchmarks_flags():
    result = _bench("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: python -m bench [OPTIONS]")
    assert re.findall(r"^  (--\w+)", result.stdout, flags=re.M) == FLAGS
    assert re.search(r"^  -h, --help ", result.stdout, flags=re.M)
    assert _bench("-h").stdout == result.stdout


def test_missing_input_file_is_one_error_line(tiny_model_dir, tmp_path):
    missing = tmp_path / "nope.txt"
    out = tmp_path / "out"
    result = _bench("--model_dir", tiny_model_dir, "--input_file", missing, "--work_dir", out / "work",
                    "--json", out / "b.json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], result.stderr
    assert not out.exists()


def test_unknown_path_is_one_error_line(tiny_model_dir, tmp_path):
    result = _bench("--model_dir", tiny_model_dir, "--input_file", tmp_path / "x.txt", "--paths", "ort_fused_fp32,nope")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: unknown path 'nope'; paths are hf_pipeline, torch_batched, ort_fixed512, ort_bucketed_fp32, "
        "ort_fused_fp32, ort_int8_dynamic, ort_int8_static, ov_fp32, ov_bf16, ov_int8_nncf"]
