"""A slow, obviously-correct decoder used only as the tests' oracle for the project's one decoder.

`preprocess.encode.word_label_ids` (vectorised, what every stage runs) must agree with this loop over
the aligner's samples, word by word.
"""
from __future__ import annotations


def words_to_labels(samples, logits_by_sample, num_words_by_sentence, id2label):
    """Per-token logits of each aligner sample -> one label per word: {sentence: [label, ...]}.

    `logits_by_sample[i]` is a (tokens, labels) array for samples[i]."""
    out = {s: [None] * n for s, n in num_words_by_sentence.items()}
    for sample, logits in zip(samples, logits_by_sample):
        for sentence, word, pos in sample.scored_words():
            out[sentence][word] = id2label[int(logits[pos].argmax())]
    return out
