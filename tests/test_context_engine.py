"""Document context (FLERT) in the in-process consumers: the encoder, the engine, `python -m apps.predict`
and `python -m corpus`, each against `bin_create.py --context document` -> infer -> bert_metric."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

from common.errors import UserError
from common.model_spec import read_model_spec
from common.tags import to_iob2
from convert.onnx_cache import ensure_onnx
from corpus.cli import main as corpus_main
from engine import Engine
from preprocess.align import Aligner
from preprocess.conll import read_conll_file
from preprocess.encode import encode, label_names, word_label_ids
from preprocess.plan import BatchPolicy
from runners.onnxrt import OrtRunner

from test_context import first_documents, without_docstart

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def run(*args, timeout=900):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=timeout)


def ok(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def bin_flow_predictions(conll_path: Path, model_dir: Path, work: Path, *extra) -> tuple[dict, str]:
    """bin_create --context document -> python -m infer -> bert_metric --predictions: result and `word gold pred`."""
    ok(run("bin_create.py", "--input_file", conll_path, "--model_name_from_hub", model_dir, "--save_dir",
           work / "bins", "--context", "document", *extra))
    (anno,) = (work / "bins").glob("*.anno")
    bins = anno.with_suffix("")
    ok(run("-m", "infer", "--model", ensure_onnx(model_dir), "--output", work / "result", "--outfmt", "NPY",
           "--batchsize", 8, "--input", ",".join(str(bins / name) for name in INPUTS)))
    (result_dir,) = [p for p in (work / "result").iterdir() if p.is_dir()]
    ok(run("bert_metric.py", "--result_dir", result_dir, "--anno_file", anno, "--predictions", work / "pred.txt"))
    return json.loads((result_dir / "result.json").read_text()), (work / "pred.txt").read_text()


def predicted_tags(predictions: str) -> list[list[str]]:
    return [[line.split()[2] for line in block.splitlines()] for block in predictions.strip().split("\n\n")]


def fake_logits(ids):
    ids = np.asarray(ids)
    return np.stack([np.cos(ids * (k + 2) * 0.11) for k in range(9)], axis=-1)


@pytest.fixture(scope="module")
def three_docs(conll, tmp_path_factory):
    return first_documents(conll / "test.txt", tmp_path_factory.mktemp("docs") / "three_docs.txt", 3)


@pytest.fixture(scope="module")
def tokenizer(default_model_dir):
    return AutoTokenizer.from_pretrained(default_model_dir)


# ---------------------------------------------------------------- the encoder

def test_document_rows_score_each_word_once_at_its_own_sentence_slot(three_docs, tokenizer):
    conll_file = read_conll_file(three_docs)
    sentences = [s.words for s in conll_file.sentences]
    documents = conll_file.documents()
    rows = encode(tokenizer, sentences, 48, documents=documents, overlap=12)
    assert np.array_equal(np.sort(rows.word_slot), np.arange(rows.num_words))
    assert rows.windowed == len(documents) and rows.lengths.max() <= 48

    # the same labels as the aligner's reference (bin_create's samples), decoded through the flat slots
    samples = Aligner(tokenizer, 48, 12).documents_samples(
        [[(sid, sentences[sid]) for sid in doc] for doc in documents])
    assert rows.num_rows == len(samples)
    padded = np.zeros((rows.num_rows, 48), dtype=np.int64)
    for r in range(rows.num_rows):
        padded[r, :rows.lengths[r]] = rows.ids[rows.starts[r]:rows.starts[r] + rows.lengths[r]]
    flat = np.full(rows.num_words, -1)
    flat[rows.word_slot] = word_label_ids(fake_logits(padded), rows.word_row, rows.word_pos)
    tags = label_names(flat, rows.offsets, {i: f"L{i}" for i in range(9)})
    expected = {}
    for sample in samples:
        logits = fake_logits(sample.input_ids)
        for sentence, word, pos in sample.scored_words():
            expected[sentence, word] = f"L{int(logits[pos].argmax())}"
    assert tags == [[expected[s, w] for w in range(len(words))] for s, words in enumerate(sentences)]
    # some row scores words of two sentences
    assert any(len({int(np.searchsorted(rows.offsets, slot, side="right")) - 1
                    for slot in rows.word_slot[rows.word_row == r]}) > 1 for r in range(rows.num_rows))


def test_engine_context_and_overlap_are_checked(tokenizer):
    make = lambda **kw: Engine(None, tokenizer=tokenizer, input_names=INPUTS, id2label={0: "O"},  # noqa: E731
                               policy=BatchPolicy(), max_len=64, **kw)
    with pytest.raises(UserError, match="--context 'paragraph'"):
        make(context="paragraph")
    with pytest.raises(UserError, match="overlap 62"):
        make(context="document", window_overlap=62)
    # document context without `documents`: each sentence its own document, as sentence context
    sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    doc = make(context="document").encode(sentences)
    sent = make().encode(sentences)
    assert np.array_equal(doc.ids, sent.ids) and np.array_equal(doc.word_slot, sent.word_slot)


# ---------------------------------------------------------------- engine == bin_create -> infer -> bert_metric

def test_engine_document_mode_equals_the_bin_flow_word_for_word(three_docs, tiny_model_dir, tmp_path):
    _, predictions = bin_flow_predictions(three_docs, tiny_model_dir, tmp_path, "--seq_len", 64,
                                          "--window_overlap", 16, "--buckets", "32,64")
    conll_file = read_conll_file(three_docs)
    spec_labels = read_model_spec(tiny_model_dir).id2label
    with OrtRunner.from_path(ensure_onnx(tiny_model_dir), providers=["CPUExecutionProvider"]) as runner:
        engine = Engine(runner, tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir), input_names=INPUTS,
                        id2label=spec_labels, policy=BatchPolicy(max_rows=8), max_len=64, context="document",
                        window_overlap=16)
        words = [s.words for s in conll_file.sentences]
        tags = engine.label(words, conll_file.documents())
        sentence_tags = Engine(runner, tokenizer=engine.tokenizer, input_names=INPUTS, id2label=spec_labels,
                               policy=BatchPolicy(max_rows=8), max_len=64).label(words)
    assert [to_iob2(t) for t in tags] == predicted_tags(predictions)
    assert tags != sentence_tags  # the context changed labels: the documents really were one sequence


# ---------------------------------------------------------------- python -m apps.predict

def test_predict_document_mode_groups_lines_up_to_a_blank_line_and_keeps_offsets(three_docs, default_model_dir,
                                                                                 tmp_path):
    conll_file = read_conll_file(three_docs)
    lines = []
    for doc in conll_file.documents():
        lines += [" ".join(conll_file.sentences[sid].words) for sid in doc] + [""]
    source = tmp_path / "news.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = ok(run("-m", "apps.predict", "--file", source, "--context", "document", "--seq_len", 64,
                  "--window_overlap", 16, "--model_dir", default_model_dir))
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in records] == lines
    entities = [e for r in records for e in r["entities"]]
    assert len(entities) > 20
    assert all(r["text"][e["start"]:e["end"]] == e["text"] for r in records for e in r["entities"])

    sentence_mode = ok(run("-m", "apps.predict", "--file", source, "--seq_len", 64, "--model_dir",
                           default_model_dir))
    assert [json.loads(line)["text"] for line in sentence_mode.stdout.splitlines()] == lines
    assert sentence_mode.stdout != done.stdout  # neighbouring lines lent context


def test_predict_overlap_that_leaves_no_window_is_a_one_line_error(default_model_dir):
    done = run("-m", "apps.predict", "--context", "document", "--seq_len", 64, "--window_overlap", 80,
               "--model_dir", default_model_dir, "EU rejects German call .")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "window overlap 80" in done.stderr and done.stdout == ""


# ---------------------------------------------------------------- python -m corpus

def test_corpus_document_context_equals_the_bin_flow_and_keeps_documents_whole(conll, default_model_dir, tmp_path):
    four_docs = first_documents(conll / "test.txt", tmp_path / "four_docs.txt", 4)
    expected, expected_predictions = bin_flow_predictions(four_docs, default_model_dir, tmp_path / "bin",
                                                          "--buckets", "64,128,256,512")
    out = tmp_path / "out"
    done = ok(run("-m", "corpus", "--input", four_docs, "--model_dir", default_model_dir, "--output", out,
                  "--context", "document", "--shard_sentences", 30, "--predictions", tmp_path / "pred.txt"))
    result = json.loads((out / "result.json").read_text())
    assert result["f1"] == expected["f1"] > 0.5 and "DOCSTART" not in done.stderr
    assert (tmp_path / "pred.txt").read_text() == expected_predictions
    # documents of 22, 12, 14 and 26 sentences in shards of at most 30: 22 | 12 + 14 | 26, none split
    shards = sorted((out / "shards").glob("*.parquet"))
    docs = [pq.read_table(p).column("doc").to_pylist() for p in shards]
    assert [len(d) for d in docs] == [22, 26, 26]
    assert [sorted(set(d)) for d in docs] == [[0], [1, 2], [3]]


def test_corpus_document_context_without_docstart_notes_it_once(three_docs, tiny_model_dir, tmp_path):
    plain = without_docstart(three_docs, tmp_path / "plain.txt")
    runs = {}
    for context in ("document", "sentence"):
        result = CliRunner().invoke(corpus_main, ["--input", str(plain), "--model_dir", str(tiny_model_dir),
                                                  "--output", str(tmp_path / context), "--context", context,
                                                  "--shard_sentences", "20"])
        assert result.exit_code == 0, result.stderr
        notes = [line for line in result.stderr.splitlines() if "DOCSTART" in line]
        runs[context] = notes
        assert "Traceback" not in result.stderr
    assert len(runs["document"]) == 1 and str(plain) in runs["document"][0] and "own document" in runs["document"][0]
    assert runs["sentence"] == []
    for shard in ("shard-00000", "shard-00001"):  # each sentence its own document: sentence context's labels
        assert pq.read_table(tmp_path / "document" / "shards" / f"{shard}.parquet").column("tags").equals(
            pq.read_table(tmp_path / "sentence" / "shards" / f"{shard}.parquet").column("tags"))
