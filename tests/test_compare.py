"""convert.compare: two runners side by side on the same real CoNLL sentences (tiny random BERTs)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT, build_tiny_model
from convert import compare as compare_mod, onnx_io
from convert.export import export_onnx
from convert.fix import fix_onnx
from convert.simplify import simplify_onnx


@pytest.fixture(scope="module")
def graphs(tiny_model_dir, conll, tmp_path_factory):
    """The tiny BERT exported (dynamic axes), fp16-fixed, and simplified to a static 2 x 48 shape."""
    folder = tmp_path_factory.mktemp("compare")
    plain = folder / "plain.onnx"
    export_onnx(model_dir=tiny_model_dir, output=plain, num_sentences=4)
    fixed = folder / "fixed.onnx"
    fix_onnx(input=plain, output=fixed, num_sentences=4)
    static = folder / "static.onnx"
    simplify_onnx(input=plain, output=static, batch_size=2, seq_len=48)
    return {"plain": plain, "fixed": fixed, "static": static}


def _compare(*args):
    result = CliRunner().invoke(compare_mod.main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.output.strip().splitlines())
    return lines, result.output


def _max_diff(lines) -> float:
    return float(lines["max |diff|"])


def test_a_graph_against_itself_is_identical(graphs, conll):
    lines, text = _compare("--model", graphs["plain"], "--model", graphs["plain"], "--sentences", "20")
    assert _max_diff(lines) == 0.0 and float(lines["mean |diff|"]) == 0.0
    assert lines["word labels agree"].startswith("100.00% (")
    assert lines["inputs"].startswith("20 sentences") and str(conll / "test.txt") in lines["inputs"]
    assert "graph optimisation: disable" in lines["A"] and "graph optimisation: disable" in lines["B"]
    assert "label changes" not in text


def test_fixed_graph_against_plain_export(graphs):
    lines, _ = _compare("--model", graphs["fixed"], "--model", graphs["plain"], "--sentences", "20")
    assert _max_diff(lines) <= 1e-4
    words = int(lines["inputs"].split(", ")[2].split()[0])
    assert words > 20  # real sentences: more words than sentences
    assert f"({words} of {words})" in lines["word labels agree"]


def test_onnx_against_torch_and_ort_rewrite(graphs, tiny_model_dir):
    lines, _ = _compare("--model", graphs["plain"], "--model", tiny_model_dir, "--sentences", "12")
    assert "on PyTorch" in lines["B"] and str(tiny_model_dir) in lines["B"]
    assert 0.0 < _max_diff(lines) <= 1e-4  # two runtimes: close, not bit-identical
    # the same graph as written vs ORT's full rewrite of it, selected per side
    lines, _ = _compare("--model", graphs["plain"], "--model", graphs["plain"], "--opt_level_b", "all",
                        "--sentences", "12")
    assert "graph optimisation: all" in lines["B"] and _max_diff(lines) <= 1e-4


def test_static_graph_against_dynamic_graph(graphs):
    """A fixed 2 x 48 graph sets the batches of both sides (an odd sentence count tops up the last batch)."""
    lines, _ = _compare("--model", graphs["static"], "--model", graphs["plain"], "--sentences", "7")
    assert lines["inputs"].startswith("7 sentences")
    assert _max_diff(lines) <= 1e-4
    agree = lines["word labels agree"]
    words = int(lines["inputs"].split(", ")[2].split()[0])
    assert agree == f"100.00% ({words} of {words})"


def test_over_atol_exits_1_with_one_line(graphs, tiny_model_dir, tmp_path):
    """Another checkpoint (other random weights) on torch against the export: far over --atol."""
    other = build_tiny_model(tmp_path / "other", seed=1)
    proc = subprocess.run([sys.executable, "-m", "convert.compare", "--model", str(graphs["plain"]),
                           "--model", str(other), "--sentences", "8", "--atol", "1e-4"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(graphs["plain"]) in lines[0] and "over --atol 0.0001" in lines[0] and "word labels agree" in lines[0]
    # without --atol the same comparison only reports, and names the label changes
    lines, text = _compare("--model", graphs["plain"], "--model", other, "--sentences", "8")
    assert _max_diff(lines) > 1e-4 and "label changes (A -> B): " in text


@pytest.mark.parametrize("args, message", [
    (["--model", "{plain}"], "give it exactly twice"),
    (["--model", "{plain}", "--model", "{tmp}/none.onnx"], "{tmp}/none.onnx: model does not exist"),
    (["--model", "{plain}", "--model", "{model}", "--backend_b", "onnxrt"],
     "{model}: is a folder; the onnxrt backend runs an .onnx file"),
    (["--model", "{plain}", "--model", "{plain}", "--input_file", "{tmp}/none.txt"], "{tmp}/none.txt: file does not exist"),
    (["--model", "{plain}", "--model", "{plain}", "--backend_a", "torch"],
     "{plain}: is a file; the torch backend runs a checkpoint folder"),
])
def test_bad_arguments_are_one_line(graphs, tiny_model_dir, tmp_path, args, message):
    values = {"{plain}": str(graphs["plain"]), "{tmp}": str(tmp_path), "{model}": str(tiny_model_dir)}
    for key, value in values.items():
        args = [a.replace(key, value) for a in args]
        message = message.replace(key, value)
    result = CliRunner().invoke(compare_mod.main, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_graph_without_recorded_checkpoint_needs_model_dir(graphs, tiny_model_dir, tmp_path):
    """A graph whose exporter recorded no checkpoint: --model_dir gives the tokenizer, else one line says so."""
    model = onnx_io.load(graphs["plain"])
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx_io.save(model, bare)
    result = CliRunner().invoke(compare_mod.main, ["--model", str(bare), "--model", str(bare)])
    assert result.exit_code == 1 and "pass --model_dir" in result.output
    lines, _ = _compare("--model", bare, "--model", bare, "--model_dir", tiny_model_dir, "--sentences", "4")
    assert _max_diff(lines) == 0.0
