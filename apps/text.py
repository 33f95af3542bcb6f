"""What the raw-text apps hand out: a text and its entities (`preprocess.text.Entity`, character spans).

Words and offsets come from `preprocess.text.word_spans`, entities from `preprocess.text.text_entities`
(the same code corpus jobs use); this module only holds the per-text result that `apps.predict` prints,
`apps.render` draws and the demo serves.
"""
from __future__ import annotations

from dataclasses import dataclass

from preprocess.text import Entity


@dataclass(frozen=True)
class Prediction:
    text: str
    entities: tuple[Entity, ...]

    def to_dict(self) -> dict:
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}
