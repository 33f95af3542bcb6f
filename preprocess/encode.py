"""Words -> unpadded model rows for many sentences at once, and the inverse: row logits -> word labels.

`encode` calls the fast tokenizer once on all sentences (`is_split_into_words=True`) and takes each
word's first sub-token from `word_ids`. A sentence longer than the model's positions (or with a word
the tokenizer drops) goes through `preprocess.align.Aligner` instead, which windows it and scores
every word once, exactly as `bin_create.py` does. The result is a frozen `Rows` record.

Document context (FLERT, `bin_create.py --context document`): with `documents` (lists of sentence
indices) the sentences of each document form one token sequence that `Aligner.document_samples`
cuts into overlapping windows; a row may then score words of several sentences, each at its own
slot `offsets[sentence] + word`, so the decoding below is the same in both contexts.

The inverse is pure: `word_label_ids` (argmax) and `word_label_probs` (softmax) read a batch's
logits at the scored positions only, `split_per_sentence` / `label_names` cut the flat per-word
result back into sentences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from common.word_case import token_case_types

from .align import Aligner
from .tokenizer import encodes_word_case


@dataclass(frozen=True)
class Rows:
    """Model input rows (unpadded) of a set of sentences and where each scored word lands.

    Row r holds `ids[starts[r]:starts[r] + lengths[r]]`; `word_row/word_pos/word_slot` list every
    scored word: its row, its first sub-token's position, its slot in the flat per-word output
    (`offsets[s] + word id` for sentence s)."""

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    word_row: np.ndarray
    word_pos: np.ndarray
    word_slot: np.ndarray
    offsets: np.ndarray  # (sentences + 1,) word offsets
    windowed: int  # sentences (documents, in document context) that needed windows
    token_types: Optional[np.ndarray] = None  # flat like `ids`: each token's word case, for a model that reads it

    @property
    def num_rows(self) -> int:
        return len(self.lengths)

    @property
    def num_words(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1


def encode(tokenizer, sentences: Sequence[Sequence[str]], max_len: int, aligner: Optional[Aligner] = None, *,
           documents: Optional[Sequence[Sequence[int]]] = None, overlap: Optional[int] = None) -> Rows:
    """Tokenise all sentences at once; see the module docstring. `documents`: which sentences form a
    document (every sentence index exactly once, in any grouping), for document context; None:
    each sentence on its own. `overlap`: tokens shared by neighbouring windows [default: half]."""
    sentences = [list(words) for words in sentences]
    if documents is not None:
        return _encode_documents(aligner or Aligner(tokenizer, max_len, overlap), sentences, documents)
    enc = tokenizer(sentences, is_split_into_words=True, add_special_tokens=True)
    all_ids = enc["input_ids"]
    offsets = _word_offsets(sentences)
    pieces, lengths, w_row, w_pos, w_slot = [], [], [], [], []
    types = [] if encodes_word_case(tokenizer) else None
    windowed = 0
    for s, words in enumerate(sentences):
        ids = all_ids[s]
        first = _first_positions(enc.word_ids(s), len(words)) if len(ids) <= max_len else None
        if first is None:  # too long, or a word without a token: the windowing aligner's way
            aligner = aligner or Aligner(tokenizer, max_len, overlap)
            windowed += 1
            _add_samples(aligner.samples(s, words), offsets, pieces, lengths, w_row, w_pos, w_slot, types)
            continue
        w_row.extend([len(lengths)] * len(words))
        w_pos.extend(first)
        w_slot.extend(range(offsets[s], offsets[s + 1]))
        pieces.append(ids)
        lengths.append(len(ids))
        if types is not None:
            types.append(token_case_types(words, enc.word_ids(s)))
    return _rows(pieces, lengths, w_row, w_pos, w_slot, offsets, windowed, types)


def _encode_documents(aligner: Aligner, sentences: list[list[str]], documents) -> Rows:
    """Document context: each document's sentences as one windowed sequence (`Aligner.document_samples`,
    what `bin_create.py --context document` writes). Sentences without words add no tokens."""
    documents = [list(document) for document in documents]
    listed = sorted(s for document in documents for s in document)
    if listed != list(range(len(sentences))):
        raise ValueError(f"documents must list each of the {len(sentences)} sentence indices exactly once")
    offsets = _word_offsets(sentences)
    pieces, lengths, w_row, w_pos, w_slot = [], [], [], [], []
    types = [] if aligner.word_case else None
    windowed = 0
    # one call of the fast tokenizer for every sentence of every document (a call per document costs more)
    sentence_pieces = aligner.word_pieces_many(sentences)
    for document in documents:
        worded = [(s, sentences[s]) for s in document if sentences[s]]
        if not worded:
            continue
        samples = aligner.document_samples(worded, [sentence_pieces[s] for s, _ in worded])
        windowed += len(samples) > 1
        _add_samples(samples, offsets, pieces, lengths, w_row, w_pos, w_slot, types)
    return _rows(pieces, lengths, w_row, w_pos, w_slot, offsets, windowed, types)


def _word_offsets(sentences: list[list[str]]) -> np.ndarray:
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(words) for words in sentences])
    return offsets


def _add_samples(samples, offsets, pieces, lengths, w_row, w_pos, w_slot, types) -> None:
    """Aligner samples as rows; a scored word lands at its own sentence's slot. `types`: None, or
    the list that collects each row's token types."""
    for sample in samples:
        for sentence, word, pos in sample.scored_words():
            w_row.append(len(lengths))
            w_pos.append(pos)
            w_slot.append(offsets[sentence] + word)
        pieces.append(sample.input_ids)
        lengths.append(len(sample.input_ids))
        if types is not None:
            types.append(sample.token_types)


def _rows(pieces, lengths, w_row, w_pos, w_slot, offsets, windowed, types=None) -> Rows:
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    total = int(lengths.sum())
    flat = np.fromiter((t for p in pieces for t in p), dtype=np.int64, count=total)
    flat_types = None if types is None else np.fromiter((t for p in types for t in p), dtype=np.int64, count=total)
    return Rows(ids=flat, starts=starts, lengths=lengths, word_row=np.asarray(w_row, dtype=np.int64),
                word_pos=np.asarray(w_pos, dtype=np.int64), word_slot=np.asarray(w_slot, dtype=np.int64),
                offsets=offsets, windowed=windowed, token_types=flat_types)


def _first_positions(word_ids, n_words: int) -> Optional[list[int]]:
    first = [-1] * n_words
    for pos, w in enumerate(word_ids):
        if w is not None and first[w] < 0:
            first[w] = pos
    return None if -1 in first else first


# ---------------------------------------------------------------- the inverse (pure)

def word_label_ids(logits: np.ndarray, word_row: np.ndarray, word_pos: np.ndarray) -> np.ndarray:
    """Label id of each scored word of a batch: argmax of `logits[row, pos]`, (batch, length, labels) in.

    Only the scored positions are reduced: (words, labels) instead of (batch, length, labels)."""
    return logits[word_row, word_pos].argmax(-1)


def word_label_probs(logits: np.ndarray, word_row: np.ndarray, word_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label id of each scored word and the softmax probability of that label (float64)."""
    scored = logits[word_row, word_pos].astype(np.float64)
    z = np.exp(scored - scored.max(axis=-1, keepdims=True))
    best = z.argmax(-1)
    return best, z[np.arange(len(best)), best] / z.sum(axis=-1)


def split_per_sentence(values: np.ndarray, offsets: np.ndarray) -> list[list]:
    """A flat per-word array -> one list per sentence (`offsets` from `Rows`)."""
    flat = np.asarray(values).tolist()
    return [flat[offsets[s]:offsets[s + 1]] for s in range(len(offsets) - 1)]


def label_names(flat: np.ndarray, offsets: np.ndarray, id2label: Mapping[int, str]) -> list[list[str]]:
    """Flat per-word label ids -> tags per sentence."""
    names = np.array([id2label[i] for i in range(len(id2label))], dtype=object)
    tags = names[flat].tolist()
    return [tags[offsets[s]:offsets[s + 1]] for s in range(len(offsets) - 1)]
