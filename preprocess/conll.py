"""The CoNLL reader: the only code that touches a CoNLL file.

Accepted: 2..N whitespace-separated columns (word first, tag last), `-DOCSTART-` lines
anywhere between sentences, blank lines between sentences, CRLF, tabs, a UTF-8 BOM,
no final blank line, and IOB1 / IOB2 / IO tags (normalised to IOB2). Everything else is an
`InputFileError` that names the file and line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import InputFileError

from common.tags import TagError, to_iob2

DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """One sentence: its words, IOB2 tags, its document and the file line of each word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    doc_id: int
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.words)


def _decoded_lines(path: Path) -> list[str]:
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if not path.is_file():
        raise InputFileError(path, "is not a file")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise InputFileError(path, f"bytes that are not UTF-8 at column {err.start + 1}", line=number) from None
    return out


def read_conll(path) -> list[Sentence]:
    """Read every sentence of a CoNLL file, tags normalised to IOB2."""
    return read_conll_file(path).sentences


@dataclass(frozen=True)
class ConllFile:
    """A CoNLL file's sentences and whether it marks documents with `-DOCSTART-` lines."""

    path: Path
    sentences: list[Sentence]
    has_docstart: bool

    def documents(self) -> list[list[int]]:
        """Sentence ids grouped by document, in file order. A file without `-DOCSTART-` has no
        document marks: each sentence is then its own document."""
        if not self.has_docstart:
            return [[sid] for sid in range(len(self.sentences))]
        groups: list[list[int]] = []
        for sid, sentence in enumerate(self.sentences):
            if groups and self.sentences[groups[-1][0]].doc_id == sentence.doc_id:
                groups[-1].append(sid)
            else:
                groups.append([sid])
        return groups

    def no_docstart_note(self) -> str:
        return f"note: {self.path}: no -DOCSTART- lines; with document context each sentence is its own document"


def read_conll_file(path) -> ConllFile:
    """`read_conll`, keeping whether the file has document marks."""
    path = Path(path)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    doc_id = 0
    saw_docstart = False

    def flush():
        if not words:
            return
        try:
            iob2 = to_iob2(tags)
        except TagError as err:
            raise InputFileError(path, str(err), line=lines[err.index]) from None
        sentences.append(Sentence(tuple(words), tuple(iob2), doc_id, tuple(lines)))
        words.clear()
        tags.clear()
        lines.clear()

    for number, line in enumerate(_decoded_lines(path), start=1):
        columns = line.split()
        if not columns:
            flush()
            continue
        if columns[0] == DOCSTART:
            flush()
            if saw_docstart or sentences:
                doc_id += 1
            saw_docstart = True
            continue
        if len(columns) < 2:
            raise InputFileError(path, f"line has 1 column ({columns[0]!r}); expected a word and a tag", line=number)
        words.append(columns[0])
        tags.append(columns[-1])
        lines.append(number)
    flush()

    if not sentences:
        what = "only -DOCSTART- lines" if saw_docstart else "no sentences"
        raise InputFileError(path, f"holds {what}: nothing to process")
    return ConllFile(path, sentences, saw_docstart)
