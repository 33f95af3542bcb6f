"""Document context for corpus runs: which sentences form a document, and shards that keep them whole.

A document is: a `-DOCSTART-` document (CoNLL; a file without such lines has none, and each
sentence is then its own document, as in `bin_create.py --context document`); the lines up to a
blank line (text); consecutive records with the same "doc" value (JSONL; a record without "doc" is
its own document). Shards end where a document ends, at most `shard_sentences` sentences long: the
shard is cut at the last document start that fits, and only a document longer than a whole shard is
cut inside (its parts are then windowed on their own, so memory stays flat).

The doc-id rules live in `DocumentState`, used both by the planning pass and by the shard reader, so
a shard read from the middle of a file numbers its documents as a pass from the start would. Its
state before a line is kept in the shard's start `Position` (doc id; text: a blank line is pending,
JSONL: a record came before) and, for JSONL, `ShardSpec.doc_key` (the previous record's "doc").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

from preprocess.conll import DOCSTART
from preprocess.conll_stream import Position, sentence_starts


class Start(NamedTuple):
    """Where a shard may start: the line's position (state before it), its sentence index, the JSONL
    doc key before it."""

    position: Position
    index: int
    doc_key: Optional[str]


class DocumentState:
    """Doc ids of the lines of a text or JSONL file, one line at a time (see the module docstring)."""

    def __init__(self, fmt: str, doc_id: int = 0, flag: bool = False, doc_key: Optional[str] = None):
        self.fmt, self.doc_id, self.flag, self.doc_key = fmt, doc_id, flag, doc_key

    def position(self, offset: int, line: int) -> Position:
        return Position(offset, line, self.doc_id, self.flag)

    def advance(self, line: str, key: Optional[str] = None) -> int:
        """The doc id of `line` (`key`: a JSONL record's "doc" as JSON, None without one)."""
        blank = not line.strip()
        if self.fmt == "text":  # flag: a blank line came since the last text
            if blank:
                self.flag = True
            elif self.flag:
                self.doc_id, self.flag = self.doc_id + 1, False
        elif not blank:  # jsonl; flag: a record came before
            if self.flag and (key is None or key != self.doc_key):
                self.doc_id += 1
            self.flag, self.doc_key = True, key
        return self.doc_id


def record_doc_key(record) -> Optional[str]:
    """A JSONL record's "doc" value as comparable JSON text; None where it has none."""
    if isinstance(record, dict) and "doc" in record:
        return json.dumps(record["doc"], sort_keys=True)
    return None


def _line_doc_key(raw: bytes) -> Optional[str]:
    # the planning pass is lenient: a line that is not JSON is reported, with its line, by the reader
    try:
        return record_doc_key(json.loads(raw))
    except ValueError:
        return None


def line_documents(path: Path, fmt: str) -> Iterator[tuple[Start, int]]:
    """Text/JSONL: every line as a possible shard start, with its doc id."""
    state = DocumentState(fmt)
    offset = 0
    with open(path, "rb") as handle:
        for index, raw in enumerate(handle):
            start = Start(state.position(offset, index + 1), index, state.doc_key)
            text = raw.decode("utf-8", errors="replace").lstrip("\ufeff") if index == 0 else \
                raw.decode("utf-8", errors="replace")
            key = _line_doc_key(raw) if fmt == "jsonl" and text.strip() else None
            yield start, state.advance(text, key)
            offset += len(raw)


def conll_documents(path: Path, marked: bool) -> Iterator[tuple[Start, int]]:
    """CoNLL: every sentence as a possible shard start, with its document (each sentence its own where
    the file is not `marked` with -DOCSTART- lines)."""
    for position, index in sentence_starts(path, 1):
        if position.line:  # the last one is the end of the file
            yield Start(position, index, None), position.doc_id if marked else index


def has_docstart(path: Path) -> bool:
    with open(path, "rb") as handle:
        return any(raw.lstrip(b"\xef\xbb\xbf").split(None, 1)[:1] == [DOCSTART.encode()] for raw in handle)


def document_shards(starts, shard_sentences: int) -> Iterator[tuple[Start, int]]:
    """(start, sentence count) of each shard: cut at the last document start that keeps a shard within
    `shard_sentences`; inside a document only where one document alone is longer."""
    first: Optional[Start] = None
    last_document_start: Optional[Start] = None
    previous_doc = None
    total = 0
    for start, doc in starts:
        total = start.index + 1
        new_document = first is not None and doc != previous_doc
        previous_doc = doc
        if first is None:
            first = start
            continue
        if new_document:
            last_document_start = start
        if start.index - first.index == shard_sentences:  # this sentence does not fit the shard
            cut = last_document_start or start
            yield first, cut.index - first.index
            first, last_document_start = cut, None
    if first is not None:
        yield first, total - first.index
