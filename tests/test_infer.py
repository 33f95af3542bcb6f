"""infer: real CoNLL sentences through a real (tiny, random) BERT exported to ONNX.

Fixtures export the model themselves (torch.onnx.export, TorchScript path) and write the
.bin folders in the docs/internals.md format, so these tests depend on no other stage.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from infer.cli import infer_command
from infer.offline import run_offline, run_pure
from infer.outputs import LOCK_NAME, MANIFEST_NAME, RUN_RECORD_NAME
from runners.base import TensorMeta
from runners.onnxrt import OrtRunner

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
NUM_LABELS = 9
N_SAMPLES = 22  # with --batchsize 4 each length group ends in a short, padded batch
TS_RE = re.compile(r"^\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}$")
SUMMARY_KEYS = {"filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
                "npu_compute_time_list", "pid"}
STAT_KEYS = {"min", "max", "mean", "median", "percentile(99%)", "count"}


def _export(model_dir: Path, path: Path, feed: dict, dynamic: bool) -> Path:
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    args = tuple(torch.from_numpy(feed[n]) for n in INPUT_NAMES)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES + ["logits"]} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=INPUT_NAMES, output_names=["logits"],
                          dynamic_axes=axes, dynamo=False)
    return path


def _encode(tokenizer, sentences, length_for):
    """Per sentence: {input name: (1, L) int64}, L = length_for(real token count)."""
    encoded = []
    for sentence in sentences:
        enc = tokenizer(list(sentence.words), is_split_into_words=True)
        length = length_for(len(enc["input_ids"]))
        sample = {}
        for name in INPUT_NAMES:
            row = np.zeros((1, length), dtype=np.int64)
            row[0, :len(enc[name])] = enc[name]
            sample[name] = row
        encoded.append(sample)
    return encoded


def _write_bins(folder: Path, samples) -> Path:
    for i, sample in enumerate(samples):
        for name in INPUT_NAMES:
            path = folder / name / f"{name}_{i}_{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            sample[name].astype("<i8").tofile(path)
    return folder


def _input_arg(folder: Path) -> str:
    return ",".join(str(folder / n) for n in INPUT_NAMES)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def samples(tokenizer, conll_sentences):
    """22 real sentences in two length buckets (32 and 64 tokens), as preprocess --buckets writes them."""
    encoded = _encode(tokenizer, conll_sentences[:N_SAMPLES], lambda n: 32 if n <= 32 else 64)
    assert {s["input_ids"].shape[1] for s in encoded} == {32, 64}
    return encoded


@pytest.fixture(scope="module")
def bins(tmp_path_factory, samples):
    return _write_bins(tmp_path_factory.mktemp("bins"), samples)


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory, tiny_model_dir, samples):
    # Traced on a padded real batch so the mask path is exercised in the trace.
    feed = {n: np.concatenate([samples[0][n][:, :32], samples[1][n][:, :32]]) for n in INPUT_NAMES}
    return _export(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "tiny_dyn.onnx", feed, dynamic=True)


@pytest.fixture(scope="module")
def reference(dyn_onnx, samples):
    """Each sample's logits from a plain ORT session, one sample per run."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(dyn_onnx), providers=["CPUExecutionProvider"])
    return [session.run(["logits"], sample)[0] for sample in samples]


@pytest.fixture(scope="module")
def npy_run(tmp_path_factory, dyn_onnx, bins):
    """One CLI run, NPY, batch 4: what most layout tests look at."""
    out = tmp_path_factory.mktemp("out_npy")
    result = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--input", _input_arg(bins),
                                                "--output", str(out), "--outfmt", "NPY", "--batchsize", "4"])
    assert result.exit_code == 0, result.output
    return out, result


def _result_folder(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def _outputs(folder: Path, ext: str) -> dict[int, Path]:
    found = {}
    for path in folder.iterdir():
        match = re.search(rf"_(\d+)_0\.{ext}$", path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _run(dyn_onnx, bins, out, **kw):
    kw.setdefault("outfmt", "NPY")
    return run_offline(model=dyn_onnx, input=_input_arg(bins), output=out, log=lambda _: None, **kw)


# ---------------------------------------------------------------------------------------------
# layout, names, summary
# ---------------------------------------------------------------------------------------------

def test_output_layout_names_and_summary(npy_run, samples):
    out, result = npy_run
    folder = _result_folder(out)
    assert TS_RE.match(folder.name)
    summary_file = out / f"{folder.name}_summary.json"
    assert sorted(p.name for p in out.iterdir()) == sorted([folder.name, summary_file.name])

    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == sorted(f"input_ids_{i}_{i}_0.npy" for i in range(N_SAMPLES))
    for i, path in _outputs(folder, "npy").items():
        logits = np.load(path)
        assert logits.dtype == np.float32
        assert logits.shape == (1, samples[i]["input_ids"].shape[1], NUM_LABELS)

    summary = json.loads(summary_file.read_text())
    assert set(summary) == SUMMARY_KEYS
    for key in ("NPU_compute_time", "H2D_latency", "D2H_latency"):
        assert set(summary[key]) == STAT_KEYS
    n_32 = sum(s["input_ids"].shape[1] == 32 for s in samples)
    # per length group, batches of 4 and a short last one that is run as it is (a dynamic-batch graph)
    rows = [min(4, n - start) for n in (n_32, N_SAMPLES - n_32) for start in range(0, n, 4)]
    compute = summary["NPU_compute_time"]
    assert compute["count"] == len(rows) == len(summary["npu_compute_time_list"])
    assert compute["min"] <= compute["median"] <= compute["max"]
    assert summary["throughput"] == pytest.approx(1000 * np.mean(rows) / compute["mean"])
    assert summary["pid"] > 0 and isinstance(summary["args"], list)
    assert len(summary["filesinfo"]) == N_SAMPLES
    info = summary["filesinfo"]["3"]
    assert [Path(p).name for p in info["infiles"]] == [f"{n}_3_3.bin" for n in INPUT_NAMES]
    assert [Path(p).name for p in info["outfiles"]] == ["input_ids_3_3_0.npy"]

    assert "[INFO] -----------------Performance Summary------------------" in result.output
    assert f"throughput 1000*batchsize.mean({float(np.mean(rows))})/NPU_compute_time.mean(" in result.output
    assert re.search(r"inference: 22 samples in [\d.]+ s = [\d.]+ samples/s \(python -m infer, model load "
                     r"to last output\)\n", result.output)


def test_logits_equal_direct_ort_run(npy_run, reference):
    folder = _result_folder(npy_run[0])
    outputs = _outputs(folder, "npy")
    assert sorted(outputs) == list(range(N_SAMPLES))
    for i, path in outputs.items():
        np.testing.assert_allclose(np.load(path), reference[i], rtol=1e-5, atol=1e-5, err_msg=path.name)


def test_batch_size_does_not_change_results(npy_run, dyn_onnx, bins, tmp_path):
    result = _run(dyn_onnx, bins, tmp_path / "bs1", batchsize=1)
    assert result.computed == N_SAMPLES and result.summary["NPU_compute_time"]["count"] == N_SAMPLES
    bs1 = _outputs(result.out_dir, "npy")
    bs4 = _outputs(_result_folder(npy_run[0]), "npy")
    assert sorted(bs1) == sorted(bs4)
    for i in bs1:
        # Rows of a batch are computed independently, so batching and padding change no bit.
        assert bs1[i].read_bytes() == bs4[i].read_bytes(), bs1[i].name


def test_bin_output_holds_the_npy_array(npy_run, dyn_onnx, bins, tmp_path):
    result = _run(dyn_onnx, bins, tmp_path / "bin", outfmt="BIN", batchsize=4)
    bin_files = _outputs(result.out_dir, "bin")
    npy_files = _outputs(_result_folder(npy_run[0]), "npy")
    assert sorted(bin_files) == sorted(npy_files)
    for i, path in bin_files.items():
        expected = np.load(npy_files[i])
        raw = np.fromfile(path, dtype=np.float32)
        assert raw.size == expected.size
        np.testing.assert_array_equal(raw.reshape(expected.shape), expected)
        assert path.read_bytes() == expected.tobytes()


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------

def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_rerun_recomputes_nothing_and_resume_fills_gaps(dyn_onnx, bins, tmp_path):
    out = tmp_path / "out"
    first = _run(dyn_onnx, bins, out, batchsize=4)
    folder = first.out_dir
    before = _mtimes(folder)
    assert json.loads((folder / MANIFEST_NAME).read_text())["model"]["path"] == str(Path(dyn_onnx).resolve())

    second = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--input", _input_arg(bins),
                                                "--output", str(out), "--outfmt", "NPY", "--batchsize", "4"])
    assert second.exit_code == 0, second.output
    assert f"{N_SAMPLES} of {N_SAMPLES} outputs already present, nothing to do" in second.output
    assert [p for p in out.iterdir() if p.is_dir()] == [folder]
    # the outputs and the manifest are untouched (the lock and the run record are this run's own)
    assert {n: m for n, m in _mtimes(folder).items() if n not in (LOCK_NAME, RUN_RECORD_NAME)} == \
        {n: m for n, m in before.items() if n not in (LOCK_NAME, RUN_RECORD_NAME)}

    # An interrupted run: some outputs never made it. Only those are recomputed, into the same folder.
    gone = ["input_ids_0_0_0.npy", "input_ids_7_7_0.npy", "input_ids_21_21_0.npy"]
    kept_before = {n: m for n, m in before.items() if n not in gone}
    saved = {n: np.load(folder / n) for n in gone}
    for name in gone:
        (folder / name).unlink()
    third = _run(dyn_onnx, bins, out, batchsize=4)
    assert third.out_dir == folder and third.computed == 3 and third.skipped == N_SAMPLES - 3
    assert sorted(p.name for p in third.written) == sorted(gone)
    after = _mtimes(folder)
    assert {n: after[n] for n in kept_before if not n.startswith(".")} == \
        {n: m for n, m in kept_before.items() if not n.startswith(".")}
    for name in gone:
        np.testing.assert_array_equal(np.load(folder / name), saved[name])


def test_interrupted_run_leaves_only_whole_files(dyn_onnx, bins, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_save = np.save
    calls = {"n": 0}

    def save_then_die(handle, array):
        calls["n"] += 1
        if calls["n"] == 6:  # the 6th output: half its bytes are on disk when the run is killed
            handle.write(b"\x93NUMPY half")
            raise KeyboardInterrupt
        real_save(handle, array)

    monkeypatch.setattr(np, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(dyn_onnx, bins, out, batchsize=4)
    monkeypatch.setattr(np, "save", real_save)
    folder = _result_folder(out)
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([MANIFEST_NAME, LOCK_NAME] + [p.name for p in _outputs(folder, "npy").values()])  # no temp
    assert len(_outputs(folder, "npy")) == 5
    for path in _outputs(folder, "npy").values():
        assert np.load(path).shape[-1] == NUM_LABELS
    assert not (out / f"{folder.name}_summary.json").exists()

    resumed = _run(dyn_onnx, bins, out, batchsize=4)
    assert resumed.out_dir == folder and resumed.computed == N_SAMPLES - 5
    assert len(_outputs(folder, "npy")) == N_SAMPLES and (out / f"{folder.name}_summary.json").is_file()


def test_other_model_gets_a_new_folder(dyn_onnx, bins, tmp_path):
    out = tmp_path / "out"
    first = _run(dyn_onnx, bins, out, batchsize=4)
    other = tmp_path / "copy.onnx"
    shutil.copy(dyn_onnx, other)
    second = _run(other, bins, out, batchsize=4)
    assert second.out_dir != first.out_dir and second.computed == N_SAMPLES


def test_output_dirname(dyn_onnx, bins, tmp_path):
    out = tmp_path / "out"
    result = _run(dyn_onnx, bins, out, batchsize=8, output_dirname="fixed")
    assert result.out_dir == out / "fixed" and (out / "fixed_summary.json").is_file()
    assert len(_outputs(out / "fixed", "npy")) == N_SAMPLES
    again = _run(dyn_onnx, bins, out, batchsize=8, output_dirname="fixed")
    assert again.computed == 0


# ---------------------------------------------------------------------------------------------
# zero-input mode, static graphs
# ---------------------------------------------------------------------------------------------

def test_zero_input_loop_writes_summary(dyn_onnx, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--output", str(out), "--loop", "3",
                                                "--batchsize", "2", "--seq_len", "16", "--outfmt", "NPY"])
    assert result.exit_code == 0, result.output
    folder = _result_folder(out)
    summary = json.loads((out / f"{folder.name}_summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["NPU_compute_time"]["count"] == 3
    assert summary["throughput"] == pytest.approx(1000 * 2 / summary["NPU_compute_time"]["mean"])
    assert np.load(folder / "pure_infer_data_0.npy").shape == (2, 16, NUM_LABELS)
    assert "NPU_compute_time (ms): min = " in result.output


def test_zero_input_without_output_only_prints(dyn_onnx):
    lines = []
    result = run_pure(model=dyn_onnx, loop=2, warmup_count=0, log=lines.append)
    assert result.summary["NPU_compute_time"]["count"] == 2 and result.out_dir is None
    assert "pure inference on zero inputs (input_ids:1,128;" in lines[0]


@pytest.fixture(scope="module")
def static_case(tmp_path_factory, tiny_model_dir, tokenizer, conll_sentences):
    """A graph with batch fixed to 4 and sequence to 64, and 6 samples padded to 64."""
    encoded = _encode(tokenizer, conll_sentences[:6], lambda n: 64)
    feed = {n: np.concatenate([s[n] for s in encoded[:4]]) for n in INPUT_NAMES}
    folder = tmp_path_factory.mktemp("static")
    model = _export(tiny_model_dir, folder / "tiny_static.onnx", feed, dynamic=False)
    return model, _write_bins(folder / "bins", encoded), encoded


def test_static_batch_graph_gets_full_batches(static_case, tmp_path):
    model, bins, encoded = static_case
    result = run_offline(model=model, input=_input_arg(bins), output=tmp_path / "out", outfmt="NPY",
                         log=lambda _: None)
    assert result.summary["NPU_compute_time"]["count"] == 2  # 6 samples -> 4 + (2 real + 2 padding)
    outputs = _outputs(result.out_dir, "npy")
    assert sorted(outputs) == list(range(6))  # padded rows are not written
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    last = {n: np.concatenate([encoded[4][n], encoded[5][n], encoded[5][n], encoded[5][n]]) for n in INPUT_NAMES}
    expected = session.run(["logits"], last)[0]
    np.testing.assert_allclose(np.load(outputs[5])[0], expected[1], rtol=1e-5, atol=1e-5)


def test_static_batch_disagreeing_batchsize_is_an_error(static_case, tmp_path):
    model, bins, _ = static_case
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", _input_arg(bins),
                                                "--output", str(tmp_path / "out"), "--batchsize", "2"])
    _assert_one_line_error(result, "fixed batch of 4")
    assert not (tmp_path / "out").exists()


def test_static_seq_len_mismatch_names_the_file(static_case, bins, tmp_path):
    model, _, _ = static_case
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", _input_arg(bins),
                                                "--output", str(tmp_path / "out")])
    _assert_one_line_error(result, "(1, 64) int64 tensor")
    assert re.search(r"_\d+_\d+\.bin: 256 bytes", result.stderr)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# errors: one line naming the file, exit 1, no traceback, nothing written
# ---------------------------------------------------------------------------------------------

def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def bins_copy(bins, tmp_path):
    return Path(shutil.copytree(bins, tmp_path / "bins"))


def _invoke(model, input_arg, out):
    return CliRunner().invoke(infer_command, ["--model", str(model), "--input", input_arg,
                                              "--output", str(out), "--outfmt", "NPY", "--batchsize", "4"])


def test_wrong_size_bin_is_an_error_naming_the_file(dyn_onnx, bins_copy, tmp_path):
    bad = bins_copy / "attention_mask" / "attention_mask_5_5.bin"
    bad.write_bytes(bad.read_bytes()[:-3])
    out = tmp_path / "out"
    _assert_one_line_error(_invoke(dyn_onnx, _input_arg(bins_copy), out), str(bad), "not a whole (1, L) int64")
    assert not out.exists()


def test_length_differs_between_inputs_of_a_sample(dyn_onnx, bins_copy, tmp_path):
    bad = bins_copy / "token_type_ids" / "token_type_ids_2_2.bin"
    bad.write_bytes(bad.read_bytes() + bytes(8 * 32))
    out = tmp_path / "out"
    _assert_one_line_error(_invoke(dyn_onnx, _input_arg(bins_copy), out), str(bad), "tokens but")
    assert not out.exists()


def test_folders_with_different_sample_ids(dyn_onnx, bins_copy, tmp_path):
    (bins_copy / "attention_mask" / "attention_mask_9_9.bin").unlink()
    out = tmp_path / "out"
    line = _assert_one_line_error(_invoke(dyn_onnx, _input_arg(bins_copy), out),
                                  str(bins_copy / "attention_mask"), str(bins_copy / "input_ids"), "'9_9'")
    assert "different sample ids" in line
    assert not out.exists()


def test_missing_input_folder(dyn_onnx, bins, tmp_path):
    missing = tmp_path / "nowhere" / "token_type_ids"
    arg = f"{bins / 'input_ids'},{bins / 'attention_mask'},{missing}"
    out = tmp_path / "out"
    _assert_one_line_error(_invoke(dyn_onnx, arg, out), str(missing), "does not exist")
    assert not out.exists()


def test_missing_model_file(bins, tmp_path):
    model = tmp_path / "absent.onnx"
    out = tmp_path / "out"
    _assert_one_line_error(_invoke(model, _input_arg(bins), out), str(model), "does not exist")
    assert not out.exists()


def test_model_that_is_not_onnx(bins, tmp_path):
    model = tmp_path / "garbage.onnx"
    model.write_bytes(b"not a protobuf")
    _assert_one_line_error(_invoke(model, _input_arg(bins), tmp_path / "out"), str(model),
                           "ONNX Runtime cannot load it")
    assert not (tmp_path / "out").exists()


def test_folders_in_the_wrong_order(dyn_onnx, bins, tmp_path):
    arg = ",".join(str(bins / n) for n in ["attention_mask", "input_ids", "token_type_ids"])
    _assert_one_line_error(_invoke(dyn_onnx, arg, tmp_path / "out"), "model's input order")
    assert not (tmp_path / "out").exists()


def test_too_few_folders(dyn_onnx, bins, tmp_path):
    arg = ",".join(str(bins / n) for n in INPUT_NAMES[:2])
    _assert_one_line_error(_invoke(dyn_onnx, arg, tmp_path / "out"), "2 folder(s)", "takes 3 inputs")


# ---------------------------------------------------------------------------------------------
# the runner interface
# ---------------------------------------------------------------------------------------------

def test_ort_runner_interface(dyn_onnx, samples, reference):
    from common.errors import ValidationError

    runner = OrtRunner.from_path(dyn_onnx)
    assert runner.session is None  # lazy: nothing loaded before activate()
    with runner:
        metas = runner.get_input_metadata()
        assert [m.name for m in metas] == INPUT_NAMES
        assert metas[0] == TensorMeta("input_ids", np.dtype(np.int64), ("batch", "sequence"))
        assert runner.providers == ["CPUExecutionProvider"]
        outputs = runner.infer(samples[0])
        np.testing.assert_allclose(outputs["logits"], reference[0], rtol=1e-5, atol=1e-5)
        assert runner.inference_time > 0 and len(runner.inference_times) == 1
        with pytest.raises(ValidationError, match="int32"):
            runner.infer({n: a.astype(np.int32) for n, a in samples[0].items()})
        with pytest.raises(ValidationError, match="missing"):
            runner.infer({"input_ids": samples[0]["input_ids"]})
        with pytest.raises(ValidationError, match="shape"):
            runner.infer({n: a[0] for n, a in samples[0].items()})
    assert not runner.is_active and runner.session is None


def test_physical_cores_and_providers():
    from runners.onnxrt import physical_cores, providers_for_device

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    assert providers_for_device(0, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers_for_device(2, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == \
        [("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]


# ---------------------------------------------------------------------------------------------
# --max_tokens: samples regrouped by their real length (dynamic graphs)
# ---------------------------------------------------------------------------------------------

def test_max_tokens_regroups_by_real_length_with_the_same_logits(dyn_onnx, bins, samples, tmp_path):
    plain = _run(dyn_onnx, bins, tmp_path / "plain", batchsize=4)
    packed = _run(dyn_onnx, bins, tmp_path / "packed", batchsize=64, max_tokens=96)
    # 22 sentences of 9..46 real tokens in 96-token batches: more batches than the 2 length buckets
    assert packed.summary["NPU_compute_time"]["count"] > 2
    assert packed.summary["args"][-2:] == ["--max_tokens", "96"]
    want, got = _outputs(plain.out_dir, "npy"), _outputs(packed.out_dir, "npy")
    assert sorted(got) == sorted(want) == list(range(N_SAMPLES))
    for index, sample in enumerate(samples):
        full, short = np.load(want[index]), np.load(got[index])
        assert short.shape == full.shape == (1, sample["input_ids"].shape[1], NUM_LABELS)  # length on disk
        real = int(sample["attention_mask"].sum())
        np.testing.assert_allclose(short[0, :real], full[0, :real], rtol=1e-5, atol=1e-5)
        assert not short[0, real:].any()  # never computed: 0, not whatever the padding gave


def test_max_tokens_batches_stay_under_the_budget(dyn_onnx, bins, tmp_path, monkeypatch):
    shapes = []
    original = OrtRunner.infer_impl

    def recording(self, feed):
        shapes.append(feed["input_ids"].shape)
        return original(self, feed)

    monkeypatch.setattr(OrtRunner, "infer_impl", recording)
    _run(dyn_onnx, bins, tmp_path / "out", batchsize=3, max_tokens=100, warmup_count=0)
    assert sum(rows for rows, _ in shapes) == N_SAMPLES
    assert all(rows <= 3 and (rows == 1 or rows * length <= 100) for rows, length in shapes)
    assert max(length for _, length in shapes) < 64  # trimmed to real lengths, not the 64-token bucket
    assert [length for _, length in shapes] == sorted(length for _, length in shapes)


def test_real_lengths_end_at_the_last_attended_position():
    from infer.repack import real_lengths

    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert real_lengths(mask).tolist() == [2, 3, 1, 4]


def test_max_tokens_on_a_static_graph_is_a_one_line_error(static_case, tmp_path):
    model, bins, _ = static_case
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", _input_arg(bins),
                                                "--output", str(tmp_path / "out"), "--max_tokens", "512"])
    _assert_one_line_error(result, str(model), "dynamic batch and sequence axes")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, fragment", [(["--max_tokens", "0"], "at least 1"),
                                              (["--max_tokens", "64", "--loop", "2"], None)])
def test_max_tokens_values(dyn_onnx, bins, tmp_path, extra, fragment):
    result = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--input", _input_arg(bins),
                                                "--output", str(tmp_path / "out"), *extra])
    if fragment:
        _assert_one_line_error(result, fragment)
        assert not (tmp_path / "out").exists()
    else:
        assert result.exit_code == 0, result.output
        assert "regrouped by real length, up to 64 padded tokens" in result.output


def test_max_tokens_without_inputs_is_refused(dyn_onnx, tmp_path):
    result = CliRunner().invoke(infer_command, ["--model", str(dyn_onnx), "--max_tokens", "64"])
    _assert_one_line_error(result, "--max_tokens", "--input")


def test_max_tokens_needs_an_attention_mask(tmp_path, tiny_model_dir, samples):
    """A graph that takes only input_ids: nothing says where a sample really ends."""
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(tiny_model_dir).eval()
    path = tmp_path / "ids_only.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(samples[0]["input_ids"]),), str(path), input_names=["input_ids"],
                          output_names=["logits"], dynamic_axes={"input_ids": {0: "b", 1: "s"}}, dynamo=False)
    folder = tmp_path / "bins"
    for i, sample in enumerate(samples[:3]):
        (folder / "input_ids").mkdir(parents=True, exist_ok=True)
        sample["input_ids"].astype("<i8").tofile(folder / "input_ids" / f"input_ids_{i}_{i}.bin")
    result = CliRunner().invoke(infer_command, ["--model", str(path), "--input", str(folder / "input_ids"),
                                                "--output", str(tmp_path / "out"), "--max_tokens", "64"])
    _assert_one_line_error(result, str(path), "attention_mask")
    assert not (tmp_path / "out").exists()
