"""The case of each word, for models whose tokenizer lowercases (uncased BERT, all-MiniLM-L6-v2).

An uncased tokenizer maps "Paris", "paris" and "PARIS" to the same word pieces, yet capitals are
the strongest single cue for names in English NER (CoNLL-era taggers all used a case feature; cased
BERTs beat uncased ones on CoNLL-2003). A model trained with `train.finetune --word_case` gets the
case of each word back through its segment embedding: every word piece of a word carries the
word's class in `token_type_ids` (special tokens and padding 0). The model's config.json says so
(`ner_word_case`, read by `common.model_spec`), and the one tokenizer loader marks the tokenizer,
so every stage that encodes words builds the same types.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

# token type ids: no capital letter (lower case, digits, punctuation) / first letter capital / all capitals
NO_CAPITAL, CAPITALISED, ALL_CAPITALS = 0, 1, 2
CASE_CLASSES = 3

CONFIG_KEY = "ner_word_case"
CONFIG_VALUE = "token_type_ids"  # where the classes go: the only place a BERT encoder has spare embeddings


@lru_cache(maxsize=1 << 16)  # words repeat: a corpus's common words are classified once
def word_case(word: str) -> int:
    """The class of one word: ALL_CAPITALS when it has two or more cased letters, all upper case
    ("EU", "U.S.", headlines); CAPITALISED when its first cased letter is upper case ("Paris",
    "McDonald", "A"); else NO_CAPITAL ("paris", "iPhone", "1996", ",")."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if not cased:
        return NO_CAPITAL
    if len(cased) >= 2 and all(c.isupper() for c in cased):
        return ALL_CAPITALS
    return CAPITALISED if cased[0].isupper() else NO_CAPITAL


def token_case_types(words: Sequence[str], word_ids: Sequence[Optional[int]]) -> list[int]:
    """The class of each token's word (`word_ids`: the word of each token, None for special tokens -> 0)."""
    classes = [word_case(word) for word in words]
    return [NO_CAPITAL if w is None else classes[w] for w in word_ids]


def piece_case_types(words: Sequence[str], first_positions: Sequence[int], num_tokens: int) -> list[int]:
    """The same for word pieces without special tokens, given each word's first sub-token: a word's
    pieces run from its first sub-token to the next word's."""
    types = [NO_CAPITAL] * num_tokens
    ends = list(first_positions[1:]) + [num_tokens]
    for word, start, end in zip(words, first_positions, ends):
        types[start:end] = [word_case(word)] * (end - start)
    return types
