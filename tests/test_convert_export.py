"""convert.export and convert.simplify on tiny random checkpoints, checked on real CoNLL sentences."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CONLL_LABELS
from convert import export as export_mod
from convert import onnx_io, simplify as simplify_mod
from runners.onnxrt import OrtRunner
from runners.torchrt import TorchRunner

INPUTS3 = ["input_ids", "attention_mask", "token_type_ids"]


def _only_model_files(folder):
    """What a command left in `folder` (staging folders and temp files would show up here)."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def exported(tiny_model_dir, conll, tmp_path_factory):
    """The tiny 2-layer BERT exported through the CLI (dynamic axes)."""
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    result = CliRunner().invoke(export_mod.main, ["--model_dir", str(tiny_model_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_export_validates_against_pytorch_and_prints_difference(exported):
    out, text = exported
    assert "largest abs difference:" in text
    diff = float(text.split("largest abs difference:")[1].split()[0])
    assert diff < 1e-4
    assert "argmax labels agree" in text
    assert "conll2003/test.txt" in text  # real sentences, not the built-in fallback
    assert _only_model_files(out.parent) == ["tiny.onnx"]


def test_export_names_and_dynamic_axes(exported, tiny_model_dir):
    out, _ = exported
    model = onnx_io.load(out)
    assert onnx_io.graph_inputs(model) == [(n, ["batch", "sequence"]) for n in INPUTS3]
    assert onnx_io.graph_outputs(model) == [("logits", ["batch", "sequence", len(CONLL_LABELS)])]
    meta = onnx_io.metadata(model)
    assert json.loads(meta["id2label"]) == {str(i): t for i, t in enumerate(CONLL_LABELS)}
    assert meta["source_model_dir"] == str(tiny_model_dir.resolve())
    # Really dynamic: two different batch/sequence shapes run.
    with OrtRunner.from_path(out, providers=["CPUExecutionProvider"], graph_optimization="disable") as runner:
        for batch, seq in ((3, 7), (1, 40)):
            feeds = {n: np.ones((batch, seq), dtype=np.int64) for n in INPUTS3}
            assert runner.infer(feeds)["logits"].shape == (batch, seq, len(CONLL_LABELS))


def test_simplify_fixes_every_shape(exported, tmp_path):
    out, _ = exported
    target = tmp_path / "tiny_bs2_seq48.onnx"
    result = CliRunner().invoke(simplify_mod.main, ["--input", str(out), "--output", str(target),
                                                   "--batch_size", "2", "--seq_len", "48"])
    assert result.exit_code == 0, result.output
    model = onnx_io.load(target)
    assert onnx_io.graph_inputs(model) == [(n, [2, 48]) for n in INPUTS3]
    assert onnx_io.graph_outputs(model) == [("logits", [2, 48, len(CONLL_LABELS)])]
    before = sum(onnx_io.op_counts(onnx_io.load(out)).values())
    assert sum(onnx_io.op_counts(model).values()) < before
    assert "before" in result.output and "after" in result.output and "check vs input graph" in result.output


def test_simplify_shape_keyword_handles_both_onnxsim_spellings():
    def new(model, overwrite_input_shapes=None): ...
    def old(model, input_shapes=None): ...
    assert simplify_mod.shape_keyword(new) == "overwrite_input_shapes"
    assert simplify_mod.shape_keyword(old) == "input_shapes"


def test_static_export(tiny_model_dir, tmp_path):
    result = export_mod.export_onnx(model_dir=tiny_model_dir, output=tmp_path / "s.onnx", static=True,
                                    batch_size=2, seq_len=32, num_sentences=4)
    assert result.input_dims == ((2, 32),) * 3
    assert result.check.max_abs_diff < 1e-4


def test_model_without_token_type_ids_exports_two_inputs(tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForTokenClassification

    from train.checkpoint import minilm_folder

    import torch

    folder = tmp_path / "distil"
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              num_labels=len(CONLL_LABELS), id2label=dict(enumerate(CONLL_LABELS)),
                              label2id={t: i for i, t in enumerate(CONLL_LABELS)})
    DistilBertForTokenClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    tok_config = folder / "tokenizer_config.json"
    data = json.loads(tok_config.read_text())
    data["model_input_names"] = ["input_ids", "attention_mask"]
    tok_config.write_text(json.dumps(data))

    result = export_mod.export_onnx(model_dir=folder, output=tmp_path / "distil.onnx", num_sentences=8)
    assert result.input_names == ("input_ids", "attention_mask")
    model = onnx_io.load(tmp_path / "distil.onnx")
    assert [n for n, _ in onnx_io.graph_inputs(model)] == ["input_ids", "attention_mask"]
    assert result.check.max_abs_diff < 1e-4


def test_validation_failure_exits_1_and_writes_nothing(tiny_model_dir, tmp_path, monkeypatch):
    real = TorchRunner.infer_impl

    def off_by_a_bit(self, feed_dict):
        return {name: logits + 1e-2 for name, logits in real(self, feed_dict).items()}

    monkeypatch.setattr(TorchRunner, "infer_impl", off_by_a_bit)
    out = tmp_path / "bad.onnx"
    result = CliRunner().invoke(export_mod.main, ["--model_dir", str(tiny_model_dir), "--output", str(out),
                                                  "--num_sentences", "4"])
    assert result.exit_code == 1
    assert "over tolerance" in result.output and "Traceback" not in result.output
    assert _only_model_files(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--model_dir", "{tmp}/no_such_model"], "model folder does not exist"),
    (["--static"], "--static needs --batch_size and --seq_len"),
    (["--batch_size", "2"], "need --static"),
])
def test_export_bad_input_is_one_line(args, message, tiny_model_dir, tmp_path):
    out = tmp_path / "out" / "x.onnx"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--model_dir" not in args:
        args += ["--model_dir", str(tiny_model_dir)]
    result = CliRunner().invoke(export_mod.main, args + ["--output", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not out.exists()


def test_simplify_missing_input_is_one_line(tmp_path):
    result = CliRunner().invoke(simplify_mod.main, ["--input", str(tmp_path / "none.onnx"), "--output",
                                                   str(tmp_path / "y.onnx"), "--batch_size", "1", "--seq_len", "8"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'none.onnx'}: ONNX model does not exist"
    assert _only_model_files(tmp_path) == []


def test_export_reports_each_slow_step_on_stderr(tiny_model_dir, tmp_path):
    """Loading, exporting and checking take seconds each: one line each on stderr, results on stdout."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "tiny.onnx"
    proc = subprocess.run([sys.executable, "-m", "convert.export", "--model_dir", str(tiny_model_dir),
                           "--output", str(out), "--num_sentences", "4"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    steps = proc.stderr.strip().splitlines()
    assert [line.split()[0] for line in steps] == ["loading", "exporting", "checking"], proc.stderr
    assert str(tiny_model_dir) in steps[0] and "4 real sentences" in steps[2]
    assert proc.stdout.startswith(f"wrote {out}") and "check vs PyTorch" in proc.stdout
