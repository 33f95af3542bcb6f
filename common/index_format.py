"""The .index.jsonl contract (docs/internals.md): one writer's records and one reader, both here.

bin_create writes it (`header_record`, `sample_record`); bert_metric and the tests read it (`read_index`).
Line 1 is the header, every other line one sample: which token of the sample scores which word.
Format `ner-index/1` lists `[word id, token position]` pairs of one sentence; `ner-index/2` (document
context) lists `[sentence, word id, token position]` triples, as a window may span sentences.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .errors import InputFileError
from .tags import split_tag

INDEX_FORMAT = "ner-index/1"
INDEX_FORMAT_DOCUMENT = "ner-index/2"
INDEX_FORMATS = (INDEX_FORMAT, INDEX_FORMAT_DOCUMENT)


@dataclass(frozen=True)
class IndexHeader:
    """Line 1 of the .index.jsonl file."""

    id2label: dict[int, str]
    num_samples: int
    num_sentences: int
    num_words: int
    input_names: tuple[str, ...] = ()
    seq_len: int | None = None
    buckets: tuple[int, ...] | None = None
    source: str | None = None
    model_dir: str | None = None
    per_word_sentence: bool = False  # ner-index/2: each scored word names its sentence (document context)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


@dataclass(frozen=True)
class SampleRecord:
    """One sample: its padded length and the `(word id, token position)` pairs it scores.

    With document context a sample scores words of several sentences: `word_sentences` then gives
    the sentence of each of `words`; empty means they all belong to `sentence`."""

    sample: int
    sentence: int
    length: int
    tokens: int
    words: tuple[tuple[int, int], ...]
    word_sentences: tuple[int, ...] = ()

    def scored(self):
        """(sentence, word id, token position) of every word this sample scores."""
        owners = self.word_sentences or (self.sentence,) * len(self.words)
        return [(s, w, p) for s, (w, p) in zip(owners, self.words)]


@dataclass(frozen=True)
class Index:
    path: str
    header: IndexHeader
    samples: tuple[SampleRecord, ...]  # sorted by sample id


# ---------------------------------------------------------------- the writer

def header_record(*, context: str, id2label: dict, input_names: Sequence[str], seq_len: int,
                  buckets: Optional[Sequence[int]], num_samples: int, num_sentences: int, num_words: int,
                  source, model_dir) -> dict:
    """Line 1 of the index, as bin_create writes it."""
    return {"format": INDEX_FORMAT_DOCUMENT if context == "document" else INDEX_FORMAT, "context": context,
            "id2label": {str(k): v for k, v in sorted(id2label.items())}, "input_names": list(input_names),
            "seq_len": seq_len, "buckets": list(buckets) if buckets else None, "num_samples": num_samples,
            "num_sentences": num_sentences, "num_words": num_words, "source": str(source),
            "model_dir": str(model_dir)}


def sample_record(header: dict, *, sample: int, sentence: int, length: int, tokens: int, scored) -> str:
    """One sample's line; `scored` holds (sentence, word id, token position) of every word it scores."""
    if header["format"] == INDEX_FORMAT_DOCUMENT:
        words = [[s, w, p] for s, w, p in scored]
    else:
        words = [[w, p] for _, w, p in scored]
    return json.dumps({"sample": sample, "sentence": sentence, "length": length, "tokens": tokens, "words": words})


# ---------------------------------------------------------------- the reader

def index_path_for(anno_file) -> Path:
    """The index preprocess writes beside the anno: `X.anno` -> `X.index.jsonl`."""
    anno_file = Path(anno_file)
    stem = anno_file.name[: -len(".anno")] if anno_file.name.endswith(".anno") else anno_file.name
    return anno_file.with_name(stem + ".index.jsonl")


def require_file(path: Path, what: str, hint: str = "") -> None:
    if not path.exists():
        raise InputFileError(path, f"{what} does not exist{hint}")
    if not path.is_file():
        raise InputFileError(path, f"{what} is not a file")


def text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"bytes that are not UTF-8 at offset {err.start}") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read ({err.strerror})") from None


def json_int(obj: dict, key: str, path: Path, line: int, *, minimum: int = 0) -> int:
    value = obj.get(key)
    # bool is an int subclass; `true` is not a count
    if type(value) is not int or value < minimum:
        raise InputFileError(path, f"{key!r} must be an integer >= {minimum}, got {value!r}", line=line)
    return value


def json_object(text: str, path: Path, line: int) -> dict:
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise InputFileError(path, f"not valid JSON ({err})", line=line) from None
    if not isinstance(obj, dict):
        raise InputFileError(path, "expected a JSON object", line=line)
    return obj


def _read_header(obj: dict, path: Path) -> IndexHeader:
    if obj.get("format") not in INDEX_FORMATS:
        raise InputFileError(path, f"header format is {obj.get('format')!r}, expected "
                                   f"{' or '.join(map(repr, INDEX_FORMATS))}", line=1)
    raw = obj.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise InputFileError(path, "header has no id2label", line=1)
    try:
        id2label = {int(k): v for k, v in raw.items()}
    except ValueError:
        raise InputFileError(path, f"id2label keys must be integers, got {sorted(raw)}", line=1) from None
    # The logits' last axis is indexed by label id, so ids must be exactly 0..K-1.
    if sorted(id2label) != list(range(len(id2label))):
        raise InputFileError(path, f"id2label ids must be 0..{len(id2label) - 1}, got {sorted(id2label)}", line=1)
    for label in id2label.values():
        try:
            split_tag(label)
        except (ValueError, TypeError):
            raise InputFileError(path, f"label {label!r} in id2label is not O, B-TYPE or I-TYPE", line=1) from None
    buckets = obj.get("buckets")
    return IndexHeader(
        id2label=dict(sorted(id2label.items())),
        num_samples=json_int(obj, "num_samples", path, 1),
        num_sentences=json_int(obj, "num_sentences", path, 1),
        num_words=json_int(obj, "num_words", path, 1),
        input_names=tuple(obj.get("input_names") or ()),
        seq_len=obj.get("seq_len"),
        buckets=tuple(buckets) if buckets else None,
        source=obj.get("source"),
        model_dir=obj.get("model_dir"),
        per_word_sentence=obj["format"] == INDEX_FORMAT_DOCUMENT,
    )


def _read_sample(obj: dict, path: Path, line: int, header: IndexHeader) -> SampleRecord:
    num_sentences = header.num_sentences
    sample = json_int(obj, "sample", path, line)
    sentence = json_int(obj, "sentence", path, line)
    length = json_int(obj, "length", path, line, minimum=1)
    tokens = json_int(obj, "tokens", path, line)
    if sentence >= num_sentences:
        raise InputFileError(path, f"sentence {sentence} out of range (header: {num_sentences} sentences)", line=line)
    words = obj.get("words")
    width, shape = (3, "[sentence, word id, token position] integer triples") if header.per_word_sentence \
        else (2, "[word id, token position] integer pairs")
    if not isinstance(words, list) or not all(
            isinstance(item, list) and len(item) == width and all(type(v) is int for v in item) for item in words):
        raise InputFileError(path, f"'words' must be a list of {shape}", line=line)
    if width == 2:
        words = [[sentence, w, p] for w, p in words]
    for owner, word, position in words:
        if word < 0 or not 0 <= position < length:
            raise InputFileError(path, f"word {word} at token {position} is outside the sample (length {length})",
                                 line=line)
        if not 0 <= owner < num_sentences:
            raise InputFileError(path, f"sentence {owner} out of range (header: {num_sentences} sentences)",
                                 line=line)
    owners = tuple(s for s, _, _ in words)
    return SampleRecord(sample, sentence, length, tokens, tuple((w, p) for _, w, p in words),
                        owners if any(s != sentence for s in owners) else ())


def read_index(path) -> Index:
    """Read and check an .index.jsonl: header on line 1, then one sample per line, ids 0..S-1."""
    path = Path(path)
    require_file(path, "index file", " (preprocess writes X.index.jsonl beside X.anno; --index_file names another)")
    lines = text_lines(path)
    if not lines or not lines[0].strip():
        raise InputFileError(path, "empty index file", line=1)
    header = _read_header(json_object(lines[0], path, 1), path)
    records: dict[int, SampleRecord] = {}
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        rec = _read_sample(json_object(text, path, number), path, number, header)
        if rec.sample in records:
            raise InputFileError(path, f"sample {rec.sample} listed twice", line=number)
        records[rec.sample] = rec
    if sorted(records) != list(range(header.num_samples)):
        raise InputFileError(path, f"header says {header.num_samples} samples (ids 0..{header.num_samples - 1}), "
                                   f"the file lists {len(records)}")
    return Index(path=str(path), header=header, samples=tuple(records[i] for i in sorted(records)))
