"""common.metrics against conlleval (the oracle) and seqeval, on random and real tag sequences."""
from __future__ import annotations

import doctest
import random

import pytest

from common import metrics
from common import tags as tag_schemes
from common.metrics import accuracy_score, classification_report, count_entities, f1_score
from preprocess.conll import read_conll

TYPES = ("PER", "LOC", "ORG", "MISC")


def conlleval_report(y_true, y_pred) -> dict:
    """Run the PyPI `conlleval` package (a port of conlleval.pl) on `word gold pred` lines."""
    import conlleval
    lines = []
    for gold, pred in zip(y_true, y_pred):
        lines += [f"w {g} {p}" for g, p in zip(gold, pred)] + [""]
    return conlleval.evaluate(lines)


def random_tags(rng: random.Random, n: int) -> list[str]:
    """Any mix of O / B-X / I-X, including I-X after O or after another type (invalid IOB2)."""
    out = []
    for _ in range(n):
        r = rng.random()
        out.append("O" if r < 0.5 else f"{'B' if r < 0.75 else 'I'}-{rng.choice(TYPES)}")
    return out


def perturbed(rng: random.Random, tags: list[str], rate: float) -> list[str]:
    """Gold with some tags replaced, so that many chunks are right and some are nearly right."""
    return [t if rng.random() > rate else random_tags(rng, 1)[0] for t in tags]


def random_corpus(seed: int, sentences: int = 150):
    rng = random.Random(seed)
    y_true = [random_tags(rng, rng.randint(1, 25)) for _ in range(sentences)]
    rate = rng.choice([0.05, 0.2, 1.0])  # 1.0: predictions unrelated to gold
    y_pred = [perturbed(rng, gold, rate) for gold in y_true]
    return y_true, y_pred


def assert_matches_conlleval(y_true, y_pred):
    oracle = conlleval_report(y_true, y_pred)
    ours = classification_report(y_true, y_pred)
    chunks = oracle["overall"]["chunks"]["stats"]
    assert (ours["num_correct"], ours["num_predicted"], ours["num_entities"]) == (
        chunks["correct"], chunks["pred"], chunks["gold"])
    per_type_oracle = {t: s["stats"] for t, s in oracle["slots"]["chunks"].items()
                       if s["stats"]["gold"] or s["stats"]["pred"]}
    assert {t: (s["correct"], s["predicted"], s["support"]) for t, s in ours["per_type"].items()} == {
        t: (s["correct"], s["pred"], s["gold"]) for t, s in per_type_oracle.items()}
    evals = oracle["overall"]["chunks"]["evals"]
    # The port answers precision 1 when nothing was predicted; conlleval.pl (and we) answer 0.
    if chunks["pred"]:
        assert ours["precision"] == pytest.approx(evals["prec"], abs=1e-12)
    assert ours["recall"] == pytest.approx(evals["rec"], abs=1e-12)
    assert ours["f1"] == pytest.approx(evals["f1"], abs=1e-12)
    tags = oracle["overall"]["tags"]["stats"]
    assert ours["accuracy"] == pytest.approx(tags["correct"] / tags["gold"], abs=1e-12)


def test_doctests():
    assert doctest.testmod(metrics).failed == 0
    assert doctest.testmod(tag_schemes).failed == 0
    assert doctest.testmod(tag_schemes).attempted > 0


@pytest.mark.parametrize("seed", range(8))
def test_random_sequences_match_conlleval(seed):
    assert_matches_conlleval(*random_corpus(seed))


@pytest.mark.parametrize("seed", range(4))
def test_random_sequences_match_seqeval_default_mode(seed):
    from seqeval.metrics import f1_score as sq_f1
    from seqeval.metrics import precision_score as sq_precision
    from seqeval.metrics import recall_score as sq_recall
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    y_true, y_pred = random_corpus(100 + seed)
    ours = classification_report(y_true, y_pred)
    assert ours["precision"] == pytest.approx(sq_precision(y_true, y_pred, zero_division=0))
    assert ours["recall"] == pytest.approx(sq_recall(y_true, y_pred, zero_division=0))
    assert ours["f1"] == pytest.approx(sq_f1(y_true, y_pred, zero_division=0))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    types = sorted(ours["per_type"])
    assert [ours["per_type"][t]["support"] for t in types] == list(support)
    assert [ours["per_type"][t]["f1"] for t in types] == pytest.approx(list(f))


def test_zero_divisions_follow_conlleval():
    y_true = [["O", "O"], ["B-PER", "O"]]
    nothing_found = classification_report(y_true, [["O", "O"], ["O", "O"]])
    assert (nothing_found["precision"], nothing_found["recall"], nothing_found["f1"]) == (0.0, 0.0, 0.0)
    only_found = classification_report([["O"]], [["B-LOC"]])
    assert only_found["per_type"] == {"LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                              "predicted": 1, "correct": 0}}
    assert classification_report([], [])["accuracy"] == 0.0


def test_chunks_start_like_conlleval():
    """I-X after O or after another type starts a chunk (conlleval), unlike seqeval's strict mode."""
    assert f1_score([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]) == 1.0
    assert count_entities([["B-PER", "I-LOC"]], [["B-PER", "B-LOC"]])["LOC"].correct == 1


def test_inputs_that_make_no_sense_are_errors():
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        accuracy_score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        count_entities([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="'PER' is not O, B-TYPE or I-TYPE"):
        count_entities([["PER"]], [["O"]])


@pytest.fixture(scope="module")
def conll_test_tags(conll):
    return [list(s.tags) for s in read_conll(conll / "test.txt")]


def test_gold_against_gold_on_conll2003_test(conll_test_tags):
    report = classification_report(conll_test_tags, conll_test_tags)
    assert (report["precision"], report["recall"], report["f1"], report["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert report["num_entities"] == 5648
    assert {t: s["support"] for t, s in report["per_type"].items()} == {
        "LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}


def test_perturbed_conll2003_test_matches_conlleval(conll_test_tags):
    rng = random.Random(7)
    y_pred = [perturbed(rng, tags, 0.1) for tags in conll_test_tags]
    assert_matches_conlleval(conll_test_tags, y_pred)
