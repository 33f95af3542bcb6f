"""fix_onnx: the attention-mask constant becomes fp16-safe for any depth, and the logits do not move."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, build_tiny_model
from convert import check, fix as fix_mod, onnx_io
from convert.export import export_onnx
from convert.fix_passes import FP16_MAX, GraphIndex, out_of_fp16_constants, run_passes
from convert.simplify import simplify_onnx
from common.errors import ValidationError

F32_MIN = float(np.finfo(np.float32).min)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, conll):
    """Exported tiny BERTs: eager attention at 2, 6 and 24 layers (small hidden), SDPA at 2."""
    folder = tmp_path_factory.mktemp("fix_graphs")
    out = {}
    for layers, attn in ((2, "eager"), (6, "eager"), (24, "eager"), (2, "sdpa")):
        model_dir = build_tiny_model(folder / f"bert{layers}", layers=layers, hidden=32, heads=2)
        path = folder / f"bert{layers}_{attn}.onnx"
        export_onnx(model_dir=model_dir, output=path, attn_implementation=attn, num_sentences=4)
        out[(layers, attn)] = path
    return out


def _reports(result):
    return {r.name: r for r in result.reports}


@pytest.mark.parametrize("layers", [2, 6, 24])
def test_fix_replaces_the_shared_mask_constant(graphs, layers, tmp_path):
    source = graphs[(layers, "eager")]
    assert out_of_fp16_constants(onnx_io.load(source))  # the exporter really writes float32's minimum
    result = fix_mod.fix_onnx(input=source, output=tmp_path / "fixed.onnx")
    mask = _reports(result)["attention_mask"]
    # transformers builds one additive mask and every layer adds it: one constant, all layers covered.
    assert mask.changed == 1
    assert mask.stats == {"softmax": layers, "softmax_masked": layers}
    assert "-3.40282e+38 -> -10000" in mask.lines[0]
    assert _reports(result)["clamp_fp16"].changed == 0
    assert out_of_fp16_constants(onnx_io.load(tmp_path / "fixed.onnx")) == []
    assert result.check.max_abs_diff <= 1e-4 and result.check.labels_agree
    assert "conll2003/test.txt" in result.check.inputs  # tokenizer found through the export metadata


def test_fix_sdpa_graph_has_one_mask_constant_per_layer(graphs, tmp_path):
    result = fix_mod.fix_onnx(input=graphs[(2, "sdpa")], output=tmp_path / "fixed.onnx")
    mask = _reports(result)["attention_mask"]
    assert mask.changed == 2 and mask.stats["softmax_masked"] == 2
    assert all("-inf -> -10000" in line for line in mask.lines[:2])
    assert out_of_fp16_constants(onnx_io.load(tmp_path / "fixed.onnx")) == []
    assert result.check.max_abs_diff <= 1e-4


def test_fix_simplified_static_graph(graphs, tmp_path):
    static = tmp_path / "static.onnx"
    simplify_onnx(input=graphs[(6, "eager")], output=static, batch_size=4, seq_len=40)
    result = fix_mod.fix_onnx(input=static, output=tmp_path / "fixed.onnx", mask_value=-65504.0)
    mask = _reports(result)["attention_mask"]
    assert mask.changed == 1 and mask.stats["softmax_masked"] == 6
    assert "-> -65504" in mask.lines[0]
    assert result.check.max_abs_diff <= 1e-4
    assert onnx_io.graph_inputs(onnx_io.load(tmp_path / "fixed.onnx"))[0][1] == [4, 40]


def test_fix_onnx_py_entry_point_prints_changes(graphs, tmp_path):
    out = tmp_path / "fixed.onnx"
    proc = subprocess.run([sys.executable, str(ROOT / "fix_onnx.py"), str(graphs[(2, "eager")]), str(out),
                           "--num_sentences", "8"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[attention_mask]" in proc.stdout and ": 1 changed" in proc.stdout
    assert "2 of 2 Softmax nodes" in proc.stdout
    assert "check vs input graph: max |diff|" in proc.stdout
    assert out.is_file()
    # A second run finds nothing left to fix and says so.
    again = CliRunner().invoke(fix_mod.main, [str(out), str(tmp_path / "again.onnx")])
    assert again.exit_code == 0 and "nothing to change" in again.output


def test_checker_catches_a_broken_mask(graphs, tmp_path):
    """If a 'fix' stopped masking (fill 0), the shared checker must fail it on real padded batches."""
    source = graphs[(2, "eager")]
    model = onnx_io.load(source)
    index = GraphIndex(model)
    for name, _ in index.constant_sources():
        value = index.value(name)
        if value is not None and (value <= F32_MIN).any():
            index.producers[name].attribute[0].t.CopyFrom(numpy_helper.from_array(np.zeros_like(value)))
    broken = tmp_path / "broken.onnx"
    onnx_io.save(model, broken)
    with pytest.raises(ValidationError, match="over tolerance"):
        check.check_onnx_against_onnx(broken, source, count=8)


def _handmade_graph(path: Path) -> None:
    """A one-layer attention toy in the old exporter style, built without torch.

    Mask: Mul(Sub(1, Cast(Unsqueeze(attention_mask))), MIN) with MIN an *initializer* that a
    Max elsewhere shares; a Constant +inf feeds a Clip. Nothing here is named like BERT.
    """
    rng = np.random.default_rng(0)
    vocab, hidden = 50, 8
    inits = [
        numpy_helper.from_array(rng.normal(size=(vocab, hidden)).astype(np.float32), "E"),
        numpy_helper.from_array(np.array(F32_MIN, dtype=np.float32), "MIN"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "ONE"),
        numpy_helper.from_array(np.array(0.35, dtype=np.float32), "SCALE"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "AX1"),
        numpy_helper.from_array(np.array(-1e4, dtype=np.float32), "LOW"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["h"]),
        helper.make_node("Transpose", ["h"], ["hT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["h", "hT"], ["qk"]),
        helper.make_node("Mul", ["qk", "SCALE"], ["scores"]),
        helper.make_node("Unsqueeze", ["attention_mask", "AX1"], ["m3"]),
        helper.make_node("Cast", ["m3"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["ONE", "mf"], ["inv"]),
        helper.make_node("Mul", ["inv", "MIN"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "h"], ["ctx"]),
        helper.make_node("Max", ["ctx", "MIN"], ["floor"]),
        helper.make_node("Constant", [], ["INF"], value=numpy_helper.from_array(np.array(np.inf, np.float32))),
        helper.make_node("Clip", ["floor", "LOW", "INF"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_passes_work_on_any_exporter_style(tmp_path):
    source = tmp_path / "toy.onnx"
    _handmade_graph(source)
    result = fix_mod.fix_onnx(input=source, output=tmp_path / "toy_fixed.onnx")
    reports = _reports(result)
    assert reports["attention_mask"].changed == 1
    # The shared MIN is copied for the mask (-10000); what is left of it (the Max) and the +inf get clamped.
    assert reports["clamp_fp16"].changed == 2
    fixed = onnx_io.load(tmp_path / "toy_fixed.onnx")
    assert out_of_fp16_constants(fixed) == []
    values = {i.name: numpy_helper.to_array(i) for i in fixed.graph.initializer}
    assert values["MIN"] == -FP16_MAX and values["MIN_fp16safe"] == -10000.0
    assert "random token ids" in result.check.inputs  # no tokenizer for a handmade graph
    assert result.check.max_abs_diff <= 1e-4


def test_pass_selection(tmp_path):
    source = tmp_path / "toy.onnx"
    _handmade_graph(source)
    model = onnx_io.load(source)
    reports = run_passes(model, ["clamp_fp16"])
    # Alone, the clamp takes MIN for all its users (mask included) and the +inf.
    assert [r.name for r in reports] == ["clamp_fp16"] and reports[0].changed == 2
    result = CliRunner().invoke(fix_mod.main, [str(source), str(tmp_path / "o.onnx"), "--passes", "attention_mask,nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown pass 'nope'; known passes: attention_mask, clamp_fp16"
    assert not (tmp_path / "o.onnx").exists()


def test_missing_input_is_one_line_error(tmp_path):
    result = CliRunner().invoke(fix_mod.main, [str(tmp_path / "none.onnx"), str(tmp_path / "out.onnx")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'none.onnx'}: ONNX model does not exist"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_not_onnx_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    result = CliRunner().invoke(fix_mod.main, [str(bad), str(tmp_path / "out.onnx")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "cannot be read as an ONNX model" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_failed_check_exits_1_and_writes_nothing(graphs, tmp_path):
    """A fill value too weak to mask (-1) is allowed by fp16 but changes the logits: the check stops it."""
    out = tmp_path / "weak.onnx"
    result = CliRunner().invoke(fix_mod.main, [str(graphs[(2, "eager")]), str(out), "--mask_value", "-1",
                                               "--num_sentences", "8"])
    assert result.exit_code == 1
    assert "over tolerance" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_external_data_models_round_trip(graphs, tmp_path, monkeypatch):
    """Models over protobuf's 2 GiB go out as <name>.data beside the .onnx (forced here by a tiny threshold)."""
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_THRESHOLD", 1)
    fixed = tmp_path / "fixed.onnx"
    result = fix_mod.fix_onnx(input=graphs[(2, "eager")], output=fixed, num_sentences=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.onnx", "fixed.onnx.data"]
    assert result.check.max_abs_diff <= 1e-4
    again = fix_mod.fix_onnx(input=fixed, output=tmp_path / "copy.onnx")  # nothing to change: a copy
    assert again.check is None
    assert (tmp_path / "copy.onnx.data").is_file()
    with check.graph_runner(tmp_path / "copy.onnx") as runner:
        assert runner.get_input_metadata()[0].name == "input_ids"


def _run_fix_onnx_py(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "fix_onnx.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0]


def test_fix_onnx_py_refuses_an_output_that_is_a_folder(tmp_path):
    source = tmp_path / "toy.onnx"
    _handmade_graph(source)
    folder = tmp_path / "out"
    folder.mkdir()
    proc = _run_fix_onnx_py(source, folder, cwd=tmp_path)
    _assert_one_line_error(proc, folder, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "toy.onnx"]
    assert list(folder.iterdir()) == []


def test_fix_onnx_py_refuses_an_empty_input_file(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    out = tmp_path / "out.onnx"
    proc = _run_fix_onnx_py(empty, out, cwd=tmp_path)
    _assert_one_line_error(proc, empty, "empty (0 bytes)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.onnx"]


def _graph_without_attention(path: Path) -> None:
    """A valid ONNX graph (embedding lookup + linear layer) with no attention at all."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=(50, 8)).astype(np.float32), "E"),
             numpy_helper.from_array(rng.normal(size=(8, 9)).astype(np.float32), "W")]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["h"]),
             helper.make_node("MatMul", ["h", "W"], ["logits"])]
    graph = helper.make_graph(
        nodes, "no_attention",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", 9])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_fix_onnx_py_refuses_a_graph_without_attention(tmp_path):
    source = tmp_path / "linear.onnx"
    _graph_without_attention(source)
    proc = _run_fix_onnx_py(source, tmp_path / "out.onnx", cwd=tmp_path)
    _assert_one_line_error(proc, source, "not a BERT-family encoder graph")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linear.onnx"]


def test_fix_check_refuses_a_model_dir_without_tokenizer(graphs, tmp_path):
    """--model_dir feeds the check; a folder with config + weights only must not give [UNK]-only inputs."""
    model_dir = build_tiny_model(tmp_path / "no_tok", layers=2, hidden=32, heads=2)
    # tokenizer_config.json stays: alone it used to pass for a tokenizer
    for name in ("tokenizer.json", "vocab.txt"):
        (model_dir / name).unlink(missing_ok=True)
    out = tmp_path / "fixed.onnx"
    proc = _run_fix_onnx_py(graphs[(2, "eager")], out, "--model_dir", model_dir, cwd=tmp_path)
    _assert_one_line_error(proc, model_dir, "no tokenizer files", "tokenizer.json")
    assert not out.exists()
