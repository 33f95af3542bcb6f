"""Words -> model samples with the model's own fast tokenizer, and the map back.

A sentence (or, with document context, the words of a whole document: FLERT, Schweter & Akbik
2020) whose word pieces do not fit `seq_len` is split into overlapping windows of word pieces
(never truncated). Each word is scored exactly once: in the window where its first sub-token has
the most context on its nearer side. A document window may score words of several sentences;
its `Sample.scored_sentences` then says whose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from common.word_case import NO_CAPITAL, piece_case_types

from .tokenizer import encodes_word_case


@dataclass(frozen=True)
class Sample:
    """One model input row (unpadded) and the words it is responsible for.

    `sentence` is the sentence of the first scored word (of the first token where none is scored).
    `scored_sentences`, when not empty, gives the sentence of each `scored` word (document context);
    empty means every scored word belongs to `sentence`. `token_types`: each token's word case
    (`common.word_case`) for a model that reads it, else empty (zeros)."""

    sentence: int
    input_ids: tuple[int, ...]
    scored: tuple[tuple[int, int], ...]  # (word id in its sentence, token position of its first sub-token)
    scored_sentences: tuple[int, ...] = ()
    token_types: tuple[int, ...] = ()

    @property
    def tokens(self) -> int:
        return len(self.input_ids)

    def scored_words(self) -> Iterator[tuple[int, int, int]]:
        """(sentence, word id in that sentence, token position) of every scored word."""
        owners = self.scored_sentences or (self.sentence,) * len(self.scored)
        for owner, (word, pos) in zip(owners, self.scored):
            yield owner, word, pos


def _specials(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single sequence ([CLS] / [SEP] for BERT)."""
    enc = tokenizer(["x"], is_split_into_words=True)
    word_ids = enc.word_ids()
    first = next(i for i, w in enumerate(word_ids) if w is not None)
    last = max(i for i, w in enumerate(word_ids) if w is not None)
    ids = enc["input_ids"]
    return ids[:first], ids[last + 1:]


def _first_positions(word_ids: Sequence[int], count: int) -> list[int]:
    """The token position of each word's first sub-token (`word_ids`: the word of each token)."""
    first: dict[int, int] = {}
    for pos, word in enumerate(word_ids):
        first.setdefault(word, pos)
    return [first[word] for word in range(count)]


class Aligner:
    """Turns a sentence's words, or a document's sentences, into Samples of at most `seq_len` tokens."""

    def __init__(self, tokenizer, seq_len: int, overlap: int | None = None):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer (tokenizer.json) is needed for word alignment")
        self.tokenizer = tokenizer
        self.word_case = encodes_word_case(tokenizer)
        self.prefix, self.suffix = _specials(tokenizer)
        self.seq_len = seq_len
        self.content = seq_len - len(self.prefix) - len(self.suffix)
        if self.content < 2:
            raise ValueError(f"seq_len {seq_len} leaves no room for words")
        self.overlap = self.content // 2 if overlap is None else overlap
        if not 0 <= self.overlap < self.content:
            raise ValueError(f"window overlap {self.overlap} must be in [0, {self.content})")

    def word_pieces(self, words) -> tuple[list[int], list[int]]:
        """Token ids without special tokens, and the first-sub-token index of each word.

        A word the tokenizer turns into nothing (e.g. a lone zero-width character) becomes the
        unknown token, so that every word keeps a position and a label."""
        words = list(words)
        enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        word_ids = enc.word_ids()
        present = set(word_ids)
        if len(present) < len(words):
            words = [w if i in present else self.tokenizer.unk_token for i, w in enumerate(words)]
            enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
            word_ids = enc.word_ids()
        return list(enc["input_ids"]), _first_positions(word_ids, len(words))

    def word_pieces_many(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int]]]:
        """`word_pieces` of many sentences from one call of the fast tokenizer (it batches them)."""
        word_lists = [list(words) for words in sentences]
        if not word_lists:
            return []
        enc = self.tokenizer(word_lists, is_split_into_words=True, add_special_tokens=False)
        out = []
        for i, words in enumerate(word_lists):
            word_ids = enc.word_ids(i)
            if len(set(word_ids)) < len(words):  # a word that became nothing: the slow path swaps in [UNK]
                out.append(self.word_pieces(words))
                continue
            out.append((list(enc["input_ids"][i]), _first_positions(word_ids, len(words))))
        return out

    def window_starts(self, n_tokens: int) -> list[int]:
        if n_tokens <= self.content:
            return [0]
        step = self.content - self.overlap
        starts = list(range(0, n_tokens - self.content, step))
        starts.append(n_tokens - self.content)
        return starts

    def samples(self, sentence_id: int, words) -> list[Sample]:
        """One sentence on its own (sentence context)."""
        return self.document_samples([(sentence_id, words)])

    def document_samples(self, sentences: Sequence[tuple[int, Sequence[str]]],
                         pieces: Sequence[tuple[list[int], list[int]]] | None = None) -> list[Sample]:
        """The sentences of one document, `(sentence id, words)` in order, as one token sequence cut
        into windows; every word of every sentence is scored exactly once. `pieces`: their
        `word_pieces`, when the caller tokenised them already."""
        if pieces is None:
            pieces = self.word_pieces_many([sentence_words for _, sentence_words in sentences])
        ids: list[int] = []
        words: list[tuple[int, int, int]] = []  # (sentence, word, first sub-token in `ids`)
        token_sentence: list[int] = []
        types: list[int] = []
        for (sentence_id, sentence_words), (token_ids, first_pos) in zip(sentences, pieces):
            words.extend((sentence_id, w, len(ids) + p) for w, p in enumerate(first_pos))
            token_sentence.extend([sentence_id] * len(token_ids))
            ids.extend(token_ids)
            if self.word_case:
                types.extend(piece_case_types(sentence_words, first_pos, len(token_ids)))
        return self._windows(ids, words, token_sentence, sentences[0][0] if sentences else 0, types)

    def documents_samples(self, documents: Sequence[Sequence[tuple[int, Sequence[str]]]]) -> list[Sample]:
        """`document_samples` of each document, in order."""
        return [sample for document in documents for sample in self.document_samples(document)]

    def _windows(self, ids: list[int], words: list[tuple[int, int, int]], token_sentence: list[int],
                 first_sentence: int, types: list[int]) -> list[Sample]:
        starts = self.window_starts(len(ids))
        chosen: dict[int, list[tuple[int, int, int]]] = {s: [] for s in starts}
        if len(starts) == 1:  # one window (most sentences, short documents): every word is scored in it
            chosen[0] = [(sentence, word, pos + len(self.prefix)) for sentence, word, pos in words]
        else:
            for sentence, word, pos in words:
                best = max((s for s in starts if s <= pos < s + self.content),
                           key=lambda s: min(pos - s, s + self.content - 1 - pos))
                chosen[best].append((sentence, word, pos - best + len(self.prefix)))
        out = []
        before, after = [NO_CAPITAL] * len(self.prefix), [NO_CAPITAL] * len(self.suffix)  # special tokens' types
        for start in starts:
            body = ids[start:start + self.content]
            scored = chosen[start]
            owners = tuple(s for s, _, _ in scored)
            first = owners[0] if owners else (token_sentence[start] if start < len(token_sentence) else first_sentence)
            body_types = tuple(before + types[start:start + self.content] + after) if self.word_case else ()
            out.append(Sample(first, tuple(self.prefix + body + self.suffix), tuple((w, p) for _, w, p in scored),
                              owners if any(s != first for s in owners) else (), body_types))
        return out
