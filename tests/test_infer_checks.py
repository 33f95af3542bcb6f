"""python -m infer: inputs checked against the graph, bad --output places, memory that follows the
samples (not --batchsize), and a run that says what it is doing.

Through the real entry point (a subprocess, or Click's CliRunner), on the tiny random BERT
exported to ONNX and real CoNLL sentences (fixtures shared with tests/test_infer.py).
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from infer.cli import infer_command
from test_infer import (N_SAMPLES, _assert_one_line_error, _input_arg, bins, bins_copy, dyn_onnx,  # noqa: F401
                        samples, static_case, tokenizer)

ROOT = Path(__file__).resolve().parents[1]


def _cli(model, input_arg, out, *extra):
    return CliRunner().invoke(infer_command, ["--model", str(model), "--input", input_arg, "--output", str(out),
                                              "--outfmt", "NPY", "--batchsize", "4", *extra])


def _python_m_infer(*args, preexec_fn=None, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "infer", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, preexec_fn=preexec_fn)


def _assert_one_line_error_proc(proc, *fragments) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# token ids against the model
# ---------------------------------------------------------------------------------------------

def test_inputs_written_as_int32_are_named(dyn_onnx, bins_copy, tmp_path):
    for path in bins_copy.rglob("*.bin"):
        path.write_bytes(np.fromfile(path, dtype=np.int64).astype(np.int32).tobytes())
    out = tmp_path / "out"
    line = _assert_one_line_error(_cli(dyn_onnx, _input_arg(bins_copy), out),
                                  str(bins_copy / "input_ids" / "input_ids_0_0.bin"), "int32")
    assert "model input 'input_ids' takes int64" in line
    assert not out.exists()


def test_int32_inputs_for_a_fixed_length_graph_are_named(static_case, tmp_path):
    model, bins, _ = static_case
    int32_bins = Path(shutil.copytree(bins, tmp_path / "bins"))
    for path in int32_bins.rglob("*.bin"):
        path.write_bytes(np.fromfile(path, dtype=np.int64).astype(np.int32).tobytes())
    out = tmp_path / "out"
    _assert_one_line_error(_cli(model, _input_arg(int32_bins), out),
                           str(int32_bins / "input_ids" / "input_ids_0_0.bin"), "holds int32 values")
    assert not out.exists()


def test_id_outside_the_vocabulary_is_named(dyn_onnx, bins_copy, tokenizer, tmp_path):
    bad = bins_copy / "input_ids" / "input_ids_4_4.bin"
    ids = np.fromfile(bad, dtype=np.int64)
    ids[3] = tokenizer.vocab_size  # one past the word-embedding table
    ids.tofile(bad)
    out = tmp_path / "out"
    line = _assert_one_line_error(_cli(dyn_onnx, _input_arg(bins_copy), out), str(bad), "token 3 is id")
    assert f"embedding table of {tokenizer.vocab_size} rows" in line
    assert not out.exists()


def test_negative_id_is_refused(dyn_onnx, bins_copy, tmp_path):
    bad = bins_copy / "input_ids" / "input_ids_6_6.bin"
    ids = np.fromfile(bad, dtype=np.int64)
    ids[2] = -1  # ONNX Runtime's Gather would quietly read the table's last row
    ids.tofile(bad)
    out = tmp_path / "out"
    _assert_one_line_error(_cli(dyn_onnx, _input_arg(bins_copy), out), str(bad), "token 2 is id -1")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# --output where no folder can be made
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("below", ["out", ""])
def test_output_on_a_read_only_filesystem(dyn_onnx, bins, tmp_path, below):
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    output = mount_point / below if below else mount_point
    # a read-only tmpfs in a private mount namespace: a real EROFS, gone with the process
    script = (f'mount -t tmpfs -o ro,size=1m tmpfs "{mount_point}" && exec "{sys.executable}" -m infer '
              f'--model "{dyn_onnx}" --input "{_input_arg(bins)}" --output "{output}" --outfmt NPY')
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    line = _assert_one_line_error_proc(proc, "Read-only file system")
    assert line.startswith(f"error: {output}/" if not below else f"error: {output}")
    assert list(mount_point.iterdir()) == []


def test_output_below_a_regular_file(dyn_onnx, bins, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    proc = _python_m_infer("--model", dyn_onnx, "--input", _input_arg(bins), "--output", notes / "out")
    _assert_one_line_error_proc(proc, f"error: {notes}: is a file, not a folder")
    assert notes.read_text() == "not a folder\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------------
# batches of a dynamic-batch graph hold only real rows
# ---------------------------------------------------------------------------------------------

def _address_space_limit(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


def test_huge_batchsize_runs_only_the_rows_present(dyn_onnx, bins, samples, tmp_path):
    out = tmp_path / "out"
    # 4 GiB of address space: a batch padded to 10^8 rows would need 25 GB for one input alone
    proc = _python_m_infer("--model", dyn_onnx, "--input", _input_arg(bins), "--output", out, "--outfmt", "NPY",
                           "--batchsize", 100_000_000, preexec_fn=_address_space_limit(4 << 30))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((out / f"{folder.name}_summary.json").read_text())
    lengths = [s["input_ids"].shape[1] for s in samples]
    assert summary["NPU_compute_time"]["count"] == len(set(lengths))  # one batch per length group
    mean_rows = N_SAMPLES / len(set(lengths))
    assert summary["throughput"] == pytest.approx(1000 * mean_rows / summary["NPU_compute_time"]["mean"])
    assert f"batchsize.mean({mean_rows})" in proc.stdout
    assert len(list(folder.glob("*_0.npy"))) == N_SAMPLES


# ---------------------------------------------------------------------------------------------
# a run that says what it is doing
# ---------------------------------------------------------------------------------------------

def test_progress_bar_and_a_line_per_slow_step(dyn_onnx, bins, tmp_path):
    proc = _python_m_infer("--model", dyn_onnx, "--input", _input_arg(bins), "--output", tmp_path / "out",
                           "--batchsize", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # stderr is a pipe here, as in a log file: the bar is drawn all the same, with rate and ETA
    assert "Inference: 100%" in proc.stderr and f"{N_SAMPLES}/{N_SAMPLES} [" in proc.stderr
    assert "sample/s]" in proc.stderr or "s/sample]" in proc.stderr
    for step in ("[INFO] model loaded in ", "[INFO] checked the token ids of 22 samples in ",
                 "[INFO] warm up 1 done (", "[INFO] inference: 22 samples in "):
        assert step in proc.stdout, proc.stdout
