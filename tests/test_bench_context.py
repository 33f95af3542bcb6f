"""python -m bench.context: both contexts on the same file in one run, F1 and speed side by side."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.metrics import f1_score
from common.model_spec import read_model_spec
from engine.core import Engine
from preprocess.conll import read_conll_file
from preprocess.plan import BatchPolicy
from preprocess.tokenizer import load_tokenizer
from runners.onnxrt import OrtRunner
from bench.context import compare_contexts

ROOT = Path(__file__).resolve().parents[1]


def _first_documents(conll, tmp_path, count=3):
    text = (conll / "test.txt").read_text(encoding="utf-8")
    docs = text.split("-DOCSTART- -X- -X- O")[1:count + 1]
    path = tmp_path / "docs.txt"
    path.write_text("".join("-DOCSTART- -X- -X- O" + d for d in docs), encoding="utf-8")
    return path


def test_both_contexts_are_scored_and_timed_in_one_run(tiny_model_dir, conll, tmp_path):
    data = _first_documents(conll, tmp_path)
    result = compare_contexts(model_dir=tiny_model_dir, input_file=data, onnx=tmp_path / "m.onnx", seq_len=64,
                              window_overlap=16, repeats=1)
    conll_file = read_conll_file(data)
    assert result["sentences"] == len(conll_file.sentences) and result["documents"] == 3
    for name in ("sentence", "document"):
        assert result["contexts"][name]["sentences_per_s"] > 0
    # the document figure is the engine's document labelling of the same graph, scored by the one scorer
    spec = read_model_spec(tiny_model_dir)
    words = [list(s.words) for s in conll_file.sentences]
    with OrtRunner.from_path(tmp_path / "m.onnx", providers=["CPUExecutionProvider"]) as runner:
        engine = Engine(runner, tokenizer=load_tokenizer(tiny_model_dir), input_names=spec.input_names,
                        id2label=spec.id2label, policy=BatchPolicy(max_rows=8), max_len=64, context="document",
                        window_overlap=16)
        tags = engine.label(words, documents=conll_file.documents())
    assert result["contexts"]["document"]["f1"] == f1_score([list(s.tags) for s in conll_file.sentences], tags)
    assert result["document_time_per_sentence_vs_sentence"] > 0


def test_cli_writes_json_and_refuses_a_missing_file(tiny_model_dir, conll, tmp_path):
    data = _first_documents(conll, tmp_path, count=2)
    out = tmp_path / "ctx.json"
    ok = subprocess.run([sys.executable, "-m", "bench.context", "--model_dir", str(tiny_model_dir), "--input_file",
                         str(data), "--onnx", str(tmp_path / "m.onnx"), "--seq_len", "64", "--window_overlap", "16",
                         "--repeats", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(out.read_text())["contexts"]) == {"sentence", "document"}
    assert "sentences/s" in ok.stdout
    missing = tmp_path / "nope.txt"
    bad = subprocess.run([sys.executable, "-m", "bench.context", "--model_dir", str(tiny_model_dir), "--input_file",
                          str(missing)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and str(missing) in bad.stderr
