"""Words -> word labels in process, as fast as the model allows: the engine behind `infer.benchmark`.

The steps, each vectorised where it counts:
1. `encode`: one call of the fast tokenizer on all sentences (`is_split_into_words=True`), each
   word's first sub-token from `word_ids`. A sentence longer than the model's positions (or with a
   word the tokenizer drops) goes through `preprocess.align.Aligner` instead, which windows it and
   scores every word once, exactly as `bin_create.py` does.
2. `plan`: rows sorted by length and cut into batches that pad little (a token budget and a row
   cap), or, for the old recipe, fixed batches in file order padded to one length.
3. `run_plan`: per batch, padded int64 inputs built with one masked assignment, one model call,
   one argmax over the labels, and one fancy-indexed gather of the scored positions into a flat
   array of word label ids.
`predict` chains them; its result is one list of tags per sentence.
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

Feed = dict  # input name -> (batch, length) int64
InferFn = Callable[[Feed], np.ndarray]  # feed -> logits (batch, length, labels)


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
    windowed: int  # sentences that needed windows

    @property
    def num_rows(self) -> int:
        return len(self.lengths)

    @property
    def num_words(self) -> int:
        return int(self.offsets[-1])


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray  # row ids
    length: int  # padded length
    # the scored words of these rows: (row within the batch, position, flat slot)
    word_row: np.ndarray
    word_pos: np.ndarray
    word_slot: np.ndarray


def encode(tokenizer, sentences: Sequence[Sequence[str]], max_len: int, aligner=None) -> Rows:
    """Tokenise all sentences at once; see the module docstring."""
    from preprocess.align import Aligner

    sentences = [list(words) for words in sentences]
    enc = tokenizer(sentences, is_split_into_words=True, add_special_tokens=True)
    all_ids = enc["input_ids"]
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(words) for words in sentences])
    pieces, lengths, w_row, w_pos, w_slot = [], [], [], [], []
    windowed = 0
    for s, words in enumerate(sentences):
        ids = all_ids[s]
        first = _first_positions(enc.word_ids(s), len(words)) if len(ids) <= max_len else None
        if first is None:  # too long, or a word without a token: the windowing aligner's way
            aligner = aligner or Aligner(tokenizer, max_len)
            windowed += 1
            for sample in aligner.samples(s, words):
                w_row.extend([len(lengths)] * len(sample.scored))
                w_pos.extend(p for _, p in sample.scored)
                w_slot.extend(offsets[s] + w for w, _ in sample.scored)
                pieces.append(sample.input_ids)
                lengths.append(len(sample.input_ids))
            continue
        w_row.extend([len(lengths)] * len(words))
        w_pos.extend(first)
        w_slot.extend(range(offsets[s], offsets[s + 1]))
        pieces.append(ids)
        lengths.append(len(ids))
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    flat = np.fromiter((t for p in pieces for t in p), dtype=np.int64, count=int(lengths.sum()))
    return Rows(ids=flat, starts=starts, lengths=lengths, word_row=np.asarray(w_row, dtype=np.int64),
                word_pos=np.asarray(w_pos, dtype=np.int64), word_slot=np.asarray(w_slot, dtype=np.int64),
                offsets=offsets, windowed=windowed)


def _first_positions(word_ids, n_words: int) -> Optional[list[int]]:
    first = [-1] * n_words
    for pos, w in enumerate(word_ids):
        if w is not None and first[w] < 0:
            first[w] = pos
    return None if -1 in first else first


# ---------------------------------------------------------------- batching

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


def plan(rows: Rows, policy: BatchPolicy) -> list[Batch]:
    order = np.argsort(rows.lengths, kind="stable") if policy.sort else np.arange(rows.num_rows)
    groups, current, longest = [], [], 0
    for r in order.tolist():
        n = int(rows.lengths[r])
        if policy.pad_to and n > policy.pad_to:
            raise ValueError(f"row of {n} tokens does not fit the fixed length {policy.pad_to}")
        grow = max(longest, n) if not policy.pad_to else policy.pad_to
        if current and (len(current) >= policy.max_rows
                        or (policy.max_tokens and (len(current) + 1) * grow > policy.max_tokens)):
            groups.append((current, policy.pad_to or longest))
            current, longest = [], 0
            grow = n if not policy.pad_to else policy.pad_to
        current.append(r)
        longest = max(longest, n)
    if current:
        groups.append((current, policy.pad_to or longest))

    # the scored words of each batch, found once with one sort of the word table
    word_order = np.argsort(rows.word_row, kind="stable")
    bounds = np.searchsorted(rows.word_row[word_order], np.arange(rows.num_rows + 1))
    batches = []
    for members, length in groups:
        members = np.asarray(members, dtype=np.int64)
        picks = [word_order[bounds[r]:bounds[r + 1]] for r in members]
        sizes = [len(p) for p in picks]
        picks = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        batches.append(Batch(rows=members, length=int(length),
                             word_row=np.repeat(np.arange(len(members)), sizes),
                             word_pos=rows.word_pos[picks], word_slot=rows.word_slot[picks]))
    return batches


def make_feed(rows: Rows, batch: Batch, input_names: Sequence[str], pad_id: int = 0) -> Feed:
    lengths = rows.lengths[batch.rows]
    mask = np.arange(batch.length)[None, :] < lengths[:, None]
    ids = np.full((len(batch.rows), batch.length), pad_id, dtype=np.int64)
    # rows are contiguous in the flat id array: gather them in one go
    take = np.concatenate([np.arange(s, s + n) for s, n in zip(rows.starts[batch.rows], lengths)])
    ids[mask] = rows.ids[take]
    full = {"input_ids": ids, "attention_mask": mask.astype(np.int64)}
    if "token_type_ids" in input_names:
        full["token_type_ids"] = np.zeros_like(ids)
    return {name: full[name] for name in input_names}


def run_plan(rows: Rows, batches: Sequence[Batch], infer: InferFn, input_names: Sequence[str],
             pad_id: int = 0) -> np.ndarray:
    """Label id of every word (flat, `rows.offsets` splits it per sentence)."""
    out = np.full(rows.num_words, -1, dtype=np.int64)
    for batch in batches:
        logits = infer(make_feed(rows, batch, input_names, pad_id))
        # argmax only where a word is scored: (words, labels) instead of (batch, length, labels)
        out[batch.word_slot] = logits[batch.word_row, batch.word_pos].argmax(-1)
    return out


def split_labels(flat: np.ndarray, offsets: np.ndarray, id2label: Mapping[int, str]) -> list[list[str]]:
    names = np.array([id2label[i] for i in range(len(id2label))], dtype=object)
    tags = names[flat].tolist()
    return [tags[offsets[s]:offsets[s + 1]] for s in range(len(offsets) - 1)]


def predict(sentences, *, tokenizer, infer: InferFn, input_names, id2label, policy: BatchPolicy,
            max_len: int = 512) -> list[list[str]]:
    """Words -> tags, everything included (tokenising, batching, inference, decoding)."""
    rows = encode(tokenizer, sentences, max_len)
    flat = run_plan(rows, plan(rows, policy), infer, input_names, tokenizer.pad_token_id or 0)
    return split_labels(flat, rows.offsets, id2label)


# ---------------------------------------------------------------- FLOPs

@dataclass(frozen=True)
class EncoderShape:
    layers: int
    hidden: int
    intermediate: int
    labels: int

    @classmethod
    def from_config(cls, config: Mapping) -> "EncoderShape":
        return cls(int(config["num_hidden_layers"]), int(config["hidden_size"]),
                   int(config["intermediate_size"]), len(config["id2label"]))

    def flops_per_token(self) -> int:
        """Dense layers only: 2 x (QKV 3h^2 + output h^2 + FFN 2hi) per layer, + the classifier."""
        h, i = self.hidden, self.intermediate
        return self.layers * 2 * (4 * h * h + 2 * h * i) + 2 * h * self.labels

    def flops(self, row_lengths: np.ndarray) -> int:
        """FLOPs of rows of real lengths n (padding excluded): n x flops_per_token + the attention
        products QK^T and PV, 2 x 2 x n^2 x h per layer."""
        n = np.asarray(row_lengths, dtype=np.int64)
        return int(n.sum() * self.flops_per_token() + self.layers * 4 * self.hidden * int((n * n).sum()))


# ---------------------------------------------------------------- memory

def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def trim_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next baseline is honest."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssMeter:
    """Peak RSS growth of a block, in MB: VmHWM (reset via /proc/self/clear_refs) minus VmRSS before.

    Linux only; elsewhere `growth_mb` stays None. The peak covers everything the block allocates
    (model, session arenas, tokenizer, buffers) on top of what the process held before it."""

    def __init__(self):
        self.base_mb: Optional[float] = None
        self.peak_mb: Optional[float] = None

    def __enter__(self):
        trim_memory()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.base_mb = _status_kb("VmRSS") / 1024
        except OSError:
            self.base_mb = None
        return self

    def __exit__(self, *exc):
        if self.base_mb is not None:
            self.peak_mb = _status_kb("VmHWM") / 1024

    @property
    def growth_mb(self) -> Optional[float]:
        if self.base_mb is None or self.peak_mb is None:
            return None
        return self.peak_mb - self.base_mb


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    return []


def logical_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
