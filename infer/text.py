"""Raw text <-> words with character offsets, and word labels -> entity spans (pure, no model).

Words are what the model's own fast tokenizer calls words: its normalizer and pre-tokenizer run
on the whole text (`word_ids()` of one encoding), and a word's offsets are the first and last
character its sub-tokens cover in the ORIGINAL string (the tokenizer's offset mapping). The
normalizer matters: BERT's puts spaces around CJK ideographs, so text without spaces is split
per character, and it strips accents and lower-cases without moving offsets. Characters that
give no token (a zero-width space alone, control characters) belong to no word.

The words then go through `preprocess.align.Aligner` like a CoNLL sentence does, so raw text and
CoNLL files share one alignment and one windowing (long texts become overlapping windows).

>>> tags = ["B-ORG", "O", "I-MISC", "B-MISC", "I-MISC", "I-PER"]
>>> spans(tags)
[('ORG', 0, 0), ('MISC', 2, 2), ('MISC', 3, 4), ('PER', 5, 5)]
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Sequence

from common.tags import OUTSIDE, split_tag, to_iob2

Span = tuple[int, int]  # [start, end) character offsets in the original text


@dataclass(frozen=True)
class Entity:
    """One predicted entity; `text == source[start:end]` always."""

    start: int
    end: int
    type: str
    score: float
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    text: str
    entities: tuple[Entity, ...]

    def to_dict(self) -> dict:
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}


def word_spans(tokenizer, text: str) -> list[Span]:
    """Character spans of the tokenizer's words in `text`, in order (empty for blank text)."""
    if not text or text.isspace():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sequence longer than the model max": we window it ourselves
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans: dict[int, list[int]] = {}
    for word, (start, end) in zip(enc.word_ids(), enc["offset_mapping"]):
        if word is None or end <= start:
            continue
        span = spans.setdefault(word, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return [tuple(spans[w]) for w in sorted(spans)]


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """`(type, first word, last word)` of each entity, after IOB1/IOB2/IO -> IOB2 normalisation.

    In IOB2 an entity is a B-X followed by I-X of the same type; an I-X that continues nothing
    starts an entity (as conlleval counts it), which `to_iob2` has already made a B-X.
    """
    out: list[tuple[str, int, int]] = []
    for i, tag in enumerate(to_iob2(tags)):
        if tag == OUTSIDE:
            continue
        prefix, etype = split_tag(tag)
        if prefix == "I" and out and out[-1][2] == i - 1 and out[-1][0] == etype:
            out[-1] = (etype, out[-1][1], i)
        else:
            out.append((etype, i, i))
    return out


def entities(text: str, words: Sequence[Span], tags: Sequence[str], probs: Sequence[float]) -> tuple[Entity, ...]:
    """Word tags -> entities over `text`: start of the first word, end of the last, mean word prob."""
    if not (len(words) == len(tags) == len(probs)):
        raise ValueError(f"{len(words)} words, {len(tags)} tags, {len(probs)} probabilities")
    out = []
    for etype, first, last in spans(tags):
        start, end = words[first][0], words[last][1]
        score = math.fsum(probs[first:last + 1]) / (last - first + 1)
        out.append(Entity(start=start, end=end, type=etype, score=round(float(score), 4), text=text[start:end]))
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
