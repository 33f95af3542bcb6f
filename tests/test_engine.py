"""The in-process words -> labels pieces: one feed builder (common.feeds), one encoder and its pure inverse
(preprocess.encode), one batch planner (preprocess.plan) and the engine that runs them on a runner."""
from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from common.feeds import build_feed, build_feed_flat
from convert.export import export_onnx
from engine import Engine
from runners.onnxrt import OrtRunner
from preprocess.align import Aligner
from preprocess.encode import encode, label_names, split_per_sentence, word_label_ids, word_label_probs
from preprocess.plan import BatchPolicy, RowBatch, batch_feed, plan

ALL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABELS = {i: f"L{i}" for i in range(9)}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sentences(conll_sentences):
    # real sentences, one long enough to need windows at a small max_len, one with a word the tokenizer drops
    return [list(s.words) for s in conll_sentences[:40]] + [["\u200b", "Paris"]]


def _fake_logits(ids):
    ids = np.asarray(ids)
    return np.stack([np.cos(ids * (k + 2) * 0.11) for k in range(9)], axis=-1)


class RecordingRunner:
    """The runner interface (infer(feed) -> outputs) over logits computed from the token ids alone."""

    def __init__(self):
        self.feeds = []

    def infer(self, feed):
        self.feeds.append(feed)
        return {"logits": _fake_logits(feed["input_ids"])}


# ---------------------------------------------------------------- common.feeds

def test_build_feed_pads_masks_and_follows_the_input_names():
    rows = [np.array([101, 7, 8, 102]), np.array([101, 9, 102])]
    feed = build_feed(rows, 6, ALL_INPUTS, pad_id=0)
    assert list(feed) == list(ALL_INPUTS)
    assert all(a.dtype == np.int64 and a.shape == (2, 6) for a in feed.values())
    assert feed["input_ids"].tolist() == [[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]]
    assert feed["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]
    assert not feed["token_type_ids"].any()
    # a model without segment ids (DistilBERT) gets none, and the pad id is the tokenizer's
    no_types = build_feed(rows, 4, ("input_ids", "attention_mask"), pad_id=5)
    assert list(no_types) == ["input_ids", "attention_mask"]
    assert no_types["input_ids"][1].tolist() == [101, 9, 102, 5]


def test_build_feed_flat_is_build_feed_and_refuses_what_does_not_fit():
    rows = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6])]
    flat = build_feed_flat(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 3, 4]), np.array([3, 1, 2]), 3, ALL_INPUTS, 0)
    for name, array in build_feed(rows, 3, ALL_INPUTS, 0).items():
        np.testing.assert_array_equal(flat[name], array)
    with pytest.raises(ValueError, match="does not fit the padded length 2"):
        build_feed(rows, 2, ALL_INPUTS, 0)
    with pytest.raises(ValueError, match="unknown model input 'pixel_values'"):
        build_feed(rows, 3, ("input_ids", "pixel_values"), 0)


# ---------------------------------------------------------------- encode and its inverse

@pytest.mark.parametrize("max_len", [512, 12])
def test_encode_then_decode_gives_back_each_words_label(tokenizer, sentences, max_len):
    """Round trip: logits that put a chosen label at every scored position decode to those labels."""
    rows = encode(tokenizer, sentences, max_len)
    assert rows.num_sentences == len(sentences) and rows.num_words == sum(map(len, sentences))
    assert rows.windowed >= (2 if max_len == 12 else 1)  # the dropped word (and, at 12, long sentences)
    assert rows.lengths.max() <= max_len
    want = np.random.default_rng(0).integers(0, 9, rows.num_words)
    flat = np.full(rows.num_words, -1)
    for batch in plan(rows, BatchPolicy(max_rows=5, max_tokens=64)):
        logits = np.zeros((len(batch.rows), batch.length, 9), dtype=np.float32)
        logits[batch.word_row, batch.word_pos, want[batch.word_slot]] = 3.0
        flat[batch.word_slot] = word_label_ids(logits, batch.word_row, batch.word_pos)
        ids, probs = word_label_probs(logits, batch.word_row, batch.word_pos)
        np.testing.assert_array_equal(ids, want[batch.word_slot])
        np.testing.assert_allclose(probs, np.exp(3.0) / (np.exp(3.0) + 8))
    np.testing.assert_array_equal(flat, want)
    tags = label_names(flat, rows.offsets, LABELS)
    assert [len(t) for t in tags] == [len(s) for s in sentences]
    assert tags[0] == [LABELS[i] for i in want[:len(sentences[0])]]
    assert split_per_sentence(want, rows.offsets)[-1] == want[-2:].tolist()


def test_every_row_is_planned_once_within_its_budget(tokenizer, sentences):
    rows = encode(tokenizer, sentences, 512)
    batches = plan(rows, BatchPolicy(max_rows=8, max_tokens=160))
    assert all(isinstance(b, RowBatch) for b in batches)
    assert sorted(r for b in batches for r in b.rows.tolist()) == list(range(rows.num_rows))
    assert all(len(b.rows) == 1 or len(b.rows) * b.length <= 160 for b in batches)
    assert sorted(s for b in batches for s in b.word_slot.tolist()) == list(range(rows.num_words))
    feed = batch_feed(rows, batches[0], ("input_ids", "attention_mask"), pad_id=0)
    assert feed["attention_mask"].sum(1).tolist() == rows.lengths[batches[0].rows].tolist()


# ---------------------------------------------------------------- the engine

def test_engine_labels_and_probabilities_match_the_aligner_reference(tokenizer, sentences):
    """Tags and per-word probabilities as the raw-text predictor computes them: Aligner windows, softmax."""
    engine = Engine(RecordingRunner(), tokenizer=tokenizer, input_names=ALL_INPUTS, id2label=LABELS,
                    policy=BatchPolicy(max_rows=16, max_tokens=512), max_len=16)
    got = engine.label_with_probs(sentences)
    assert got.tags == engine.label(sentences)
    aligner = Aligner(tokenizer, 16)
    for i, words in enumerate(sentences):
        tags, probs = [None] * len(words), [None] * len(words)
        for sample in aligner.samples(i, words):
            logits = _fake_logits(sample.input_ids).astype(np.float64)
            for word, pos in sample.scored:
                p = np.exp(logits[pos] - logits[pos].max())
                p /= p.sum()
                tags[word], probs[word] = LABELS[int(p.argmax())], float(p.max())
        assert got.tags[i] == tags, i
        np.testing.assert_allclose(got.probs[i], probs, rtol=1e-12)


def test_engine_feeds_only_the_models_inputs(tokenizer, sentences):
    runner = RecordingRunner()
    Engine(runner, tokenizer=tokenizer, input_names=("input_ids", "attention_mask"), id2label=LABELS,
           policy=BatchPolicy(max_rows=8)).label(sentences[:20])
    assert runner.feeds and all(list(feed) == ["input_ids", "attention_mask"] for feed in runner.feeds)
    assert sum(len(feed["input_ids"]) for feed in runner.feeds) == 20


def test_engine_on_a_real_runner_with_and_without_the_feed_check(tiny_model_dir, tokenizer, sentences, tmp_path):
    graph = export_onnx(model_dir=tiny_model_dir, output=tmp_path / "tiny.onnx", num_sentences=2).output
    results = []
    for check in (True, False):
        with OrtRunner.from_path(graph, providers=["CPUExecutionProvider"]) as runner:
            engine = Engine(runner, tokenizer=tokenizer, input_names=ALL_INPUTS, id2label=LABELS,
                            policy=BatchPolicy(max_rows=8, max_tokens=256), check_inputs=check)
            results.append(engine.label(sentences))
            assert len(runner.inference_times) > 1
    assert results[0] == results[1]
    assert [len(t) for t in results[0]] == [len(s) for s in sentences]
