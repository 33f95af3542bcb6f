"""Training examples: CoNLL sentences -> token ids with labels on each word's first sub-token."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from common.errors import UserError
from common.feeds import build_feed
from common.tags import OUTSIDE, entity_types, keep_types
from common.word_case import token_case_types
from preprocess.align import Aligner
from preprocess.conll import ConllFile, Sentence
from preprocess.tokenizer import encodes_word_case

IGNORE_INDEX = -100


def label_list(sentences, types=None) -> list[str]:
    """O first, then B-/I- for each entity type in sorted order (the data decides the labels)."""
    found = set()
    for sentence in sentences:
        found |= entity_types(sentence.tags)
    chosen = sorted(found) if types is None else sorted(types)
    labels = [OUTSIDE]
    for etype in chosen:
        labels += [f"B-{etype}", f"I-{etype}"]
    return labels


def filter_types(sentences, types, path) -> list[Sentence]:
    """Keep only the named entity types; every other tag becomes O. Unknown type names are an error."""
    present = set()
    for sentence in sentences:
        present |= entity_types(sentence.tags)
    missing = sorted(set(types) - present)
    if missing:
        raise UserError(f"{path}: --labels names {', '.join(missing)}, which the data does not have "
                        f"(it has {', '.join(sorted(present))})")
    return [Sentence(s.words, tuple(keep_types(s.tags, types)), s.doc_id, s.lines) for s in sentences]


@dataclass(frozen=True)
class Example:
    """Token ids, a label at each scored word's first sub-token (IGNORE_INDEX elsewhere), and
    `(sentence, word)` of each labelled position in token order (to score per sentence);
    `token_types`: each token's word case for a model that reads it (`common.word_case`), else empty."""

    input_ids: list[int]
    labels: list[int]
    words: tuple[tuple[int, int], ...] = ()
    token_types: tuple[int, ...] = ()


def encode(tokenizer, sentences, label2id, max_seq_len) -> list[Example]:
    """Tokenise with first-sub-token labels. A sentence too long for max_seq_len is split into
    word chunks (each its own example), never truncated."""
    examples: list[Example] = []
    for sid, sentence in enumerate(sentences):
        _encode_chunk(tokenizer, list(sentence.words), [label2id[t] for t in sentence.tags],
                      max_seq_len, examples, sid, 0)
    return examples


def _encode_chunk(tokenizer, words, label_ids, max_seq_len, out, sid, first_word):
    enc = tokenizer(words, is_split_into_words=True, truncation=False)
    if len(enc["input_ids"]) > max_seq_len and len(words) > 1:
        half = len(words) // 2
        _encode_chunk(tokenizer, words[:half], label_ids[:half], max_seq_len, out, sid, first_word)
        _encode_chunk(tokenizer, words[half:], label_ids[half:], max_seq_len, out, sid, first_word + half)
        return
    labels, previous, owners = [], None, []
    for word_id in enc.word_ids():
        first = word_id is not None and word_id != previous
        labels.append(label_ids[word_id] if first else IGNORE_INDEX)
        if first:
            owners.append((sid, first_word + word_id))
        previous = word_id
    ids = enc["input_ids"][:max_seq_len]  # only a single over-long word can still exceed
    labels = labels[: len(ids)]
    types = tuple(token_case_types(words, enc.word_ids())[:len(ids)]) if encodes_word_case(tokenizer) else ()
    out.append(Example(ids, labels, tuple(owners[:sum(1 for x in labels if x != IGNORE_INDEX)]), types))


def encode_documents(aligner: Aligner, conll: ConllFile, sentences, label2id, note=None) -> list[Example]:
    """Document context (FLERT): the sentences of each document as one sequence in the windows
    `bin_create --context document` makes (`Aligner.document_samples`); each word is labelled once,
    at its first sub-token in the window that scores it. `sentences` are `conll.sentences`, possibly
    with filtered tags. A file without -DOCSTART- is said once through `note`."""
    if not conll.has_docstart and note is not None:
        note(conll.no_docstart_note())
    examples: list[Example] = []
    for group in conll.documents():
        for sample in aligner.document_samples([(sid, sentences[sid].words) for sid in group]):
            labels = [IGNORE_INDEX] * sample.tokens
            owners = []
            for sid, word, pos in sorted(sample.scored_words(), key=lambda item: item[2]):
                labels[pos] = label2id[sentences[sid].tags[word]]
                owners.append((sid, word))
            examples.append(Example(list(sample.input_ids), labels, tuple(owners), sample.token_types))
    return examples


def bucketed_batches(examples, batch_size, seed, pool_factor=50):
    """Shuffle, sort by length inside pools of pool_factor batches, then shuffle the batches:
    little padding, still random order. Deterministic for a seed."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = batch_size * pool_factor
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(examples[i].input_ids))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples, indices, pad_id, input_names):
    """Dynamic padding to the longest example of the batch: the inputs the model takes, named as
    `input_names` (`common.feeds.build_feed`, the feed builder of every other stage), and the labels."""
    rows = [examples[i].input_ids for i in indices]
    width = max(len(row) for row in rows)
    types = [examples[i].token_types for i in indices] if examples[indices[0]].token_types else None
    feed = build_feed(rows, width, input_names, pad_id, types)
    labels = torch.full((len(indices), width), IGNORE_INDEX, dtype=torch.long)
    for row, i in enumerate(indices):
        labels[row, :len(examples[i].labels)] = torch.tensor(examples[i].labels)
    return {name: torch.from_numpy(values) for name, values in feed.items()}, labels
