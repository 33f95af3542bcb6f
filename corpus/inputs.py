"""Inputs of a corpus run: paths (files, folders, globs) -> files -> formats -> shards -> raw items.

A shard is `shard_sentences` consecutive sentences of ONE file, found by a fast pass over the file
(`preprocess.conll_stream.sentence_starts` for CoNLL, line offsets for text and JSONL), so every
engine cuts the corpus the same way and a shard is read without reading what precedes it. Reading
yields `Item`s: words (CoNLL, JSONL "words") or a text (text lines, JSONL "text") that the encode
step splits into words with the tokenizer (`preprocess.text.word_spans`). Nothing here holds more than
one shard in memory. Document context: shards end at document ends (`corpus.documents`), and
`Item.doc` numbers the documents of text and JSONL inputs too.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

from common.errors import InputFileError, UserError
from common.tags import TagError, split_tag, to_iob2
from preprocess.conll import ConllFile
from preprocess.conll_stream import Position, iter_conll, sentence_starts

from .documents import (DocumentState, conll_documents, document_shards, has_docstart, line_documents,
                        record_doc_key)

FORMATS = ("conll", "text", "jsonl")
_EXTENSIONS = {".conll": "conll", ".conllu": "conll", ".iob": "conll", ".bio": "conll",
               ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SNIFF_LINES = 20


@dataclass(frozen=True)
class Item:
    """One sentence as read: `words` or `text`; `tags` (IOB2) when the input has gold tags."""

    source: str
    doc: int
    sentence: int  # index within its file (CoNLL: sentence number; text/JSONL: line number - 1)
    line: int
    id: Optional[str]
    words: Optional[tuple[str, ...]]
    text: Optional[str]
    tags: Optional[tuple[str, ...]]


@dataclass(frozen=True)
class ShardSpec:
    """Sentences `first .. first + count - 1` of `path`, starting at `start`. `grouped`: document
    context, the sentences of one document (equal consecutive `Item.doc`) form one sequence;
    `doc_key`: JSONL, the "doc" of the record before the shard (`corpus.documents.DocumentState`)."""

    shard: int
    path: str
    fmt: str
    start: tuple  # a preprocess.conll_stream.Position as a plain tuple (picklable, JSON-able)
    first: int
    count: int
    grouped: bool = False
    doc_key: Optional[str] = None


def _readable(path: Path) -> Path:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise InputFileError(path, "does not exist") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder where a file was expected") from None
    except OSError as err:
        raise InputFileError(path, f"cannot be read ({err.strerror})") from None
    return path


def expand_inputs(patterns) -> list[Path]:
    """Files named by `patterns` in order: a file, every file under a folder (sorted), or a glob."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise InputFileError(path, "folder holds no files")
            files.extend(found)
        elif path.exists() or path.is_symlink() or not glob.has_magic(str(pattern)):
            files.append(_readable(path))
        else:
            found = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
            if not found:
                raise InputFileError(pattern, "glob matches no file")
            files.extend(found)
    unique = list(dict.fromkeys(files))
    for path in unique:
        _readable(path)
        if path.stat().st_size == 0:
            raise InputFileError(path, "is empty: nothing to process")
    return unique


def detect_format(path: Path) -> str:
    """From the extension, else from the first lines: JSON objects, CoNLL columns, or text."""
    if path.suffix.lower() in _EXTENSIONS:
        return _EXTENSIONS[path.suffix.lower()]
    lines = []
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if line:
                lines.append(line)
            if len(lines) >= _SNIFF_LINES:
                break
    if lines and lines[0].startswith("{"):
        return "jsonl"
    if lines and (lines[0].startswith("-DOCSTART-") or all(_looks_tagged(line) for line in lines)):
        return "conll"
    return "text"


def _looks_tagged(line: str) -> bool:
    columns = line.split()
    if len(columns) < 2:
        return False
    try:
        split_tag(columns[-1])
    except ValueError:
        return False
    return True


def file_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def plan_shards(files, fmt: Optional[str], shard_sentences: int, context: str = "sentence",
                note=lambda text: None) -> tuple[list[ShardSpec], int]:
    """Every file's shards, numbered in order, and the corpus's sentence count (one fast pass each).
    In document context a shard ends at a document end (`corpus.documents.document_shards`)."""
    shards: list[ShardSpec] = []
    total = 0
    for path in files:
        kind = fmt or detect_format(path)
        if context == "document":
            total += _plan_documents(shards, path, kind, shard_sentences, note)
            continue
        starts = list(sentence_starts(path, shard_sentences) if kind == "conll"
                      else _line_starts(path, shard_sentences))
        (_, count) = starts[-1]
        for (position, first) in starts[:-1]:
            shards.append(ShardSpec(len(shards), str(path), kind, tuple(position), first,
                                    min(shard_sentences, count - first)))
        total += count
    if total == 0:
        raise InputFileError(files[0] if len(files) == 1 else ", ".join(map(str, files)),
                             "holds no sentences: nothing to process")
    return shards, total


def _plan_documents(shards: list[ShardSpec], path: Path, kind: str, shard_sentences: int, note) -> int:
    """Appends the file's document-keeping shards; returns its sentence count."""
    grouped = kind != "conll" or has_docstart(path)
    if not grouped:  # as bin_create.py --context document: each sentence its own document
        note(ConllFile(path, [], False).no_docstart_note())
    starts = conll_documents(path, grouped) if kind == "conll" else line_documents(path, kind)
    count = 0
    for start, size in document_shards(starts, shard_sentences):
        shards.append(ShardSpec(len(shards), str(path), kind, tuple(start.position), start.index, size,
                                grouped, start.doc_key))
        count += size
    return count


def _line_starts(path: Path, every: int):
    """Text/JSONL: sentence i is line i + 1; positions of lines 0, every, 2*every, ... then the end."""
    offset = count = 0
    with open(path, "rb") as handle:
        for raw in handle:
            if count % every == 0:
                yield Position(offset, count + 1, 0, count > 0), count
            count += 1
            offset += len(raw)
    yield Position(offset, 0, 0, True), count


def read_shard(spec: ShardSpec) -> Iterator[Item]:
    """The shard's sentences, with any malformed line an InputFileError naming file and line."""
    position = Position(*spec.start)
    if spec.fmt == "conll":
        for i, sentence in enumerate(iter_conll(spec.path, position, limit=spec.count)):
            yield Item(spec.path, sentence.doc_id, spec.first + i, sentence.lines[0], None, sentence.words,
                       None, sentence.tags or None)
        return
    path = Path(spec.path)
    documents = DocumentState(spec.fmt, position.doc_id, position.started, spec.doc_key) if spec.grouped else None
    with open(path, "rb") as handle:
        handle.seek(position.offset)
        for i in range(spec.count):
            raw = handle.readline()
            number = position.line + i
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise InputFileError(path, f"bytes that are not UTF-8 at column {err.start + 1}", line=number) from None
            if number == 1:
                line = line.lstrip("\ufeff")
            if spec.fmt == "text":
                doc = documents.advance(line) if documents else 0
                yield Item(spec.path, doc, spec.first + i, number, None, None, line, None)
            elif line.strip():
                item, key = _json_item(path, number, spec.first + i, line)
                yield replace(item, doc=documents.advance(line, key)) if documents else item


def _json_item(path: Path, number: int, sentence: int, line: str) -> tuple[Item, Optional[str]]:
    """The record's Item and its "doc" key (`corpus.documents.record_doc_key`)."""
    def bad(problem):
        return InputFileError(path, problem, line=number)

    try:
        record = json.loads(line)
    except ValueError as err:
        raise bad(f"not a JSON object ({err.msg})") from None
    if not isinstance(record, dict):
        raise bad("not a JSON object")
    if ("text" in record) == ("words" in record):
        raise bad('needs exactly one of "text" and "words"')
    ident = record.get("id")
    ident = None if ident is None else str(ident)
    if "text" in record:
        if not isinstance(record["text"], str):
            raise bad('"text" is not a string')
        return Item(str(path), 0, sentence, number, ident, None, record["text"], None), record_doc_key(record)
    words = record["words"]
    if not isinstance(words, list) or not all(isinstance(w, str) and w and not w.isspace() for w in words):
        raise bad('"words" is not a list of non-blank strings')
    tags = record.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or len(tags) != len(words) or not all(isinstance(t, str) for t in tags):
            raise bad(f'"tags" is not a list of {len(words)} strings (one per word)')
        try:
            tags = tuple(to_iob2(tags))
        except TagError as err:
            raise bad(f"word {err.index + 1}: {err}") from None
    return Item(str(path), 0, sentence, number, ident, tuple(words), None, tags), record_doc_key(record)


def check_format(fmt: Optional[str]) -> Optional[str]:
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    return fmt
