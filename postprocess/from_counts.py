"""result.json's scores from counts that were added up, not from the predictions themselves.

A corpus run scores each shard (`metrics.count_entities` + words right/total) and keeps only the
counts; the totals are sums, so the scores are exactly those `metrics.classification_report`
gives on all sentences at once (conlleval counts add up: no ratio is averaged). `result_from_counts`
returns the keys `score.score_run` writes, in its order; the keys that describe where the data came
from (`context`) are the caller's.
"""
from __future__ import annotations

from typing import Mapping

from common.metrics import Counts

from .score import SCORING

# score_run's keys that say where the data came from, not what the scores are
CONTEXT_KEYS = ("num_samples", "output_format", "bin_dtype", "source", "model_dir", "seq_len", "buckets",
                "id2label", "result_dir", "anno_file", "index_file")


def add_counts(total: Mapping[str, Counts], more: Mapping[str, Counts]) -> dict[str, Counts]:
    """Per-type counts of two parts of a corpus, added (types sorted, as `count_entities` gives them)."""
    out = dict(total)
    for etype, counts in more.items():
        out[etype] = out.get(etype, Counts()) + counts
    return {etype: out[etype] for etype in sorted(out)}


def result_from_counts(per_type: Mapping[str, Counts], *, words_right: int, num_words: int, num_sentences: int,
                       repaired_tags: int = 0, context: Mapping | None = None) -> dict:
    """The result dict of `score.score_run` from summed counts; `context` fills CONTEXT_KEYS."""
    per_type = {etype: per_type[etype] for etype in sorted(per_type)}
    total = sum(per_type.values(), Counts())
    context = dict(context or {})
    result = {
        "accuracy": words_right / num_words if num_words else 0.0,
        "precision": total.precision,
        "recall": total.recall,
        "f1": total.f1,
        "per_type": {etype: counts.scores() for etype, counts in per_type.items()},
        "num_sentences": num_sentences,
        "num_words": num_words,
        "num_samples": context.pop("num_samples", None),
        "num_entities": total.gold,
        "num_predicted": total.predicted,
        "num_correct": total.correct,
        "missing": [],
        "missing_words": 0,
        "repaired_tags": repaired_tags,
        "label_scheme": "IOB2",
        "scoring": SCORING,
    }
    for key in CONTEXT_KEYS:
        if key != "num_samples":
            result[key] = context.pop(key, None)
    result.update(context)
    return result
