"""`python -m infer --max_tokens N`: samples regrouped by their real length before they run.

ais_bench runs a folder's samples in batches of `--batchsize` at their length on disk, as an OM with
fixed gears must. A graph with dynamic batch and sequence axes (our ONNX exports, on ONNX Runtime
or OpenVINO) need not: each sample's real length is where its attention mask ends, so the samples
are sorted by that length and cut under a padded-token budget (`preprocess.plan.group_by_budget`,
the rule the in-process engine batches by), and each batch runs only up to its longest real
length. The logits at every attended position are the ones the full-length run gives (positions
past the mask are masked out of attention), and the output files keep each sample's length on disk
(`infer.writer`), with 0 past the mask. A length bucket then costs the bytes of its padding on disk,
not the compute.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from common.errors import UserError
from preprocess.plan import BatchPolicy, group_by_budget
from runners.base import TensorMeta

from .inputs import Batch

MASK_INPUT = "attention_mask"


def check_repackable(metas: Sequence[TensorMeta], model) -> None:
    """A one-line UserError unless the graph takes an attention mask and leaves batch and length dynamic."""
    names = [m.name for m in metas]
    if MASK_INPUT not in names:
        raise UserError(f"{model}: --max_tokens finds each sample's real length in its {MASK_INPUT}, "
                        f"which this model does not take (its inputs: {', '.join(names)})")
    fixed = [m for m in metas if m.fixed_dim(0) is not None or m.fixed_dim(1) is not None]
    if fixed:
        raise UserError(f"{model}: --max_tokens regroups samples, which needs dynamic batch and sequence axes; "
                        f"input {fixed[0].name!r} is fixed at {fixed[0].describe()} (drop --max_tokens)")


def real_lengths(mask: np.ndarray) -> np.ndarray:
    """Per row: one past the last attended position (at least 1, so a sample always runs)."""
    attended = mask != 0
    last = mask.shape[1] - np.argmax(attended[:, ::-1], axis=1)
    return np.where(attended.any(axis=1), last, 1).astype(np.int64)


def repack(batches: Sequence[Batch], feeds: Sequence[Optional[dict]], metas: Sequence[TensorMeta],
           max_tokens: int, max_rows: int) -> tuple[list[Batch], list[dict]]:
    """The samples of `batches` (their feeds all loaded) as new batches sorted by real length."""
    sources = []  # (batch position, row, file length) per sample, in `samples` order
    samples, lengths = [], []
    for position, (batch, feed) in enumerate(zip(batches, feeds)):
        real = real_lengths(feed[MASK_INPUT][:len(batch.samples)])
        for row, sample in enumerate(batch.samples):
            sources.append((position, row, batch.length))
            samples.append(sample)
            lengths.append(int(real[row]))
    policy = BatchPolicy(max_rows=max_rows, max_tokens=max_tokens)
    new_batches, new_feeds = [], []
    for members, length in group_by_budget(lengths, policy):
        feed = {}
        for meta in metas:
            # zeros past a sample's data: masked out, so any token id there is as good as the pad id
            array = np.zeros((len(members), length), dtype=meta.dtype)
            for row, member in enumerate(members):
                position, source_row, file_length = sources[member]
                take = min(length, file_length)
                array[row, :take] = feeds[position][meta.name][source_row, :take]
            feed[meta.name] = array
        new_batches.append(Batch(length, tuple(samples[m] for m in members), len(members),
                                 file_lengths=tuple(sources[m][2] for m in members),
                                 real_lengths=tuple(lengths[m] for m in members)))
        new_feeds.append(feed)
    return new_batches, new_feeds
