"""Entity-level scores exactly as CoNLL's `conlleval` counts them, and word accuracy.

Pure functions over plain lists: `y_true` and `y_pred` hold one list of tags per sentence.
Entities come from seqeval's `get_entities` in its default mode, whose chunk start/end rules
are a port of conlleval's (an `I-X` after `O` or after another type starts a chunk, as in
conlleval; seqeval's `strict` scheme mode would drop it, so it is not used). An entity is
`(sentence, type, first word, last word)`; a prediction is correct when the same tuple is gold,
so matching is set intersection. Counting happens once (`count_entities`); every ratio goes
through `_ratio`, the one place that knows conlleval's answer to a zero denominator: 0.

>>> y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
>>> y_pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "O"]]
>>> precision_score(y_true, y_pred), recall_score(y_true, y_pred), f1_score(y_true, y_pred)
(0.5, 0.3333333333333333, 0.4)
>>> accuracy_score(y_true, y_pred)  # 5 of 7 words carry the gold tag
0.7142857142857143
>>> report = classification_report(y_true, y_pred)
>>> report["per_type"]["PER"], report["per_type"]["ORG"]["support"]
({'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'support': 1, 'predicted': 1, 'correct': 1}, 1)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .tags import entities as tag_entities, split_tag

Tags = Sequence[str]


@dataclass(frozen=True)
class Counts:
    """conlleval's three numbers for one entity type (or all of them)."""

    correct: int = 0
    predicted: int = 0
    gold: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.correct + other.correct, self.predicted + other.predicted, self.gold + other.gold)

    @property
    def precision(self) -> float:
        return _ratio(self.correct, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.correct, self.gold)

    @property
    def f1(self) -> float:
        # 2PR/(P+R) written as 2c/(p+g): the same number without the rounding of two divisions;
        # with c == 0 it is 0, which is conlleval's value when P+R == 0.
        return _ratio(2 * self.correct, self.predicted + self.gold)

    def scores(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "support": self.gold, "predicted": self.predicted, "correct": self.correct}


def _ratio(numerator: int, denominator: int) -> float:
    """The one zero-division rule: conlleval reports 0 when nothing was found or nothing was gold."""
    return numerator / denominator if denominator else 0.0


def _check(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> None:
    """Same sentences, same lengths, and only O / B-TYPE / I-TYPE tags (else ValueError)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold sentences but {len(y_pred)} predicted")
    for s, (gold, pred) in enumerate(zip(y_true, y_pred)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {s}: {len(gold)} gold tags but {len(pred)} predicted")
        for tag in (*gold, *pred):
            try:
                split_tag(tag)
            except ValueError:
                raise ValueError(f"sentence {s}: tag {tag!r} is not O, B-TYPE or I-TYPE") from None


def entities(tags: Tags) -> set[tuple[str, int, int]]:
    """`(type, first word, last word)` of every chunk in one sentence, by conlleval's rules.

    >>> sorted(entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]))
    [('LOC', 4, 4), ('PER', 0, 1), ('PER', 2, 2)]
    """
    return set(tag_entities(tags))


def count_entities(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> dict[str, Counts]:
    """Per entity type: correct, predicted and gold chunks (types seen in gold or predictions)."""
    _check(y_true, y_pred)
    gold: Counter = Counter()
    predicted: Counter = Counter()
    correct: Counter = Counter()
    for gold_tags, pred_tags in zip(y_true, y_pred):
        true_set, pred_set = entities(gold_tags), entities(pred_tags)
        gold.update(etype for etype, _, _ in true_set)
        predicted.update(etype for etype, _, _ in pred_set)
        correct.update(etype for etype, _, _ in true_set & pred_set)
    return {t: Counts(correct[t], predicted[t], gold[t]) for t in sorted(gold.keys() | predicted.keys())}


def _total(per_type: dict[str, Counts]) -> Counts:
    return sum(per_type.values(), Counts())


def precision_score(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> float:
    """Entity-level micro precision (conlleval's overall `precision`)."""
    return _total(count_entities(y_true, y_pred)).precision


def recall_score(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> float:
    """Entity-level micro recall (conlleval's overall `recall`)."""
    return _total(count_entities(y_true, y_pred)).recall


def f1_score(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> float:
    """Entity-level micro F1 (conlleval's overall `FB1`, as a fraction)."""
    return _total(count_entities(y_true, y_pred)).f1


def accuracy_score(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> float:
    """Share of words whose predicted tag equals the gold tag (conlleval's `accuracy`)."""
    _check(y_true, y_pred)
    right = sum(g == p for gold, pred in zip(y_true, y_pred) for g, p in zip(gold, pred))
    return _ratio(right, sum(len(gold) for gold in y_true))


def classification_report(y_true: Sequence[Tags], y_pred: Sequence[Tags]) -> dict:
    """Everything conlleval prints, as a dict: overall micro scores, accuracy and per-type scores."""
    per_type = count_entities(y_true, y_pred)
    total = _total(per_type)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": total.precision,
        "recall": total.recall,
        "f1": total.f1,
        "num_entities": total.gold,
        "num_predicted": total.predicted,
        "num_correct": total.correct,
        "num_words": sum(len(gold) for gold in y_true),
        "per_type": {etype: counts.scores() for etype, counts in per_type.items()},
    }
