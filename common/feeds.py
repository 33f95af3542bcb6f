"""Model feeds: token-id rows -> the padded int64 arrays a token classifier takes, named by the model spec.

One builder for every caller (the engine, the benchmark, the conversion checks): `input_ids`
padded with the tokenizer's pad id, `attention_mask` 1 on real tokens and 0 on padding, and
`token_type_ids` only when the model takes it: all zeros (single-sequence input), or each token's
word case (`common.word_case`) for a model trained with it, when the caller's rows carry them. The
names and their order are the model spec's (`common.model_spec.ModelSpec.input_names`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .model_spec import CANONICAL_INPUT_ORDER

Feed = dict  # input name -> (rows, length) int64


def _flat(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if len(rows) else np.zeros(0, np.int64)


def build_feed(rows: Sequence[Sequence[int]], length: int, input_names: Sequence[str], pad_id: int,
               type_rows: Optional[Sequence[Sequence[int]]] = None) -> Feed:
    """Rows of token ids (each at most `length` long) -> a feed of `len(rows)` rows padded to `length`.
    `type_rows`: the token type ids of each row (word case), None for zeros."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    starts = np.zeros(len(rows), dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    return build_feed_flat(_flat(rows), starts, lengths, length, input_names, pad_id,
                           None if type_rows is None else _flat(type_rows))


def build_feed_flat(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, length: int,
                    input_names: Sequence[str], pad_id: int, token_types: Optional[np.ndarray] = None) -> Feed:
    """The same from one flat id array: row r is `ids[starts[r]:starts[r] + lengths[r]]`, and its
    token types (when given) `token_types[starts[r]:...]` likewise.

    Vectorised (one masked assignment fills every row), as the engine feeds it many rows per batch."""
    unknown = [name for name in input_names if name not in CANONICAL_INPUT_ORDER]
    if unknown:
        raise ValueError(f"unknown model input {unknown[0]!r} (known: {', '.join(CANONICAL_INPUT_ORDER)})")
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and int(lengths.max()) > length:
        raise ValueError(f"a row of {int(lengths.max())} tokens does not fit the padded length {length}")
    mask = np.arange(length)[None, :] < lengths[:, None]
    input_ids = np.full((len(lengths), length), pad_id, dtype=np.int64)
    # rows are contiguous in the flat id array: gather them in one go
    take = (np.concatenate([np.arange(s, s + n) for s, n in zip(np.asarray(starts).tolist(), lengths.tolist())])
            if len(lengths) else np.zeros(0, dtype=np.int64))
    input_ids[mask] = np.asarray(ids, dtype=np.int64)[take]
    full = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
    if token_types is not None and "token_type_ids" not in input_names:
        raise ValueError("token types (word case) were given for a model that takes no token_type_ids")
    if "token_type_ids" in input_names:
        full["token_type_ids"] = np.zeros_like(input_ids)
        if token_types is not None:
            full["token_type_ids"][mask] = np.asarray(token_types, dtype=np.int64)[take]
    return {name: full[name] for name in input_names}
