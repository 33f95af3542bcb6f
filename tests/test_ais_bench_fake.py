"""The NPU path through a faithful stand-in for ais_bench (tests/fake_ais_bench, ait's input rules, real
ONNX Runtime logits) and a stand-in `atc`: gear runs, umask 002, stale gear folders, the OM's batch, and the
commands convert_om.sh prints, pasted into bash."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from conftest import ROOT
from convert import atc as atc_mod
from infer.cli import infer_command
from postprocess.cli import main as bert_metric
from preprocess.pipeline import create_bins

FAKE_DIR = Path(__file__).resolve().parent / "fake_ais_bench"
SOC = "Ascend310P3"
NAMES = ("input_ids", "attention_mask", "token_type_ids")
BUCKETS = "16,32,64"  # bin_create adds --seq_len 64 itself; given here so the OM has every length


def conll_file(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_model_dir):
    from convert.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model_dir=tiny_model_dir, output=path)
    return path


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """`python -m ais_bench` importable here and in subprocesses, and `atc` on PATH."""
    bindir = tmp_path / "fake_bin"
    bindir.mkdir()
    atc = bindir / "atc"
    atc.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_DIR / "fake_atc.py"}" "$@"\n')
    atc.chmod(0o755)
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKE_DIR), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return bindir


def make_bins(tmp_path, tiny_model_dir, sentences, name="bins"):
    data = conll_file(tmp_path / f"{name}.txt", sentences)
    return create_bins(data, tiny_model_dir, tmp_path / name, seq_len=64, buckets=tuple(int(b) for b in BUCKETS.split(",")), show_progress=False)


def build_om(tiny_onnx, output, bs=4, buckets=BUCKETS):
    """convert_om.sh with the stand-in atc: the .om (JSON) and its .atc.json record."""
    result = CliRunner().invoke(atc_mod.main, ["--model", str(tiny_onnx), "--bs", str(bs), "--buckets", buckets,
                                               "--soc_version", SOC, "--output", str(output)])
    assert result.exit_code == 0, result.output
    return Path(f"{output}.om")


def infer(*args):
    args = [str(a) for a in args]
    return CliRunner().invoke(infer_command, args, obj={"argv": ["python", "-m", "infer", *args]})


def score(result_dir, binset) -> dict:
    result = CliRunner().invoke(bert_metric, ["--result_dir", str(result_dir), "--anno_file", str(binset.anno_file)])
    assert result.exit_code == 0, result.output
    return json.loads((Path(result_dir) / "result.json").read_text())


def ort_f1(tmp_path, tiny_onnx, binset) -> float:
    inputs = ",".join(map(str, binset.input_dirs()))
    result = infer("--model", tiny_onnx, "--input", inputs, "--output", tmp_path / "ort", "--output_dirname", "run",
                   "--outfmt", "NPY", "--batchsize", 4)
    assert result.exit_code == 0, result.output
    return score(tmp_path / "ort" / "run", binset)["f1"]


def test_gear_run_takes_the_batch_from_the_om_and_scores_like_onnx_runtime(tmp_path, fake_tools, tiny_onnx,
                                                                           tiny_model_dir, conll_sentences):
    """No --batchsize: the gears are `4,L` (from the record), not `1,L`; hard links, not soft links."""
    binset = make_bins(tmp_path, tiny_model_dir, conll_sentences[:50])
    om = build_om(tiny_onnx, tmp_path / "tiny_gears")
    record = json.loads((tmp_path / "tiny_gears.atc.json").read_text())
    assert record["batch_size"] == 4 and record["seq_lens"] == [16, 32, 64] and record["gears"] is True
    result = infer("--model", om, "--input", ",".join(map(str, binset.input_dirs())), "--output", tmp_path / "out",
                   "--outfmt", "NPY")
    assert result.exit_code == 0, result.output
    assert result.output.count("--dymDims input_ids:4,") >= 2
    (result_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]  # the gear staging is gone
    assert len(list(result_dir.glob("*.npy"))) == len(list(binset.input_dirs()[0].iterdir()))
    assert score(result_dir, binset)["f1"] == ort_f1(tmp_path, tiny_onnx, binset)


def test_under_umask_002_bins_and_output_pass_ais_bench_permission_rules(tmp_path, fake_tools, tiny_onnx,
                                                                         tiny_model_dir, conll_sentences):
    old = os.umask(0o002)
    try:
        binset = make_bins(tmp_path, tiny_model_dir, conll_sentences[:20])
        om = build_om(tiny_onnx, tmp_path / "m")
        result = infer("--model", om, "--input", ",".join(map(str, binset.input_dirs())),
                       "--output", tmp_path / "out", "--output_dirname", "run", "--outfmt", "NPY")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    for path in [binset.bin_dir, *binset.bin_dir.rglob("*"), tmp_path / "out"]:
        assert not stat.S_IMODE(path.lstat().st_mode) & 0o022, path
        assert not path.is_symlink()
    gear_files = list((binset.bin_dir / "gears").rglob("*.bin"))
    assert len(gear_files) == 3 * len(list(binset.input_dirs()[0].iterdir()))
    assert all(f.stat().st_nlink == 2 for f in gear_files)  # hard links to the bin set's own files
    assert score(tmp_path / "out" / "run", binset)["num_sentences"] == 20


def test_group_writable_input_is_a_one_line_error_before_ais_bench_runs(tmp_path, fake_tools, tiny_onnx,
                                                                        tiny_model_dir, conll_sentences):
    binset = make_bins(tmp_path, tiny_model_dir, conll_sentences[:10])
    om = build_om(tiny_onnx, tmp_path / "m")
    bad = binset.input_dirs()[1] / "attention_mask_3_3.bin"
    bad.chmod(0o664)
    result = infer("--model", om, "--input", ",".join(map(str, binset.input_dirs())), "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: is group- or other-writable (mode 664), which ais_bench refuses: run chmod -R go-w {bad}"]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_second_bin_set_into_the_same_output_is_fed_its_own_files(tmp_path, fake_tools, tiny_onnx, tiny_model_dir,
                                                                  conll_sentences):
    """Both sets name their files input_ids_<i>_<i>.bin with the same lengths: gear folders must not carry over."""
    first = make_bins(tmp_path, tiny_model_dir, conll_sentences[:30], name="first")
    second = make_bins(tmp_path, tiny_model_dir, conll_sentences[30:60], name="second")
    om = build_om(tiny_onnx, tmp_path / "m")
    for binset, run in ((first, "a"), (second, "b")):
        result = infer("--model", om, "--input", ",".join(map(str, binset.input_dirs())), "--output",
                       tmp_path / "out", "--output_dirname", run, "--outfmt", "NPY")
        assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    outputs = sorted((tmp_path / "out" / "b").glob("*.npy"))
    assert len(outputs) == len(list(second.input_dirs()[0].iterdir()))
    for output in outputs:
        sample = output.name[: -len("_0.npy")].split("_", 2)[2]  # input_ids_7_7_0.npy -> 7_7
        feeds = {name: np.fromfile(second.bin_dir / name / f"{name}_{sample}.bin", dtype="<i8").reshape(1, -1)
                 for name in NAMES}
        np.testing.assert_allclose(np.load(output), session.run(None, feeds)[0], atol=1e-4)


def test_batchsize_other_than_the_om_batch_is_refused(tmp_path, fake_tools, tiny_onnx, tiny_model_dir,
                                                      conll_sentences):
    binset = make_bins(tmp_path, tiny_model_dir, conll_sentences[:10])
    om = build_om(tiny_onnx, tmp_path / "m")
    inputs = ",".join(map(str, binset.input_dirs()))
    result = infer("--model", om, "--input", inputs, "--output", tmp_path / "out", "--batchsize", 8)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {om}: built with --bs 4 ({tmp_path / 'm.atc.json'}), not --batchsize 8; "
        "leave --batchsize out or give 4"]
    assert not (tmp_path / "out").exists()
    # without the record the batch cannot be known: ask for it rather than guess 1
    (tmp_path / "m.atc.json").unlink()
    result = infer("--model", om, "--input", inputs, "--output", tmp_path / "out")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "give --batchsize, the --bs the OM was built with" in result.stderr and str(om) in result.stderr
    result = infer("--model", om, "--input", inputs, "--output", tmp_path / "out", "--batchsize", 4,
                   "--output_dirname", "run", "--outfmt", "NPY")
    assert result.exit_code == 0, result.output
    assert score(tmp_path / "out" / "run", binset)["missing"] == []


def test_printed_convert_om_script_pasted_into_bash_scores_like_onnx_runtime(tmp_path, fake_tools, tiny_onnx,
                                                                             tiny_model_dir, conll_sentences):
    binset = make_bins(tmp_path, tiny_model_dir, conll_sentences[:50])
    proc = subprocess.run(["bash", str(ROOT / "convert_om.sh"), "--model", str(tiny_onnx), "--bs", "4",
                           "--buckets", BUCKETS, "--soc_version", SOC, "--output", str(tmp_path / "om" / "tiny"),
                           "--bin_dir", str(binset.bin_dir), "--out_dir", str(tmp_path / "result"), "--dry-run"],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "om").mkdir()
    pasted = subprocess.run(["bash", "-e"], input=proc.stdout, capture_output=True, text=True, cwd=tmp_path)
    assert pasted.returncode == 0, proc.stdout + pasted.stdout + pasted.stderr
    assert [p.name for p in (tmp_path / "result").iterdir() if p.is_dir()] == ["tiny"]
    result = json.loads((tmp_path / "result" / "tiny" / "result.json").read_text())
    assert result["missing"] == [] and result["num_sentences"] == 50
    assert result["f1"] == ort_f1(tmp_path, tiny_onnx, binset)
