"""python -m infer: result folders of concurrent runs, and what a resumed run may keep.

Through the real entry point (a subprocess, or Click's CliRunner), on the tiny random BERT
exported to ONNX and real CoNLL sentences (fixtures shared with tests/test_infer.py).
"""
from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from infer.cli import infer_command
from infer.outputs import LOCK_NAME, MANIFEST_NAME
from test_infer import (INPUT_NAMES, N_SAMPLES, _assert_one_line_error, _input_arg, _outputs, _write_bins,  # noqa: F401
                        bins, dyn_onnx, reference, samples, tokenizer)

ROOT = Path(__file__).resolve().parents[1]
FROZEN_CLOCK = 1_700_000_000.0  # one fixed second for every run that a test starts "at the same time"


def _cli(model, input_arg, out, *extra):
    return CliRunner().invoke(infer_command, ["--model", str(model), "--input", input_arg, "--output", str(out),
                                              "--outfmt", "NPY", "--batchsize", "4", *extra])


def _folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def _assert_equals_reference(folder: Path, expected) -> None:
    outputs = _outputs(folder, "npy")
    assert sorted(outputs) == list(range(len(expected)))
    for i, path in outputs.items():
        np.testing.assert_allclose(np.load(path), expected[i], rtol=1e-5, atol=1e-5, err_msg=path.name)


# ---------------------------------------------------------------------------------------------
# concurrent runs
# ---------------------------------------------------------------------------------------------

def test_two_runs_started_in_the_same_second_get_a_folder_each(dyn_onnx, bins, tmp_path):
    """Two models into one --output at once, both seeing the same clock second: two folders, never one mixed."""
    other_model = tmp_path / "other.onnx"
    shutil.copy(dyn_onnx, other_model)
    out = tmp_path / "out"
    # `python -m infer` with time.time frozen, so both runs pick their folder name in the same second
    launcher = (f"import time; time.time = lambda: {FROZEN_CLOCK}; import runpy; "
                "runpy.run_module('infer', run_name='__main__', alter_sys=True)")
    procs = [subprocess.Popen([sys.executable, "-c", launcher, "--model", str(model), "--input", _input_arg(bins),
                               "--output", str(out), "--outfmt", "NPY", "--batchsize", "4"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for model in (dyn_onnx, other_model)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout + stderr

    folders = _folders(out)
    assert len(folders) == 2, folders
    assert folders[1].name == folders[0].name + "_1"
    models = set()
    for folder in folders:
        assert len(_outputs(folder, "npy")) == N_SAMPLES
        models.add(json.loads((folder / MANIFEST_NAME).read_text())["model"]["path"])
        summary = json.loads((out / f"{folder.name}_summary.json").read_text())
        assert {Path(p).parent for info in summary["filesinfo"].values() for p in info["outfiles"]} == {folder}
    assert models == {str(Path(dyn_onnx).resolve()), str(other_model.resolve())}


def test_run_into_a_folder_another_run_holds_is_refused(dyn_onnx, bins, tmp_path):
    out = tmp_path / "out"
    assert _cli(dyn_onnx, _input_arg(bins), out).exit_code == 0
    (folder,) = _folders(out)
    (folder / "input_ids_5_5_0.npy").unlink()  # work left for a resumed run
    with open(folder / LOCK_NAME, "a+") as held:  # what a run still writing into the folder holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = _cli(dyn_onnx, _input_arg(bins), out)
    line = _assert_one_line_error(result, str(folder), "another python -m infer run")
    assert "is writing into this folder" in line
    assert not (folder / "input_ids_5_5_0.npy").exists()  # it wrote nothing there
    assert _folders(out) == [folder]
    # once that run is gone, the folder resumes as usual
    again = _cli(dyn_onnx, _input_arg(bins), out)
    assert again.exit_code == 0, again.output
    assert (folder / "input_ids_5_5_0.npy").is_file()


# ---------------------------------------------------------------------------------------------
# what a resumed run keeps
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_inputs(tmp_path_factory, tokenizer, conll_sentences, samples):
    """22 other real sentences, each cut or padded to the length of the sample with its id:
    the same file names and sizes as `bins`, other tokens."""
    encoded = []
    for i, sentence in enumerate(conll_sentences[N_SAMPLES:2 * N_SAMPLES]):
        length = samples[i]["input_ids"].shape[1]
        enc = tokenizer(list(sentence.words), is_split_into_words=True, truncation=True, max_length=length)
        sample = {}
        for name in INPUT_NAMES:
            row = np.zeros((1, length), dtype=np.int64)
            row[0, :len(enc[name])] = enc[name]
            sample[name] = row
        encoded.append(sample)
    assert all((o["input_ids"] != s["input_ids"]).any() for o, s in zip(encoded, samples))
    return _write_bins(tmp_path_factory.mktemp("other_bins"), encoded), encoded


def test_rerun_with_other_inputs_reuses_nothing(dyn_onnx, bins, reference, other_inputs, tmp_path):
    import onnxruntime as ort

    other_bins, other_samples = other_inputs
    out = tmp_path / "out"
    assert _cli(dyn_onnx, _input_arg(bins), out).exit_code == 0
    (first,) = _folders(out)

    result = _cli(dyn_onnx, _input_arg(other_bins), out)
    assert result.exit_code == 0, result.output
    assert "already present" not in result.output
    folders = _folders(out)
    assert len(folders) == 2
    (second,) = [f for f in folders if f != first]
    session = ort.InferenceSession(str(dyn_onnx), providers=["CPUExecutionProvider"])
    _assert_equals_reference(second, [session.run(["logits"], s)[0] for s in other_samples])
    _assert_equals_reference(first, reference)  # the first run's results are untouched


@pytest.mark.parametrize("outfmt", ["NPY", "BIN"])
def test_resume_recomputes_truncated_and_misshapen_outputs(dyn_onnx, bins, reference, tmp_path, outfmt):
    out = tmp_path / "out"
    args = ["--model", str(dyn_onnx), "--input", _input_arg(bins), "--output", str(out), "--outfmt", outfmt,
            "--batchsize", "4"]
    assert CliRunner().invoke(infer_command, args).exit_code == 0
    (folder,) = _folders(out)
    ext = outfmt.lower()
    truncated, misshapen = folder / f"input_ids_2_2_0.{ext}", folder / f"input_ids_9_9_0.{ext}"
    truncated.write_bytes(truncated.read_bytes()[:40])
    wrong = np.zeros((1, reference[9].shape[1] + 1, reference[9].shape[2]), dtype=np.float32)
    if outfmt == "NPY":
        np.save(misshapen, wrong)
    else:
        misshapen.write_bytes(wrong.tobytes())

    result = CliRunner().invoke(infer_command, args)
    assert result.exit_code == 0, result.output
    assert f"{N_SAMPLES - 2} of {N_SAMPLES} outputs already present, computing 2 (2 incomplete outputs" in \
        result.output
    for i, path in ((2, truncated), (9, misshapen)):
        got = np.load(path) if outfmt == "NPY" else np.fromfile(path, dtype=np.float32).reshape(reference[i].shape)
        np.testing.assert_allclose(got, reference[i], rtol=1e-5, atol=1e-5)


def test_resume_removes_temporaries_of_a_killed_run(dyn_onnx, bins, reference, tmp_path):
    out = tmp_path / "out"
    assert _cli(dyn_onnx, _input_arg(bins), out).exit_code == 0
    (folder,) = _folders(out)
    # what a kill -9 in the middle of writing sample 3's output leaves behind
    (folder / "input_ids_3_3_0.npy").unlink()
    stale = folder / ".input_ids_3_3_0.npy.k2m9x0qa.tmp"
    stale.write_bytes(b"\x93NUMPY half an array")

    result = _cli(dyn_onnx, _input_arg(bins), out)
    assert result.exit_code == 0, result.output
    assert "1 stale temporary files removed" in result.output
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == []
    _assert_equals_reference(folder, reference)


def test_rerun_that_reuses_everything_reports_no_speed(dyn_onnx, bins, tmp_path):
    out = tmp_path / "out"
    first = _cli(dyn_onnx, _input_arg(bins), out)
    assert "samples/s (python -m infer, model load to last output)" in first.output
    again = _cli(dyn_onnx, _input_arg(bins), out)
    assert again.exit_code == 0, again.output
    assert f"all {N_SAMPLES} outputs reused from an earlier run (no speed measured)" in again.output
    assert not re.search(r"\d \w+/s", again.output) and "throughput" not in again.output  # no speed at all
    (folder,) = _folders(out)
    record = json.loads((folder / ".infer_run.json").read_text())
    assert record["computed"] == 0 and record["reused"] == N_SAMPLES and record["samples_per_s"] is None
