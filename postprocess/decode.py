"""Token logits -> word label ids: the inverse of preprocess's alignment, pure (no files).

The index (docs/internals.md) lists, for each sample, `[word id, token position]` of exactly
the words that sample scores; a word's label is the argmax of the logits at its first sub-token.
Windows of a long sentence (or of a document) are joined by writing each word where the index says it belongs, so
overlapping context tokens are never read. Every check here names the file it blames: the index
(`Index.path`), the anno file (passed in) or the output file (`names`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from common.errors import InputFileError, ValidationError
from common.index_format import Index, IndexHeader, SampleRecord  # noqa: F401 - this module's API
from preprocess.encode import word_label_ids


def check_coverage(index: Index, words_per_sentence: Sequence[int], anno_name: str) -> None:
    """Every word of every sentence is scored by exactly one sample (else ValidationError).

    A word listed twice is a corrupt index; a count that differs from the anno means the
    two files do not belong together.
    """
    owner: dict[tuple[int, int], int] = {}
    scored = [0] * len(words_per_sentence)
    for rec in index.samples:
        for sentence, word, position in rec.scored():
            if sentence >= len(words_per_sentence):
                raise ValidationError(
                    f"{anno_name} and {index.path} disagree: sample {rec.sample} scores a word of sentence "
                    f"{sentence}, the anno has {len(words_per_sentence)} sentences")
            n_words = words_per_sentence[sentence]
            if not 0 <= position < rec.length:
                raise ValidationError(
                    f"{index.path}: corrupt index: sample {rec.sample} puts word {word} at token "
                    f"{position}, outside its length {rec.length}")
            key = (sentence, word)
            if key in owner:
                raise ValidationError(
                    f"{index.path}: corrupt index: word {word} of sentence {sentence} is scored by "
                    f"samples {owner[key]} and {rec.sample}")
            if not 0 <= word < n_words:
                raise ValidationError(
                    f"{anno_name} and {index.path} disagree: sentence {sentence} has {n_words} words "
                    f"in the anno, the index scores word {word} (sample {rec.sample})")
            owner[key] = rec.sample
            scored[sentence] += 1
    for sentence, (n_words, n_scored) in enumerate(zip(words_per_sentence, scored)):
        if n_scored != n_words:
            raise ValidationError(
                f"{anno_name} and {index.path} disagree: sentence {sentence} has {n_words} words in the "
                f"anno, the index scores {n_scored} of them")


def expected_shape(record: SampleRecord, num_labels: int) -> tuple[int, int, int]:
    """What one sample's output must look like: `(1, length, num_labels)`."""
    return (1, record.length, num_labels)


def missing_samples(index: Index, available) -> list[int]:
    """Sample ids of the index that have no output among `available` ids."""
    have = set(available)
    return [rec.sample for rec in index.samples if rec.sample not in have]


def decode(index: Index, logits: Mapping[int, np.ndarray], words_per_sentence: Sequence[int], *,
           names: Mapping[int, str] | None = None, fill_label: int | None = None,
           anno_name: str = "the anno file") -> list[list[int]]:
    """Per sentence, the predicted label id of every word.

    `logits` maps sample id -> array `(1, length, num_labels)`; `names` maps sample id -> the
    file it came from, for error messages. A sample absent from `logits` is an error unless
    `fill_label` is given, which then labels its words (the caller records that it happened).
    Coverage is checked first, so a corrupt index fails before any output is read.
    """
    check_coverage(index, words_per_sentence, anno_name)
    num_labels = index.header.num_labels
    predicted = [[-1] * n for n in words_per_sentence]
    for rec in index.samples:
        if not rec.words:
            continue
        word_ids = np.array([w for w, _ in rec.words], dtype=np.int64)
        positions = np.array([p for _, p in rec.words], dtype=np.int64)
        if rec.sample not in logits:
            if fill_label is None:
                raise ValidationError(f"no output for sample {rec.sample} of {index.path}")
            labels = np.full(len(word_ids), fill_label, dtype=np.int64)
        else:
            name = (names or {}).get(rec.sample, f"output of sample {rec.sample}")
            labels = _argmax_at(logits[rec.sample], positions, expected_shape(rec, num_labels), name, rec)
        for (sentence, word, _), label in zip(rec.scored(), labels.tolist()):
            predicted[sentence][word] = label
    return predicted


def _argmax_at(array: np.ndarray, positions: np.ndarray, shape: tuple[int, int, int], name: str,
               rec: SampleRecord) -> np.ndarray:
    if tuple(array.shape) != shape:
        raise InputFileError(
            name, f"output shape {tuple(array.shape)}, expected {shape} "
                  f"(sample {rec.sample}: length {shape[1]} in the index, {shape[2]} labels in its id2label)")
    # Casting complex to float would drop the imaginary part silently.
    if np.iscomplexobj(array) or not np.issubdtype(array.dtype, np.number):
        raise InputFileError(name, f"holds {array.dtype} logits, expected real float logits (sample {rec.sample})")
    picked = np.asarray(array[0, positions], dtype=np.float64)
    # NaN argmaxes to an arbitrary label and +inf always wins: either means a broken (often
    # fp16-overflowing) model, and scoring it would report a plausible but meaningless F1.
    finite = np.isfinite(picked).all(axis=-1)
    if not finite.all():
        row = int(np.argmin(finite))
        values = picked[row][~np.isfinite(picked[row])]
        kind = "NaN" if np.isnan(values).any() else "infinite"
        raise InputFileError(name, f"{kind} logits at token {int(positions[row])}, the first sub-token of a "
                                   f"scored word (sample {rec.sample}): the model's outputs are not finite")
    # the one decoder (preprocess.encode): the argmax at the scored positions, here of one sample's row
    return word_label_ids(picked[None], np.zeros(len(positions), dtype=np.int64), np.arange(len(positions)))
