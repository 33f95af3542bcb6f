"""Tag schemes as data: which tags are valid, and normalisation of IOB1 / IOB2 / IO to IOB2.

One rule serves all three accepted schemes: an `I-X` that does not continue an entity of
type X (previous tag is neither `B-X` nor `I-X`) starts one, so it becomes `B-X`.
For IOB2 this changes nothing; for IOB1 and IO it gives the same entity spans in IOB2.

`entities` is the one entity walker: every scorer, the raw-text predictor and the corpus rows
take their chunks from it.
"""
from __future__ import annotations

import re

OUTSIDE = "O"
_TAG = re.compile(r"^(?P<prefix>[BI])-(?P<type>[^\s-][^\s]*)$")


class TagError(ValueError):
    """A tag is outside the accepted schemes; `index` says which word."""

    def __init__(self, index: int, tag: str):
        super().__init__(f"tag {tag!r} is not IOB1/IOB2/IO (expected O, B-TYPE or I-TYPE)")
        self.index = index
        self.tag = tag


def split_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None). Raises ValueError for anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    match = _TAG.match(tag)
    if not match:
        raise ValueError(tag)
    return match.group("prefix"), match.group("type")


def to_iob2(tags) -> list[str]:
    """Normalise one sentence's tags (IOB1, IOB2 or IO) to IOB2. Raises TagError."""
    out: list[str] = []
    prev_type = None
    for i, tag in enumerate(tags):
        try:
            prefix, etype = split_tag(tag)
        except ValueError:
            raise TagError(i, tag) from None
        if prefix == "I" and etype != prev_type:
            prefix = "B"
        out.append(OUTSIDE if prefix == OUTSIDE else f"{prefix}-{etype}")
        prev_type = etype
    return out


def entity_types(tags) -> set[str]:
    return {split_tag(t)[1] for t in tags if t != OUTSIDE}


def keep_types(tags, types) -> list[str]:
    """Turn every tag whose entity type is not in `types` into O (IOB2 in, IOB2 out)."""
    keep = set(types)
    return [t if t == OUTSIDE or split_tag(t)[1] in keep else OUTSIDE for t in tags]


def entities(tags) -> list[tuple[str, int, int]]:
    """`(type, first word, last word)` of every chunk of one sentence, in order, by conlleval's rules.

    Chunks come from seqeval's `get_entities` in its default mode, a port of conlleval's chunk
    start/end rules (an `I-X` after `O` or after another type starts a chunk; seqeval's `strict`
    scheme mode would drop it, so it is not used).

    >>> entities(["I-PER", "I-PER", "B-PER", "O", "I-LOC"])
    [('PER', 0, 1), ('PER', 2, 2), ('LOC', 4, 4)]
    """
    # Imported here: seqeval pulls in scikit-learn (most of a second), which `--help` should not pay.
    from seqeval.metrics.sequence_labeling import get_entities

    # A list of strings, one sentence: seqeval flattens a list of lists with an O between them.
    return sorted(get_entities(list(tags)), key=lambda chunk: (chunk[1], chunk[2]))
