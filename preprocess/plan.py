"""Encoded rows -> batches that pad little, and each batch's feed.

`plan` sorts rows by length and cuts them into batches under a row cap and a padded-token budget,
or, for the old recipe, keeps file order and pads every row to one fixed length. Each `RowBatch`
carries its scored words, so decoding a batch's logits is one fancy-indexed gather
(`preprocess.encode.word_label_ids`). `batch_feed` builds its padded inputs (`common.feeds`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from common.feeds import Feed, build_feed_flat

from .encode import Rows


@dataclass(frozen=True)
class BatchPolicy:
    """How rows become batches.

    `sort`: by length (ascending) first; `max_rows`: rows per batch; `max_tokens`: padded tokens
    per batch (rows x padded length), None for no budget; `pad_to`: a fixed padded length (the
    old recipe's 512) instead of the batch's longest row."""

    max_rows: int = 64
    max_tokens: Optional[int] = None
    sort: bool = True
    pad_to: Optional[int] = None

    def describe(self) -> str:
        parts = [("sorted by length" if self.sort else "file order"), f"up to {self.max_rows} rows"]
        if self.max_tokens:
            parts.append(f"up to {self.max_tokens} padded tokens")
        parts.append(f"padded to {self.pad_to}" if self.pad_to else "padded to the batch's longest")
        return ", ".join(parts)


@dataclass(frozen=True)
class RowBatch:
    """Some rows of a `Rows`, padded to one length, with the scored words they hold."""

    rows: np.ndarray  # row ids
    length: int  # padded length
    # the scored words of these rows: (row within the batch, position, flat slot)
    word_row: np.ndarray
    word_pos: np.ndarray
    word_slot: np.ndarray


def group_by_budget(lengths: Sequence[int], policy: BatchPolicy) -> list[tuple[list[int], int]]:
    """Indices of `lengths` cut into batches under the policy's row cap and padded-token budget
    (sorted by length first when `policy.sort`); each batch with the length it is padded to.
    The one batching rule: the engine's rows and `python -m infer --max_tokens`'s samples."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable") if policy.sort else np.arange(len(lengths))
    groups, current, longest = [], [], 0
    for r in order.tolist():
        n = int(lengths[r])
        if policy.pad_to and n > policy.pad_to:
            raise ValueError(f"row of {n} tokens does not fit the fixed length {policy.pad_to}")
        grow = max(longest, n) if not policy.pad_to else policy.pad_to
        if current and (len(current) >= policy.max_rows
                        or (policy.max_tokens and (len(current) + 1) * grow > policy.max_tokens)):
            groups.append((current, policy.pad_to or longest))
            current, longest = [], 0
        current.append(r)
        longest = max(longest, n)
    if current:
        groups.append((current, policy.pad_to or longest))
    return groups


def plan(rows: Rows, policy: BatchPolicy) -> list[RowBatch]:
    groups = group_by_budget(rows.lengths, policy)

    # the scored words of each batch, found once with one sort of the word table
    word_order = np.argsort(rows.word_row, kind="stable")
    bounds = np.searchsorted(rows.word_row[word_order], np.arange(rows.num_rows + 1))
    batches = []
    for members, length in groups:
        members = np.asarray(members, dtype=np.int64)
        picks = [word_order[bounds[r]:bounds[r + 1]] for r in members]
        sizes = [len(p) for p in picks]
        picks = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        batches.append(RowBatch(rows=members, length=int(length),
                                word_row=np.repeat(np.arange(len(members)), sizes),
                                word_pos=rows.word_pos[picks], word_slot=rows.word_slot[picks]))
    return batches


def batch_feed(rows: Rows, batch: RowBatch, input_names: Sequence[str], pad_id: int = 0) -> Feed:
    """The padded int64 inputs of one batch, named and ordered as `input_names`."""
    return build_feed_flat(rows.ids, rows.starts[batch.rows], rows.lengths[batch.rows], batch.length,
                           input_names, pad_id, rows.token_types)
