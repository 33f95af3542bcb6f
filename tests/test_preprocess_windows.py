"""Long sentences: each word is scored in the window where it sits most centrally (real tokenizer)."""
from __future__ import annotations

import json

import pytest

from preprocess.align import Aligner
from preprocess.pipeline import create_bins, load_tokenizer


@pytest.fixture(scope="module")
def long_sentence(conll_sentences):
    """900 real words: the CoNLL-2003 test sentences run together (no sentence in it is that long)."""
    words = [w for s in conll_sentences for w in s.words][:900]
    tags = [t for s in conll_sentences for t in s.tags][:900]
    assert len(words) == 900
    return words, tags


def first_subtoken_positions(tokenizer, words) -> list[int]:
    """Where each word's first word piece sits in the sentence's pieces (no special tokens)."""
    word_ids = tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids()
    first = {}
    for pos, word in enumerate(word_ids):
        first.setdefault(word, pos)
    return [first[w] for w in range(len(words))]


def context(pos: int, start: int, width: int) -> int:
    """Tokens of context on the poorer side of `pos` inside the window [start, start + width)."""
    return min(pos - start, start + width - 1 - pos)


def check_most_central(windows, scored_in, positions):
    """`windows`: (start, width) per sample; `scored_in[w]`: the sample that scores word w."""
    for word, pos in enumerate(positions):
        holding = [k for k, (s, n) in enumerate(windows) if s <= pos < s + n]
        best = max(context(pos, *windows[k]) for k in holding)
        chosen = scored_in[word]
        assert chosen in holding, f"word {word} is scored in a window that does not hold it"
        assert context(pos, *windows[chosen]) == best, \
            f"word {word} scored with {context(pos, *windows[chosen])} tokens of context, {best} possible"


@pytest.mark.parametrize("seq_len, overlap", [(128, None), (128, 100), (64, 16), (512, None)])
def test_every_word_is_scored_in_its_most_central_window(default_model_dir, long_sentence, seq_len, overlap):
    tokenizer = load_tokenizer(default_model_dir)
    words, _ = long_sentence
    aligner = Aligner(tokenizer, seq_len, overlap)
    pieces = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    positions = first_subtoken_positions(tokenizer, words)
    samples = aligner.samples(0, words)
    assert len(samples) > 1

    # where each window starts in the sentence's pieces, read from the samples themselves
    windows = []
    for sample in samples:
        body = list(sample.input_ids[1:-1])
        assert sample.input_ids[0] == tokenizer.cls_token_id and sample.input_ids[-1] == tokenizer.sep_token_id
        starts = [s for s in range(len(pieces) - len(body) + 1) if pieces[s:s + len(body)] == body]
        assert starts, "a window is not a run of the sentence's word pieces"
        windows.append((starts[0], len(body)))
    assert windows[0][0] == 0 and windows[-1][0] + windows[-1][1] == len(pieces)

    scored_in = {}
    for k, sample in enumerate(samples):
        for word, pos in sample.scored:
            assert word not in scored_in, f"word {word} scored twice"
            scored_in[word] = k
            # the label position is the word's first piece
            assert sample.input_ids[pos] == pieces[positions[word]]
            assert windows[k][0] + pos - 1 == positions[word]
    assert sorted(scored_in) == list(range(len(words)))
    check_most_central(windows, scored_in, positions)
    if overlap is None:  # half-window overlap: every word keeps at least a quarter window each side
        width = seq_len - 2
        assert all(context(positions[w], *windows[k]) >= width // 4 - 1 for w, k in scored_in.items()
                   if width // 4 <= positions[w] < len(pieces) - width // 4)


def test_bin_create_index_scores_each_word_most_centrally(tmp_path, default_model_dir, long_sentence):
    """The same through create_bins: the .index.jsonl positions that postprocess reads."""
    words, tags = long_sentence
    data = tmp_path / "long.txt"
    data.write_text("\n".join(f"{w} {t}" for w, t in zip(words, tags)) + "\n", encoding="utf-8")
    binset = create_bins(data, default_model_dir, tmp_path / "out", seq_len=128, show_progress=False)
    records = [json.loads(line) for line in binset.index_file.read_text(encoding="utf-8").splitlines()[1:]]
    tokenizer = load_tokenizer(default_model_dir)
    positions = first_subtoken_positions(tokenizer, words)
    n_pieces = len(tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    width = 128 - 2
    assert len(records) > 1 and all(r["tokens"] == 128 for r in records)
    # window starts: from any word the window scores (its first piece, minus its place after [CLS])
    windows, scored_in = [], {}
    for k, record in enumerate(records):
        starts = {positions[w] - (pos - 1) for w, pos in record["words"]}
        assert len(starts) == 1
        windows.append((starts.pop(), width))
        scored_in.update({w: k for w, _ in record["words"]})
    assert windows[-1][0] + width == n_pieces
    assert sorted(scored_in) == list(range(len(words)))
    check_most_central(windows, scored_in, positions)
