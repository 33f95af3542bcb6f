"""NER on people's own text: `python -m infer.predict` -> one JSON line per text.

    python -m infer.predict "EU rejects German call to boycott British lamb ."
    python -m infer.predict --file texts.txt [--paragraphs] [--format pretty] [--html out.html]
    cat texts.txt | python -m infer.predict --backend torch

Each line is `{"text": ..., "entities": [{"start", "end", "type", "score", "text"}]}` with
`text[start:end] == entity["text"]` in the original string. Words and their offsets come from the
model's fast tokenizer (`infer.text.word_spans`); the words go through the same
`preprocess.align.Aligner` as CoNLL data, so a long text is split into overlapping windows and
every word is scored exactly once (nothing is truncated). A word's label is the argmax at its first
sub-token; an entity is an IOB2 span of words; its score the mean softmax probability of its words'
labels.

Backends are runners (`runners`): `onnxrt` (default) runs an ONNX export of the checkpoint,
made on first use into `<model_dir>/.onnx-cache/` (or `--onnx PATH`) and checked against PyTorch
by `convert.export`; `torch` runs the checkpoint itself, to compare with.
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
import numpy as np

from common.atomic import write_text
from common.errors import InputFileError, UserError, ValidationError, handle_errors
from common.model_spec import OUTPUT_NAME, read_model_spec
from common.paths import DEFAULT_MODEL_DIR

from .onnx_cache import cached_onnx_path, ensure_onnx, quiet_transformers  # noqa: F401 - cached_onnx_path: API
from .render import page, pretty
from .text import Prediction, entities, read_texts, word_spans

DEFAULT_SEQ_LEN = 512
DEFAULT_BATCH = 8
# Texts handled per round: output streams while a long stdin is still being read.
TEXTS_PER_ROUND = 64


# -- runners by name ---------------------------------------------------------------------------------------
def _ort_runner(model_dir, onnx, threads, log):
    from runners.onnxrt import OrtRunner

    path = ensure_onnx(model_dir, onnx, log)
    return OrtRunner.from_path(path, providers=["CPUExecutionProvider"], intra_op_threads=threads)


def _torch_runner(model_dir, onnx, threads, log):
    from runners.torchrt import TorchRunner

    if onnx is not None:
        raise UserError("--onnx names the graph of --backend onnxrt; --backend torch runs the checkpoint")
    return TorchRunner(model_dir, threads=threads)


BACKENDS = {"onnxrt": _ort_runner, "torch": _torch_runner}


# -- prediction ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WordLabels:
    """One text's words (character spans), their labels and the probability of each label."""

    spans: tuple
    tags: tuple
    probs: tuple


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Predictor:
    """Texts -> `Prediction`s with one checkpoint and one backend; a context manager.

    >>> with Predictor("models/minilm-l6-conll03") as p:          # doctest: +SKIP
    ...     p.predict(["EU rejects German call to boycott British lamb ."])[0].entities[0].type
    'ORG'
    """

    def __init__(self, model_dir=DEFAULT_MODEL_DIR, *, backend: str = "onnxrt", onnx=None,
                 seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = DEFAULT_BATCH, threads: Optional[int] = None,
                 log: Callable[[str], None] = lambda msg: None):
        from preprocess.align import Aligner
        from preprocess.pipeline import load_tokenizer

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
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.model_dir)
        self.aligner = Aligner(self.tokenizer, seq_len)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.runner = BACKENDS[backend](self.model_dir, onnx, threads, log)

    # runner lifetime
    def activate(self) -> "Predictor":
        self.runner.activate()
        if self.backend == "onnxrt":
            try:
                self._check_onnx_graph()
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

    def _check_onnx_graph(self) -> None:
        """An --onnx of another checkpoint would run, and label with the wrong names: refuse it."""
        inputs = [m.name for m in self.runner.get_input_metadata()]
        outputs = [m.name for m in self.runner.get_output_metadata()]
        if inputs != list(self.spec.input_names) or outputs != [OUTPUT_NAME]:
            raise ValidationError(f"{self.runner.name}: inputs {inputs} and outputs {outputs}; {self.model_dir} "
                                  f"needs inputs {list(self.spec.input_names)} and output {OUTPUT_NAME!r}")
        meta = self.runner.session.get_modelmeta().custom_metadata_map
        if "id2label" in meta:  # written by convert.export
            theirs = {int(k): v for k, v in json.loads(meta["id2label"]).items()}
            if theirs != self.spec.id2label:
                raise ValidationError(f"{self.runner.name} was exported with labels {theirs}, {self.model_dir} "
                                      f"has {self.spec.id2label}: wrong --onnx for this --model_dir?")

    # work
    def label_words(self, texts: Sequence[str]) -> list[WordLabels]:
        """Per text: its words' character spans, each word's label and that label's probability."""
        if not self.runner.is_active:
            self.activate()
        words = [word_spans(self.tokenizer, text) for text in texts]
        samples = []
        for i, (text, spans) in enumerate(zip(texts, words)):
            if spans:
                samples.extend(self.aligner.samples(i, [text[s:e] for s, e in spans]))
        tags: list[list[Optional[str]]] = [[None] * len(spans) for spans in words]
        probs = [[0.0] * len(spans) for spans in words]
        id2label = self.spec.id2label
        for sample, logits in zip(samples, self._logits(samples)):
            if not sample.scored:
                continue
            p = _softmax(logits[[pos for _, pos in sample.scored]])
            best = p.argmax(axis=-1)
            for (word, _), label, row in zip(sample.scored, best.tolist(), p):
                tags[sample.sentence][word] = id2label[label]
                probs[sample.sentence][word] = float(row[label])
        for i, row in enumerate(tags):
            if None in row:  # the Aligner scores every word once; anything else is a bug, not a guess
                raise RuntimeError(f"text {i}: word {row.index(None)} was not scored by any window")
        return [WordLabels(tuple(spans), tuple(t), tuple(p)) for spans, t, p in zip(words, tags, probs)]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One `Prediction` per text, in order. Empty and blank texts have no entities."""
        return [Prediction(text, entities(text, w.spans, w.tags, w.probs))
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

    def _logits(self, samples) -> list[np.ndarray]:
        """Per sample, its unpadded `(tokens, labels)` logits; batched by length, padded per batch."""
        out: list[Optional[np.ndarray]] = [None] * len(samples)
        order = sorted(range(len(samples)), key=lambda i: samples[i].tokens)
        for at in range(0, len(order), self.batch_size):
            chunk = order[at:at + self.batch_size]
            width = max(samples[i].tokens for i in chunk)
            ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, :samples[i].tokens] = samples[i].input_ids
                mask[row, :samples[i].tokens] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            logits = self.runner.infer({name: feed[name] for name in self.spec.input_names})[OUTPUT_NAME]
            for row, i in enumerate(chunk):
                out[i] = logits[row, :samples[i].tokens]
        return out


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


@click.command(name="predict", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("texts", nargs=-1)
@click.option("--file", "-f", "file_", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read texts from FILE ('-': stdin), one per line [default without TEXTS: stdin].")
@click.option("--paragraphs", is_flag=True, help="With --file/stdin: texts are blank-line-separated paragraphs.")
@click.option("--model_dir", "--model-dir", "model_dir", type=click.Path(path_type=Path), default=DEFAULT_MODEL_DIR,
              show_default=True, help="Token-classification checkpoint folder.")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="onnxrt", show_default=True,
              help="onnxrt: the ONNX export on ONNX Runtime; torch: the checkpoint on PyTorch.")
@click.option("--onnx", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="ONNX file to run; exported there first if missing [default: <model_dir>/.onnx-cache/].")
@click.option("--format", "fmt", type=click.Choice(["json", "pretty"]), default="json", show_default=True,
              help="json: one JSON line per text; pretty: the text with coloured entities.")
@click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a self-contained HTML page highlighting the entities.")
@click.option("--seq_len", "--seq-len", "seq_len", type=click.IntRange(8), default=DEFAULT_SEQ_LEN,
              show_default=True, help="Tokens per window; longer texts become overlapping windows.")
@click.option("--batch_size", "--batch-size", "batch_size", type=click.IntRange(1), default=DEFAULT_BATCH,
              show_default=True, help="Windows per model call.")
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
