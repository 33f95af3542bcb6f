"""The CoNLL reader as a stream: sentences one at a time, from any sentence start in the file.

The rules are `preprocess.conll.read_conll`'s (same `Sentence`, same `-DOCSTART-` document
counting, same IOB1/IOB2/IO -> IOB2 normalisation, same errors naming file and line), but memory
does not grow with the file: lines are read and decoded one by one. Two additions for corpora:

- `start`/`first_line`/`doc_id`/`started`: resume at a byte offset that begins a sentence (what
  `sentence_starts` reports), so a shard of a large file is read without reading what precedes it;
- untagged files: with `tagged=None` the first word line decides; a file whose word lines have one
  column is read as words only (`Sentence.tags` empty), and then every word line must have one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple, Optional

from common.errors import InputFileError
from common.tags import TagError, to_iob2

from .conll import DOCSTART, Sentence

_BOM = b"\xef\xbb\xbf"
_DOCSTART = DOCSTART.encode()


class Position(NamedTuple):
    """Where a sentence starts: byte offset, 1-based line, its document, and whether anything
    (a sentence or a -DOCSTART-) came before it in the file (that decides the next document id)."""

    offset: int
    line: int
    doc_id: int
    started: bool


def _open(path: Path):
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if not path.is_file():
        raise InputFileError(path, "is not a file")
    try:
        return path.open("rb")
    except OSError as err:
        raise InputFileError(path, f"cannot be read ({err.strerror})") from None


def _decode(path: Path, raw: bytes, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"bytes that are not UTF-8 at column {err.start + 1}", line=number) from None


def iter_conll(path, start: Optional[Position] = None, tagged: Optional[bool] = None,
               limit: Optional[int] = None) -> Iterator[Sentence]:
    """Sentences of a CoNLL file from `start` (default: the beginning), at most `limit` of them."""
    path = Path(path)
    start = start or Position(0, 1, 0, False)
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    doc_id, started, emitted = start.doc_id, start.started, 0

    def finish() -> Sentence:
        try:
            iob2 = to_iob2(tags) if tagged else []
        except TagError as err:
            raise InputFileError(path, str(err), line=lines[err.index]) from None
        return Sentence(tuple(words), tuple(iob2), doc_id, tuple(lines))

    with _open(path) as handle:
        handle.seek(start.offset)
        for number, raw in enumerate(handle, start=start.line):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            columns = _decode(path, raw, number).split()
            if not columns or columns[0] == DOCSTART:
                if words:
                    yield finish()
                    started, emitted = True, emitted + 1
                    words, tags, lines = [], [], []
                    if limit is not None and emitted >= limit:
                        return
                if columns:  # -DOCSTART-
                    if started:
                        doc_id += 1
                    started = True
                continue
            if tagged is None:
                tagged = len(columns) >= 2
            if tagged and len(columns) < 2:
                raise InputFileError(path, f"line has 1 column ({columns[0]!r}); expected a word and a tag",
                                     line=number)
            if not tagged and len(columns) > 1:
                raise InputFileError(path, f"line has {len(columns)} columns; the file's first word line has "
                                           "1 (words without tags)", line=number)
            words.append(columns[0])
            tags.append(columns[-1])
            lines.append(number)
    if words:
        yield finish()


def sentence_starts(path, every: int) -> Iterator[tuple[Position, int]]:
    """One fast pass (no decoding, no tag checks): the `Position` of sentence 0, every, 2*every, ...
    and, last, `(end position, total sentences)`. Consistent with `iter_conll`'s document ids."""
    path = Path(path)
    doc_id, started, in_sentence, count, offset = 0, False, False, 0, 0
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            body = raw[len(_BOM):] if number == 1 and raw.startswith(_BOM) else raw
            stripped = body.strip()
            is_doc = stripped.split(None, 1)[0] == _DOCSTART if stripped else False
            if not stripped or is_doc:
                if in_sentence:
                    in_sentence, started, count = False, True, count + 1
                if is_doc:
                    if started:
                        doc_id += 1
                    started = True
            elif not in_sentence:
                if count % every == 0:
                    yield Position(offset, number, doc_id, started), count
                in_sentence = True
            offset += len(raw)
    if in_sentence:
        count += 1
    yield Position(offset, 0, doc_id, started), count
