"""python -m infer: outputs written by a writer thread, inputs read once.

The same tiny random BERT and real CoNLL sentences as tests/test_infer.py. The writer thread must give
the very files the in-line writes give, and a write that fails mid-run must end the run as an in-line
failure does: one line naming the file, exit 1, only whole files left, and a rerun that resumes.
"""
from __future__ import annotations

import errno
import functools
import os
import threading

import numpy as np
import pytest
from click.testing import CliRunner

import infer.offline as offline
from infer.cli import infer_command
from infer.inputs import load_checked_batches
from infer.outputs import LOCK_NAME, MANIFEST_NAME
from infer.writer import BackgroundWriter
from test_infer import (N_SAMPLES, _input_arg, _outputs, _result_folder, _run,  # noqa: F401
                        bins, dyn_onnx, samples, tokenizer)


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("outfmt", ["NPY", "BIN"])
def test_writer_thread_writes_the_inline_bytes(dyn_onnx, bins, tmp_path, outfmt):
    inline = _run(dyn_onnx, bins, tmp_path / "inline", outfmt=outfmt, batchsize=4, background_writes=False)
    threaded = _run(dyn_onnx, bins, tmp_path / "threaded", outfmt=outfmt, batchsize=4, background_writes=True)
    expected, got = _files(inline.out_dir), _files(threaded.out_dir)
    assert len(expected) == N_SAMPLES and got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], name
    assert sorted(p.name for p in threaded.written) == sorted(expected)
    assert threaded.computed == inline.computed == N_SAMPLES


def test_inputs_too_large_to_keep_are_read_again_with_the_same_results(dyn_onnx, bins, tmp_path, monkeypatch):
    kept = _run(dyn_onnx, bins, tmp_path / "kept", batchsize=4)
    monkeypatch.setattr(offline, "load_checked_batches", functools.partial(load_checked_batches, keep_bytes=0))
    reread = _run(dyn_onnx, bins, tmp_path / "reread", batchsize=4)
    assert _files(reread.out_dir) == _files(kept.out_dir)


def test_write_error_on_the_writer_thread_is_one_line_and_leaves_whole_files(dyn_onnx, bins, tmp_path,
                                                                             monkeypatch):
    """The disk fills up at the 6th output, half of it written: the run stops as an in-line write would."""
    out = tmp_path / "out"
    real_write = os.write
    calls = {"n": 0}
    threads = set()

    def write_until_the_disk_is_full(fd, data):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):  # only the outputs' temporaries fill it
            return real_write(fd, data)
        threads.add(threading.current_thread().name)
        calls["n"] += 1
        if calls["n"] == 6:
            real_write(fd, bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_until_the_disk_is_full)
    result = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--input", _input_arg(bins),
                                                "--output", str(out), "--outfmt", "NPY", "--batchsize", "4"])
    monkeypatch.setattr(os, "write", real_write)
    # stderr: the progress bar's renders (a terminal shows them on one line, wiped at the error), then the error
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [n for n in result.stderr.strip().splitlines() if n.strip() and not n.startswith("Inference: ")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    line = lines[0]
    assert line.startswith("error: ") and "cannot write it (No space left on device)" in line
    assert threads == {"infer-writer"}  # the failure happened off the main thread, and was reported all the same
    folder = _result_folder(out)
    assert line.startswith(f"error: {folder}/") and line.split(": ")[1].endswith("_0.npy")
    outputs = _outputs(folder, "npy")
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST_NAME, LOCK_NAME] +
                                                              [p.name for p in outputs.values()])  # no temporary
    assert len(outputs) == 5  # the five before the failure; nothing written after it
    for path in outputs.values():
        assert np.load(path).shape[0] == 1
    assert not (out / f"{folder.name}_summary.json").exists()

    resumed = _run(dyn_onnx, bins, out, batchsize=4)
    assert resumed.out_dir == folder and resumed.computed == N_SAMPLES - 5
    assert len(_outputs(folder, "npy")) == N_SAMPLES and (out / f"{folder.name}_summary.json").is_file()


@pytest.mark.parametrize("background_writes", [True, False])
def test_a_failing_model_keeps_the_finished_batches(dyn_onnx, bins, samples, tmp_path, background_writes):
    """The model fails on the 3rd batch: the two batches before it are written whole, by the writer thread
    as in line, before the run ends (and its folder lock goes); a rerun resumes after them."""
    out = tmp_path / "out"
    real_factory = offline._default_runner

    def failing_runner(model, device):
        runner = real_factory(model, device)
        real_infer, runs = runner.infer, {"n": 0}

        def infer(feed, check_inputs=True):
            runs["n"] += 1
            if runs["n"] == 2 + 3:  # after the warm-ups (one per length), the 3rd batch
                raise RuntimeError("device lost")
            return real_infer(feed, check_inputs)
        runner.infer = infer
        return runner

    assert len({s["input_ids"].shape[1] for s in samples}) == 2  # the count of warm-up runs above
    with pytest.raises(RuntimeError, match="device lost"):
        _run(dyn_onnx, bins, out, batchsize=4, runner_factory=failing_runner, background_writes=background_writes)
    assert not [t for t in threading.enumerate() if t.name == "infer-writer"]
    folder = _result_folder(out)
    outputs = _outputs(folder, "npy")
    assert len(outputs) == 8 and not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    for path in outputs.values():
        assert np.load(path).shape[0] == 1
    assert _run(dyn_onnx, bins, out, batchsize=4).computed == N_SAMPLES - 8


def test_background_writer_reports_the_first_error_and_drops_the_rest():
    done = []

    def write(item):
        if item == 2:
            raise OSError(errno.EROFS, "Read-only file system")
        done.append(item)
        return [item]

    writer = BackgroundWriter(write, depth=1)
    with pytest.raises(OSError, match="Read-only"):
        for item in range(50):
            writer.put(item)
        writer.close()
    assert done == [0, 1]
    assert not writer._thread.is_alive()


def test_background_writer_returns_every_write_in_order():
    with BackgroundWriter(lambda item: [item * 2], depth=2) as writer:
        for item in range(20):
            writer.put(item)
        assert writer.close() == [item * 2 for item in range(20)]


@pytest.mark.parametrize("fail", [False, True])
def test_background_writer_hands_the_gil_over_quickly_and_restores_the_interval(fail):
    import sys

    before = sys.getswitchinterval()
    seen = []

    def write(item):
        seen.append(sys.getswitchinterval())
        if fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        return [item]

    writer = BackgroundWriter(write, depth=1)
    if fail:
        with pytest.raises(OSError, match="No space"):
            writer.put(0)
            writer.close()
    else:
        writer.put(0)
        writer.close()
    assert seen and seen[0] <= 0.0005 < before
    assert sys.getswitchinterval() == before
