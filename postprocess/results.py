"""Reading what postprocess scores: the .index.jsonl, the .anno labels and (for `--predictions`)
the words of the CoNLL source; the inference outputs are read by .outputs. Formats: docs/internals.md.

Each problem is an `InputFileError` naming the file (and line where there is one). Decoding and
scoring are pure and live elsewhere.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import InputFileError, UserError, ValidationError
from preprocess.conll import read_conll
from common.index_format import (INDEX_FORMAT, INDEX_FORMAT_DOCUMENT, INDEX_FORMATS, Index,  # noqa: F401 - API
                                 IndexHeader, SampleRecord, index_path_for, json_int, read_index,
                                 require_file, text_lines)

# The outputs' reader lives in .outputs; scripts/verify_run.py imports it from here.
from .outputs import Outputs, find_outputs, load_output  # noqa: F401

def read_anno(path, header: IndexHeader, index_path=None) -> list[list[int]]:
    """Gold label ids per sentence from `<sentence id> <label id> ...` lines, checked against the index header."""
    path = Path(path)
    require_file(path, "anno file")
    gold: list[list[int]] = []
    for number, text in enumerate(text_lines(path), start=1):
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
