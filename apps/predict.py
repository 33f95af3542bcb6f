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
from engine.core import Engine
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy
from preprocess.text import Span, read_texts, text_entities, word_spans

from .render import page, pretty
from .text import Prediction

DEFAULT_SEQ_LEN = 512
DEFAULT_BATCH = 8
# Texts handled per round: output streams while a long stdin is still being read.
TEXTS_PER_ROUND = 64


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
                 log: Callable[[str], None] = lambda msg: None):
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
        self.runner = open_runner(backend, self.model_dir, onnx=onnx, threads=threads, log=log)
        self.engine = Engine(self.runner, tokenizer=self.tokenizer, input_names=self.spec.input_names,
                             id2label=self.spec.id2label, policy=BatchPolicy(max_rows=batch_size), max_len=seq_len)

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
    def label_words(self, texts: Sequence[str]) -> list[TextLabels]:
        """Per text: its words' character spans, each word's label and that label's probability."""
        if not self.runner.is_active:
            self.activate()
        words = [word_spans(self.tokenizer, text) for text in texts]
        worded = [i for i, spans in enumerate(words) if spans]  # blank texts have no words to label
        out = [TextLabels((), (), ()) for _ in texts]
        if worded:
            labels = self.engine.label_with_probs([[texts[i][s:e] for s, e in words[i]] for i in worded])
            for i, tags, probs in zip(worded, labels.tags, labels.probs):
                out[i] = TextLabels(tuple(words[i]), tuple(tags), tuple(probs))
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One `Prediction` per text, in order. Empty and blank texts have no entities."""
        return [Prediction(text, text_entities(text, w.spans, w.tags, w.probs))
                for text, w in zip(texts, self.label_words(texts))]

    def predict_iter(self, texts: Iterable[str], per_round: int = TEXTS_PER_ROUND) -> Iterator[Prediction]:
        """Like `predict`, over any iterable (a stream), a round of `per_round` texts at a time."""
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == per_round:
                yield from self.predict(batch)
                batch = []
        if batch:
            yield from self.predict(batch)


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
@handle_errors
def main(texts, file_, paragraphs, model_dir, backend, onnx, fmt, html_out, seq_len, batch_size, threads):
    """Find named entities in TEXTS (or --file, or stdin): one JSON line per text."""
    source = _open_texts(texts, file_, paragraphs)
    if html_out is not None:
        _check_output_file(html_out)
    quiet_transformers()
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    kept = []
    with Predictor(model_dir, backend=backend, onnx=onnx, seq_len=seq_len, batch_size=batch_size,
                   threads=threads, log=log) as predictor:
        for prediction in predictor.predict_iter(source):
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
