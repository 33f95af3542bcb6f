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


def test_document_sample_is_whole_documents_in_file_order():
    from bench.paths import document_sample

    documents = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10]]
    idx, grouped = document_sample(documents, 5, seed=1)
    assert len(idx) >= 5 and list(idx) == sorted(idx)
    chosen = [[int(idx[i]) for i in group] for group in grouped]
    assert all(group in documents for group in chosen) and sum(map(len, grouped)) == len(idx)
    again = document_sample(documents, 5, seed=1)
    assert list(again[0]) == list(idx) and again[1] == grouped
    assert list(document_sample(documents, 99, seed=1)[0]) == list(range(11))


def test_the_benchmark_runs_in_the_models_document_context(tiny_model_dir, conll, tmp_path, monkeypatch):
    """A model trained in documents is benchmarked in documents: its windows, whole documents as the sample,
    every engine path labelling as PyTorch does, and the file flow (bin_create --context document) scoring
    the F1 of the in-process path."""
    import shutil

    from bench import peak as peak_mod
    from bench.run import run_benchmark

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "doc_model"))
    config = json.loads((model / "config.json").read_text())
    config["ner_context"] = {"context": "document", "seq_len": 64, "window_overlap": 16}
    (model / "config.json").write_text(json.dumps(config))
    data = _first_documents(conll, tmp_path, count=4)
    monkeypatch.setattr(peak_mod, "DEFAULT_SHAPES", ((128, 64, 64),))
    monkeypatch.setattr(peak_mod, "MIN_SECONDS", 0.05)
    report = run_benchmark(model_dir=model, input_file=data, sample=30, repeats=1, warmup=4, work_dir=tmp_path / "w",
                           paths=["torch_batched", "ort_fixed512", "ort_fused_fp32", "ov_fp32"], with_batch_table=False,
                           log=lambda _: None)
    assert report["data"]["context"] == {"context": "document", "seq_len": 64, "window_overlap": 16}
    assert report["data"]["sample_documents"] >= 1 and report["data"]["sample"] >= 30
    by = {r["name"]: r for r in report["runs"]}
    for name in ("ort_fixed512", "ort_fused_fp32", "ov_fp32"):
        assert by[name]["label_agreement_vs_torch"] == 1.0, name
    flow = report["file_flow"]
    assert flow["same_f1"] is True and "--context document --seq_len 64 --window_overlap 16" in flow["command"]
    from bench.report import markdown

    assert "document context: each document's words in windows of 64 word pieces" in markdown(report)
    # the same model asked for sentences: another F1 (the windows changed what the model saw)
    sentence = run_benchmark(model_dir=model, input_file=data, sample=30, repeats=1, warmup=4, context="sentence",
                             work_dir=tmp_path / "w2", paths=["ort_fused_fp32"], with_batch_table=False,
                             with_file_flow=False, log=lambda _: None)
    assert sentence["data"]["context"]["context"] == "sentence"
    assert sentence["runs"][0]["f1"] != by["ort_fused_fp32"]["f1"] or sentence["data"]["sample_word_pieces"] != \
        report["data"]["sample_word_pieces"]
