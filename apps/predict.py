"""NER on people's own text: `python -m apps.predict` -> one JSON line per text.

    python -m apps.predict "EU rejects German call to boycott British lamb ."
    python -m apps.predict --file texts.txt [--paragraphs] [--format pretty] [--html out.html]
    cat texts.txt | python -m apps.predict --backend torch

Each line is `{"text": ..., "entities": [{"start", "end", "type", "score", "text"}]}` with
`text[start:end] == entity["text"]` in the original string. Words and their offsets come from the
model's fast tokenizer (`preprocess.text.word_spans`); the words of all texts then go through the
one in-process engine (`engine.Engine.label_with_probs`: the encoder windows a long text into
overlapping rows and scores every word exactly once, nothing is truncated; rows are batched by
length, `--batch_size` rows at most). A word's label is the argmax at its first sub-token; an
entity is a chunk of word labels (`common.tags.entities`); its score the mean probability of its
words' labels (`preprocess.text.text_entities`).

Backends are runners opened by name (`engine.backends`): `onnxrt` (default) runs an ONNX export of
the checkpoint, made on first use into `<model_dir>/.onnx-cache/` (or `--onnx PATH`) and checked
against PyTorch by `convert.export`; `torch` runs the checkpoint itself, to compare with;
`openvino` runs the ONNX export on OpenVINO.

Context: `--context sentence` (default) labels each text on its own; `--context document` (FLERT,
as `bin_create.py --context document`) lets neighbouring texts lend each other context: the words
of one document form one token sequence cut into windows of `--seq_len` tokens overlapping by
`--window_overlap`, each word scored once where it has the most context. A document is: the
consecutive lines up to a blank line (one text per line); each paragraph (`--paragraphs`: a
paragraph is already one sequence); all TEXTS given as arguments. Each text keeps its own JSON line
and offsets. A document longer than MAX_DOCUMENT_TEXTS texts is cut there, so output keeps streaming.
"""
from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import click

from common.atomic import write_text
from common.errors import InputFileError, UserError, handle_errors
from common.model_spec import read_model_spec
from common.paths import DEFAULT_MODEL_DIR
from common.quiet import quiet_transformers
from common.cli import CONTEXT_SETTINGS, model_dir_option
from engine.backends import BACKENDS, check_runner, open_runner
from engine.core import CONTEXTS, Engine
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy
from preprocess.text import Span, read_texts, text_entities, word_spans

from .render import page, pretty
from .text import Prediction

DEFAULT_SEQ_LEN = 512
DEFAULT_BATCH = 8
# Texts handled per round: output streams while a long stdin is still being read.
TEXTS_PER_ROUND = 64
# Document context: a document of more texts (lines) is cut into parts of this many texts.
MAX_DOCUMENT_TEXTS = 1024
# How texts form documents in document context: up to a blank text, one each, or all together.
GROUPINGS = ("blank", "each", "all")


@dataclass(frozen=True)
class TextLabels:
    """One text's words (character spans), their labels and the probability of each label."""

    spans: tuple[Span, ...]
    tags: tuple[str, ...]
    probs: tuple[float, ...]


class Predictor:
    """Texts -> `Prediction`s with one checkpoint and one backend; a context manager.

    >>> with Predictor("models/minilm-l6-conll03") as p:          # doctest: +SKIP
    ...     p.predict(["EU rejects German call to boycott British lamb ."])[0].entities[0].type
    'ORG'
    """

    def __init__(self, model_dir=DEFAULT_MODEL_DIR, *, backend: str = "onnxrt", onnx=None,
                 seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = DEFAULT_BATCH, threads: Optional[int] = None,
                 log: Callable[[str], None] = lambda msg: None, context: str = "sentence",
                 window_overlap: Optional[int] = None):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        if batch_size < 1:
            raise UserError(f"batch size {batch_size}: must be at least 1")
        self.spec = read_model_spec(model_dir)
        if not 8 <= seq_len <= self.spec.max_positions:
            raise UserError(f"--seq_len {seq_len}: must be between 8 and the model's {self.spec.max_positions} "
                            "positions")
        self.model_dir = Path(model_dir)
        self.backend = backend
        self.tokenizer = load_tokenizer(self.model_dir)
        # the engine first: a bad --context / --window_overlap fails before a runner (an export) is made
        self.engine = Engine(None, tokenizer=self.tokenizer, input_names=self.spec.input_names,
                             id2label=self.spec.id2label, policy=BatchPolicy(max_rows=batch_size), max_len=seq_len,
                             context=context, window_overlap=window_overlap)
        self.runner = self.engine.runner = open_runner(backend, self.model_dir, onnx=onnx, threads=threads, log=log)

    # runner lifetime
    def activate(self) -> "Predictor":
        self.runner.activate()
        try:
            check_runner(self.runner, self.spec)
        except BaseException:
            self.runner.deactivate()
            raise
        return self

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Predictor":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.close()

    # work
    def label_words(self, texts: Sequence[str],
                    documents: Optional[Sequence[Sequence[int]]] = None) -> list[TextLabels]:
        """Per text: its words' character spans, each word's label and that label's probability.
        `documents` (lists of text indices) groups texts in document context; default each on its own."""
        if not self.runner.is_active:
            self.activate()
        words = [word_spans(self.tokenizer, text) for text in texts]
        worded = [i for i, spans in enumerate(words) if spans]  # blank texts have no words to label
        out = [TextLabels((), (), ()) for _ in texts]
        if worded:
            groups = None
            if documents is not None:
                position = {text: n for n, text in enumerate(worded)}
                groups = [[position[i] for i in doc if i in position] for doc in documents]
            labels = self.engine.label_with_probs([[texts[i][s:e] for s, e in words[i]] for i in worded], groups)
            for i, tags, probs in zip(worded, labels.tags, labels.probs):
                out[i] = TextLabels(tuple(words[i]), tuple(tags), tuple(probs))
        return out

    def predict(self, texts: Sequence[str], documents: Optional[Sequence[Sequence[int]]] = None) -> list[Prediction]:
        """One `Prediction` per text, in order. Empty and blank texts have no entities."""
        return [Prediction(text, text_entities(text, w.spans, w.tags, w.probs))
                for text, w in zip(texts, self.label_words(texts, documents))]

    def predict_iter(self, texts: Iterable[str], per_round: int = TEXTS_PER_ROUND,
                     grouping: str = "blank") -> Iterator[Prediction]:
        """Like `predict`, over any iterable (a stream), a round of about `per_round` texts at a time;
        in document context a round ends only where a document does (`grouping`: see `split_documents`)."""
        batch: list[str] = []
        documents: list[list[int]] = []
        for document in split_documents(texts, grouping if self.engine.context == "document" else "each"):
            documents.append(list(range(len(batch), len(batch) + len(document))))
            batch.extend(document)
            if len(batch) >= per_round:
                yield from self.predict(batch, documents)
                batch, documents = [], []
        if batch:
            yield from self.predict(batch, documents)


def split_documents(texts: Iterable[str], grouping: str) -> Iterator[list[str]]:
    """Texts -> documents (lists of texts) as they stream: `blank`: up to and including a blank text;
    `each`: one text each; `all`: all texts. A document is cut after MAX_DOCUMENT_TEXTS texts."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping {grouping!r}: expected one of {', '.join(GROUPINGS)}")
    current: list[str] = []
    for text in texts:
        current.append(text)
        if grouping == "each" or (grouping == "blank" and not text.strip()) or len(current) >= MAX_DOCUMENT_TEXTS:
            yield current
            current = []
    if current:
        yield current


# -- command line ----------------------------------------------------------------------------------------
def _open_texts(texts, file_, paragraphs) -> Iterable[str]:
    if texts and file_ is not None:
        raise UserError("give texts as arguments or --file, not both")
    if texts:
        if paragraphs:
            raise UserError("--paragraphs splits a --file or stdin; each argument is already one text")
        for number, text in enumerate(texts, 1):
            _check_argument_is_utf8(number, text)
        return list(texts)
    if file_ is None or str(file_) == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
        if file_ is None and stream.isatty():
            raise UserError("no text: give texts as arguments, --file FILE, or pipe text on stdin")
        return _decoded(read_texts(stream, paragraphs), "<stdin>")
    path = Path(file_)
    if not path.is_file():
        raise InputFileError(path, "does not exist" if not path.exists() else "is not a file")
    return _decoded(read_texts(_lines(path), paragraphs), path)


def _check_argument_is_utf8(number: int, text: str) -> None:
    """Python hands over an argument's non-UTF-8 bytes as lone surrogates (surrogateescape); the
    tokenizer and the UTF-8 output cannot take them, so name the argument and the byte instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(text)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"argument {number}: is not UTF-8 text (byte {err.start}: "
                            f"0x{raw[err.start]:02x})") from None
        raise UserError(f"argument {number}: is not UTF-8 text") from None


def _check_output_file(path: Path) -> None:
    """Before any work: `path` must be creatable, i.e. no file stands where one of its folders should."""
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise InputFileError(path, f"cannot be written: {folder} is a file, not a folder")
            return


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from handle


def _decoded(texts: Iterable[str], name) -> Iterator[str]:
    """The texts, with a byte that is not UTF-8 reported as a one-line error naming the input."""
    try:
        yield from texts
    except UnicodeDecodeError as err:
        raise InputFileError(name, f"is not UTF-8 text (byte {err.start}: {err.reason})") from None


@click.command(name="predict", context_settings=CONTEXT_SETTINGS)
@click.argument("texts", nargs=-1)
@click.option("--file", "-f", "file_", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read texts from FILE ('-': stdin), one per line [default without TEXTS: stdin].")
@click.option("--paragraphs", is_flag=True, help="With --file/stdin: texts are blank-line-separated paragraphs.")
@model_dir_option(default=DEFAULT_MODEL_DIR, help="Token-classification checkpoint folder.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="onnxrt", show_default=True,
              help="onnxrt: the ONNX export on ONNX Runtime; torch: the checkpoint on PyTorch; openvino: the ONNX "
                   "export on OpenVINO.")
@click.option("--onnx", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="ONNX file to run; exported there first if missing [default: <model_dir>/.onnx-cache/].")
@click.option("--format", "fmt", type=click.Choice(["json", "pretty"]), default="json", show_default=True,
              help="json: one JSON line per text; pretty: the text with coloured entities.")
@click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a self-contained HTML page highlighting the entities.")
@click.option("--seq_len", "--seq-len", "seq_len", type=click.IntRange(8), default=DEFAULT_SEQ_LEN,
              show_default=True, help="Tokens per window; longer texts become overlapping windows.")
@click.option("--batch_size", "--batch-size", "batch_size", type=click.IntRange(1), default=DEFAULT_BATCH,
              show_default=True, help="Rows (windows) per model call at most.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads [default: physical cores].")
@click.option("--context", type=click.Choice(CONTEXTS), default="sentence", show_default=True,
              help="sentence: each text on its own; document: the texts of a document form one sequence in "
                   "overlapping --seq_len windows (a document: the lines up to a blank line; with --paragraphs "
                   f"each paragraph; all TEXTS arguments together; cut after {MAX_DOCUMENT_TEXTS} texts).")
@click.option("--window_overlap", "--window-overlap", "window_overlap", type=click.IntRange(0), default=None,
              help="Tokens shared by neighbouring windows [default: half a window].")
@handle_errors
def main(texts, file_, paragraphs, model_dir, backend, onnx, fmt, html_out, seq_len, batch_size, threads, context,
         window_overlap):
    """Find named entities in TEXTS (or --file, or stdin): one JSON line per text."""
    source = _open_texts(texts, file_, paragraphs)
    if html_out is not None:
        _check_output_file(html_out)
    quiet_transformers()
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    kept = []
    grouping = "all" if texts else "each" if paragraphs else "blank"
    with Predictor(model_dir, backend=backend, onnx=onnx, seq_len=seq_len, batch_size=batch_size,
                   threads=threads, log=log, context=context, window_overlap=window_overlap) as predictor:
        for prediction in predictor.predict_iter(source, grouping=grouping):
            if fmt == "json":
                click.echo(json.dumps(prediction.to_dict(), ensure_ascii=False))
            else:
                click.echo(pretty(prediction))
            if html_out is not None:
                kept.append(prediction)
    if html_out is not None:
        try:
            write_text(html_out, page(kept, title=f"Named entities ({Path(model_dir).name})"))
        except OSError as err:
            raise InputFileError(html_out, f"cannot be written ({err.strerror or err})") from None
        click.echo(f"wrote {html_out}", err=True)


if __name__ == "__main__":
    sys.exit(main())
