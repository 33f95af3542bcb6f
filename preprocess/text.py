"""Raw text <-> words with character offsets (pure, no model): the raw-text predictor's and the corpus's.

Words are what the model's own fast tokenizer calls words: its normalizer and pre-tokenizer run
on the whole text (`word_ids()` of one encoding), and a word's offsets are the first and last
character its sub-tokens cover in the ORIGINAL string (the tokenizer's offset mapping). The
normalizer matters: BERT's puts spaces around CJK ideographs, so text without spaces is split
per character, and it strips accents and lower-cases without moving offsets. Characters that
give no token (a zero-width space alone, control characters) belong to no word.

The words then go through the encoder like a CoNLL sentence does (`preprocess.encode`), so raw text
and CoNLL files share one alignment and one windowing. The way back: word tags -> entities
(`common.tags.entities`, the one entity walker) -> character spans in the text (`text_entities`).

>>> text = "  EU  rejects German call"
>>> words = [(2, 4), (6, 13), (14, 20), (21, 25)]
>>> text_entities(text, words, ["B-ORG", "O", "I-MISC", "I-MISC"], [0.9, 0.8, 0.5, 0.7])
(Entity(start=2, end=4, type='ORG', score=0.9, text='EU'), Entity(start=14, end=25, type='MISC', score=0.6, text='German call'))
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Sequence

from common.tags import entities

Span = tuple[int, int]  # [start, end) character offsets in the original text
SCORE_DIGITS = 4  # entity scores are rounded to this many decimals


@dataclass(frozen=True)
class Entity:
    """One entity found in a text; `text == source[start:end]` always."""

    start: int
    end: int
    type: str
    score: float
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def word_spans(tokenizer, text: str) -> list[Span]:
    """Character spans of the tokenizer's words in `text`, in order (empty for blank text)."""
    if not text or text.isspace():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sequence longer than the model max": the encoder windows it
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans: dict[int, list[int]] = {}
    for word, (start, end) in zip(enc.word_ids(), enc["offset_mapping"]):
        if word is None or end <= start:
            continue
        span = spans.setdefault(word, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return [tuple(spans[w]) for w in sorted(spans)]


def text_entities(text: str, words: Sequence[Span], tags: Sequence[str],
                  probs: Sequence[float]) -> tuple[Entity, ...]:
    """Word tags -> entities over `text`: start of the first word, end of the last, mean word probability."""
    if not (len(words) == len(tags) == len(probs)):
        raise ValueError(f"{len(words)} words, {len(tags)} tags, {len(probs)} probabilities")
    out = []
    for etype, first, last in entities(tags):
        start, end = words[first][0], words[last][1]
        score = math.fsum(probs[first:last + 1]) / (last - first + 1)
        out.append(Entity(start=start, end=end, type=etype, score=round(float(score), SCORE_DIGITS),
                          text=text[start:end]))
    return tuple(out)


def read_texts(lines: Iterable[str], paragraphs: bool = False) -> Iterator[str]:
    """One text per line (empty lines are empty texts), or blank-line-separated paragraphs.

    Line ends are not part of a text; a paragraph keeps its inner line breaks, so offsets point
    into the paragraph exactly as it stands in the file.
    """
    block: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not paragraphs:
            yield line
        elif line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if paragraphs and block:
        yield "\n".join(block)
