"""Reading what postprocess scores: the .index.jsonl, the .anno labels and (for `--predictions`)
the words of the CoNLL source; the inference outputs are read by .outputs. Formats: docs/internals.md.

Each problem is an `InputFileError` naming the file (and line where there is one). Decoding and
scoring are pure and live elsewhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.errors import InputFileError, UserError, ValidationError
from preprocess.conll import read_conll
from common.tags import split_tag

from .decode import Index, IndexHeader, SampleRecord
# The outputs' reader lives in .outputs; scripts/verify_run.py imports it from here.
from .outputs import Outputs, find_outputs, load_output  # noqa: F401

INDEX_FORMAT = "ner-index/1"
# document context (bin_create --context document): words are [sentence, word id, token position]
INDEX_FORMAT_DOCUMENT = "ner-index/2"
INDEX_FORMATS = (INDEX_FORMAT, INDEX_FORMAT_DOCUMENT)


def index_path_for(anno_file) -> Path:
    """The index preprocess writes beside the anno: `X.anno` -> `X.index.jsonl`."""
    anno_file = Path(anno_file)
    stem = anno_file.name[: -len(".anno")] if anno_file.name.endswith(".anno") else anno_file.name
    return anno_file.with_name(stem + ".index.jsonl")


def _require_file(path: Path, what: str, hint: str = "") -> None:
    if not path.exists():
        raise InputFileError(path, f"{what} does not exist{hint}")
    if not path.is_file():
        raise InputFileError(path, f"{what} is not a file")


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"bytes that are not UTF-8 at offset {err.start}") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read ({err.strerror})") from None


def _int(obj: dict, key: str, path: Path, line: int, *, minimum: int = 0) -> int:
    value = obj.get(key)
    # bool is an int subclass; `true` is not a count
    if type(value) is not int or value < minimum:
        raise InputFileError(path, f"{key!r} must be an integer >= {minimum}, got {value!r}", line=line)
    return value


def _json_object(text: str, path: Path, line: int) -> dict:
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
        num_samples=_int(obj, "num_samples", path, 1),
        num_sentences=_int(obj, "num_sentences", path, 1),
        num_words=_int(obj, "num_words", path, 1),
        input_names=tuple(obj.get("input_names") or ()),
        seq_len=obj.get("seq_len"),
        buckets=tuple(buckets) if buckets else None,
        source=obj.get("source"),
        model_dir=obj.get("model_dir"),
        per_word_sentence=obj["format"] == INDEX_FORMAT_DOCUMENT,
    )


def _read_sample(obj: dict, path: Path, line: int, header: IndexHeader) -> SampleRecord:
    num_sentences = header.num_sentences
    sample = _int(obj, "sample", path, line)
    sentence = _int(obj, "sentence", path, line)
    length = _int(obj, "length", path, line, minimum=1)
    tokens = _int(obj, "tokens", path, line)
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
    _require_file(path, "index file", " (preprocess writes X.index.jsonl beside X.anno; --index_file names another)")
    lines = _text_lines(path)
    if not lines or not lines[0].strip():
        raise InputFileError(path, "empty index file", line=1)
    header = _read_header(_json_object(lines[0], path, 1), path)
    records: dict[int, SampleRecord] = {}
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        rec = _read_sample(_json_object(text, path, number), path, number, header)
        if rec.sample in records:
            raise InputFileError(path, f"sample {rec.sample} listed twice", line=number)
        records[rec.sample] = rec
    if sorted(records) != list(range(header.num_samples)):
        raise InputFileError(path, f"header says {header.num_samples} samples (ids 0..{header.num_samples - 1}), "
                                   f"the file lists {len(records)}")
    return Index(path=str(path), header=header, samples=tuple(records[i] for i in sorted(records)))


def read_anno(path, header: IndexHeader, index_path=None) -> list[list[int]]:
    """Gold label ids per sentence from `<sentence id> <label id> ...` lines, checked against the index header."""
    path = Path(path)
    _require_file(path, "anno file")
    gold: list[list[int]] = []
    for number, text in enumerate(_text_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        if not all(f.isdigit() for f in fields):
            bad = next(f for f in fields if not f.isdigit())
            raise InputFileError(path, f"{bad!r} is not a non-negative integer id", line=number)
        sid, *labels = (int(f) for f in fields)
        if sid != len(gold):
            raise InputFileError(path, f"sentence id {sid}, expected {len(gold)} (ids count from 0 in file order)",
                                 line=number)
        unknown = sorted(set(labels) - header.id2label.keys())
        if unknown:
            raise InputFileError(path, f"label id {unknown[0]} is not in the index's id2label "
                                       f"(0..{header.num_labels - 1})", line=number)
        gold.append(labels)
    where = f"{path} and {index_path or 'the index'} disagree"
    if len(gold) != header.num_sentences:
        raise ValidationError(f"{where}: {len(gold)} sentences in the anno, {header.num_sentences} in the index")
    num_words = sum(len(s) for s in gold)
    if num_words != header.num_words:
        raise ValidationError(f"{where}: {num_words} words in the anno, {header.num_words} in the index")
    return gold


def read_words(index: Index, gold: list[list[int]], anno_path, input_file=None) -> list[tuple[str, ...]]:
    """The words of every sentence, from `input_file` or the CoNLL file named in the index header.

    The index carries no text, so `--predictions` needs the source; it must have the anno's
    sentences and word counts, or the words would be paired with the wrong labels.
    """
    if input_file is None:
        source = index.header.source
        if not source:
            raise UserError(f"{index.path}: the header names no source CoNLL file; "
                            "pass --input_file to write --predictions")
        path = Path(source)
        # A relative source is relative to where preprocess ran; try beside the index as well.
        if not path.is_absolute() and not path.exists() and (Path(index.path).parent / path).exists():
            path = Path(index.path).parent / path
        if not path.exists():
            raise InputFileError(path, "source CoNLL file named in the index does not exist; "
                                       "pass --input_file to write --predictions")
    else:
        path = Path(input_file)
    sentences = read_conll(path)
    where = f"{path} and {anno_path} disagree"
    if len(sentences) != len(gold):
        raise ValidationError(f"{where}: {len(sentences)} sentences in the CoNLL file, {len(gold)} in the anno")
    for sid, (sentence, labels) in enumerate(zip(sentences, gold)):
        if len(sentence.words) != len(labels):
            raise ValidationError(f"{where}: sentence {sid} has {len(sentence.words)} words in the CoNLL file "
                                  f"(line {sentence.lines[0]}), {len(labels)} in the anno")
    return [sentence.words for sentence in sentences]
