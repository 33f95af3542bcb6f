"""Training examples: CoNLL sentences -> token ids with labels on each word's first sub-token."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from common.errors import UserError
from preprocess.conll import Sentence
from preprocess.tags import OUTSIDE, entity_types, keep_types

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
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer, sentences, label2id, max_seq_len) -> list[Example]:
    """Tokenise with first-sub-token labels. A sentence too long for max_seq_len is split into
    word chunks (each its own example), never truncated."""
    examples: list[Example] = []
    for sentence in sentences:
        _encode_chunk(tokenizer, list(sentence.words), [label2id[t] for t in sentence.tags],
                      max_seq_len, examples)
    return examples


def _encode_chunk(tokenizer, words, label_ids, max_seq_len, out):
    enc = tokenizer(words, is_split_into_words=True, truncation=False)
    if len(enc["input_ids"]) > max_seq_len and len(words) > 1:
        half = len(words) // 2
        _encode_chunk(tokenizer, words[:half], label_ids[:half], max_seq_len, out)
        _encode_chunk(tokenizer, words[half:], label_ids[half:], max_seq_len, out)
        return
    labels, previous = [], None
    for word_id in enc.word_ids():
        labels.append(IGNORE_INDEX if word_id is None or word_id == previous else label_ids[word_id])
        previous = word_id
    ids = enc["input_ids"][:max_seq_len]  # only a single over-long word can still exceed
    out.append(Example(ids, labels[: len(ids)]))


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


def collate(examples, indices, pad_id):
    """Dynamic padding to the longest example of the batch."""
    width = max(len(examples[i].input_ids) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(examples[i].input_ids)
        ids[row, :n] = torch.tensor(examples[i].input_ids)
        labels[row, :n] = torch.tensor(examples[i].labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, labels
