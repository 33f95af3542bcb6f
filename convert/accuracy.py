"""The accuracy gate every quantize tool ends with: entity F1 of the new model against its input on a
CoNLL file, and the share of word labels they agree on.

Both models run through runners (ONNX Runtime for ONNX graphs, OpenVINO for IR), on the one encoder's
rows and the one planner's batches; F1 is the conlleval count of `common.metrics`. A drop of more than
`max_f1_drop` points is a ValidationError, raised before the caller moves its output into place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.errors import ValidationError
from common.metrics import f1_score
from common.model_spec import OUTPUT_NAME, ModelSpec
from preprocess.conll import Sentence, read_conll
from preprocess.encode import Rows, encode, label_names, word_label_ids
from preprocess.plan import BatchPolicy, batch_feed, plan

DEFAULT_MAX_F1_DROP = 0.3  # points of entity F1
DEFAULT_SEED = 0
# big enough batches for a quick check; the labels do not depend on the batching
CHECK_POLICY = BatchPolicy(max_rows=64, max_tokens=4096)


@dataclass(frozen=True)
class F1Check:
    """F1 of the reference (the input model) and the candidate (the quantized one) on one file."""

    file: str
    sentences: int
    f1_reference: float
    f1_candidate: float
    agreement: float  # share of word labels equal to the reference's
    words: int

    @property
    def delta_points(self) -> float:
        return 100 * (self.f1_candidate - self.f1_reference)


def sample_sentences(path, count: int, seed: int = DEFAULT_SEED) -> list[list[str]]:
    """`count` sentences of a CoNLL file, a fixed-seed sample in file order (a missing or empty file is
    `read_conll`'s one-line InputFileError)."""
    sentences = read_conll(Path(path))
    if count >= len(sentences):
        return [list(s.words) for s in sentences]
    picks = np.sort(np.random.default_rng(seed).choice(len(sentences), size=count, replace=False))
    return [list(sentences[i].words) for i in picks]


def predict_word_ids(runner, rows: Rows, input_names: Sequence[str], pad_id: int) -> np.ndarray:
    """Label id of every word of `rows` with an active runner, flat as `rows.word_slot` orders it."""
    ids = np.full(rows.num_words, -1, dtype=np.int64)
    for batch in plan(rows, CHECK_POLICY):
        logits = runner.infer(batch_feed(rows, batch, input_names, pad_id), check_inputs=False)[OUTPUT_NAME]
        ids[batch.word_slot] = word_label_ids(logits, batch.word_row, batch.word_pos)
    return ids


def f1_check(open_candidate: Callable, open_reference: Callable, *, sentences: Sequence[Sentence], source: str,
             tokenizer, spec: ModelSpec) -> F1Check:
    """Run both models (each opened by its callable as a runner context) on `sentences` (read from `source`)."""
    rows = encode(tokenizer, [s.words for s in sentences], spec.max_positions)
    pad = tokenizer.pad_token_id or 0
    predictions = []
    for opener in (open_reference, open_candidate):
        with opener() as runner:
            predictions.append(predict_word_ids(runner, rows, spec.input_names, pad))
    gold = [list(s.tags) for s in sentences]
    reference, candidate = (f1_score(gold, label_names(ids, rows.offsets, spec.id2label)) for ids in predictions)
    return F1Check(file=source, sentences=len(sentences), f1_reference=reference, f1_candidate=candidate,
                   agreement=float(np.mean(predictions[0] == predictions[1])) if rows.num_words else 1.0,
                   words=rows.num_words)


def gate(check: F1Check, max_f1_drop: float, output_name: str) -> None:
    """A drop of more than `max_f1_drop` points fails the command (nothing is written)."""
    if -check.delta_points > max_f1_drop:
        raise ValidationError(f"{output_name}: entity F1 {100 * check.f1_candidate:.2f} on {check.file} is "
                              f"{-check.delta_points:.2f} points below the input's {100 * check.f1_reference:.2f} "
                              f"(--max_f1_drop {max_f1_drop}); nothing written")
