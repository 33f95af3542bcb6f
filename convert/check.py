"""The one equivalence checker: export (ONNX vs PyTorch), simplify, fix and optimize (ONNX vs ONNX),
and `convert.compare` (any two runners) all use it.

Both sides are runners (`runners/`): ONNX graphs run on ONNX Runtime with graph optimisation
disabled, so what is compared is the graph as written, not ORT's rewrite of it; a PyTorch model
runs as a `TorchRunner`. Inputs are real CoNLL-2003 sentences encoded with the checkpoint's own
tokenizer (`preprocess.encode`, a sentence longer than the graph's length is windowed, never cut),
batched in file order by `preprocess.plan` and fed by `common.feeds`, so the attention mask really
masks something. Differences are measured on real tokens only (padded positions are never read
downstream); labels are compared per word (`preprocess.encode.word_label_ids`), as they are scored.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from common.checkpoint import check_tokenizer_folder
from common.errors import ValidationError
from common.feeds import Feed
from common.model_spec import CANONICAL_INPUT_ORDER
from common.paths import conll_dir
from preprocess.conll import read_conll
from preprocess.encode import Rows, encode, word_label_ids
from preprocess.plan import BatchPolicy, RowBatch, batch_feed, plan
from preprocess.tokenizer import load_tokenizer  # noqa: F401 - part of this module's API (compare, export, nncf)
from runners.base import BaseRunner
from runners.onnxrt import OrtRunner

from . import onnx_io

DEFAULT_ATOL = 1e-4
DEFAULT_SENTENCES = 16
DEFAULT_BATCH = 8
# The graph as written: an ORT rewrite could hide a difference of the graph, or add one of its own.
CHECK_OPTIMIZATION = "disable"
# The longest row the checks encode when neither the graph nor the checkpoint says less.
DEFAULT_MAX_LEN = 512

# Used only when the CoNLL files are not where common.paths.conll_dir() points.
FALLBACK_SENTENCES = (
    "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .",
    "Nadim Ladki",
    "AL-AIN , United Arab Emirates 1996-12-06",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C "
    "championship match on Friday .",
    "But China saw their luck desert them in the second match of the group , crashing to a surprise 2-0 "
    "defeat to newcomers Uzbekistan .",
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "The European Commission said on Thursday it disagreed with German advice to consumers to shun British "
    "lamb until scientists determine whether mad cow disease can be transmitted to sheep .",
)


@dataclass(frozen=True)
class CheckResult:
    max_abs_diff: float
    mean_abs_diff: float
    label_mismatches: int  # scored words whose argmax label differs
    words: int  # scored words
    sentences: int
    tokens: int  # real (unpadded) tokens compared
    atol: Optional[float]  # None: report only, nothing fails
    inputs: str  # where the inputs came from, for the report
    # ((candidate label id, reference label id), words) of the words whose labels differ, most first
    label_changes: tuple[tuple[tuple[int, int], int], ...] = ()

    @property
    def labels_agree(self) -> bool:
        return self.label_mismatches == 0

    @property
    def agreement(self) -> float:
        """Share of scored words with the same label on both sides (1.0 when there are none)."""
        return 1.0 - self.label_mismatches / self.words if self.words else 1.0

    @property
    def ok(self) -> bool:
        return self.atol is None or self.max_abs_diff <= self.atol

    def summary(self) -> str:
        labels = "argmax labels agree" if self.labels_agree else f"{self.label_mismatches} argmax labels differ"
        atol = f" (atol {self.atol:g})" if self.atol is not None else ""
        return (f"max |diff| {self.max_abs_diff:.3g}{atol} over {self.tokens} tokens of "
                f"{self.sentences} sentences ({self.inputs}); {labels}")


@dataclass(frozen=True)
class CheckInputs:
    """Encoded sentences cut into batches; each runner gets each batch as a feed of its own inputs."""

    rows: Rows
    batches: tuple[RowBatch, ...]
    pad_id: int
    source: str  # where the sentences came from, for the report

    def feed(self, batch: RowBatch, input_names: Sequence[str]) -> Feed:
        return batch_feed(self.rows, batch, input_names, self.pad_id)


# ---------------------------------------------------------------- sentences and batches

def read_sentences(path, count: Optional[int] = None) -> list[list[str]]:
    """The words of the first `count` sentences (all when None) of a CoNLL file."""
    return [list(s.words) for s in read_conll(Path(path))[:count]]


def real_sentences(count: int = DEFAULT_SENTENCES, data_dir=None) -> tuple[list[list[str]], str]:
    """The first `count` sentences of CoNLL-2003 test (or the built-in ones if the data is absent)."""
    path = Path(data_dir or conll_dir()) / "test.txt"
    if path.is_file():
        return read_sentences(path, count), str(path)
    return [s.split() for s in FALLBACK_SENTENCES][:count], "built-in sentences (CoNLL test.txt not found)"


def _batches(rows: Rows, batch_size: int, fixed_batch: Optional[int], fixed_seq: Optional[int]) -> tuple:
    """File-order batches; a graph with a fixed batch gets its last batch topped up with repeated rows."""
    batches = plan(rows, BatchPolicy(max_rows=fixed_batch or batch_size, sort=False, pad_to=fixed_seq))
    if fixed_batch:
        # The repeats hold no scored words and `compare` reads only a batch's first (distinct) rows.
        batches = [dataclasses.replace(b, rows=np.resize(b.rows, fixed_batch)) for b in batches]
    return tuple(batches)


def encode_inputs(tokenizer, sentences: Sequence[Sequence[str]], source: str, *, batch_size: int = DEFAULT_BATCH,
                  fixed_batch: Optional[int] = None, fixed_seq: Optional[int] = None,
                  max_len: int = DEFAULT_MAX_LEN) -> CheckInputs:
    """Sentences -> rows (`preprocess.encode`) -> batches (`preprocess.plan`) shaped for a graph.

    `fixed_batch`/`fixed_seq` are a static graph's input shape: every batch then has exactly that many
    rows, padded to exactly that length (longer sentences are windowed to fit)."""
    rows = encode(tokenizer, sentences, fixed_seq or max_len)
    return CheckInputs(rows=rows, batches=_batches(rows, batch_size, fixed_batch, fixed_seq),
                       pad_id=tokenizer.pad_token_id or 0, source=source)


def random_inputs(vocab_size: int, *, count: int = DEFAULT_SENTENCES, batch_size: int = DEFAULT_BATCH,
                  fixed_batch: Optional[int] = None, fixed_seq: Optional[int] = None, seed: int = 0) -> CheckInputs:
    """Rows of random token ids, every token a scored word: for graphs whose tokenizer cannot be found."""
    rng = np.random.default_rng(seed)
    longest = fixed_seq or 48
    lengths = rng.integers(2, longest + 1, size=count).astype(np.int64)
    lengths[0] = longest  # one full row, the rest padded
    total = int(lengths.sum())
    starts = np.zeros(count, dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    offsets = np.zeros(count + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    rows = Rows(ids=rng.integers(min(1000, vocab_size // 2), vocab_size, size=total).astype(np.int64),
                starts=starts, lengths=lengths, word_row=np.repeat(np.arange(count, dtype=np.int64), lengths),
                word_pos=np.arange(total, dtype=np.int64) - np.repeat(starts, lengths),
                word_slot=np.arange(total, dtype=np.int64), offsets=offsets, windowed=0)
    return CheckInputs(rows=rows, batches=_batches(rows, batch_size, fixed_batch, fixed_seq), pad_id=0,
                       source="random token ids: no tokenizer found, pass --model_dir for real sentences")


# ---------------------------------------------------------------- graphs

def graph_runner(onnx_path, graph_optimization: str = CHECK_OPTIMIZATION) -> OrtRunner:
    """A CPU runner for a graph, by default with ORT's graph optimisation off (see CHECK_OPTIMIZATION)."""
    return OrtRunner.from_path(onnx_path, providers=["CPUExecutionProvider"], graph_optimization=graph_optimization,
                               log_severity_level=3)


def fixed_input_shape(runner: BaseRunner) -> tuple[Optional[int], Optional[int]]:
    """The batch size and sequence length an active runner's inputs fix (None where dynamic)."""
    metas = runner.get_input_metadata()
    for meta in metas:
        if len(meta.shape) != 2:
            raise ValidationError(f"{runner.name}: input {meta.describe()} is not (batch, sequence)")
    unknown = [m.name for m in metas if m.name not in CANONICAL_INPUT_ORDER]
    if unknown:
        raise ValidationError(f"{runner.name}: inputs {unknown} are not BERT inputs {list(CANONICAL_INPUT_ORDER)}")
    batch = next((m.fixed_dim(0) for m in metas if m.fixed_dim(0)), None)
    seq = next((m.fixed_dim(1) for m in metas if m.fixed_dim(1)), None)
    return batch, seq


# Ids below this are valid for any BERT-family vocabulary (used when the graph's table is not found).
SAFE_SYNTHETIC_VOCAB = 1000


def graph_embedding_rows(onnx_path) -> Optional[int]:
    """Rows of the initializer that `input_ids` indexes (the word embeddings); None if not found."""
    model = onnx_io.load(onnx_path, load_external_data=False)
    inits = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == "input_ids" and node.input[0] in inits:
            return int(inits[node.input[0]].dims[0])
    return None


def recorded_model_dir(onnx_path) -> Optional[Path]:
    """The checkpoint folder the exporter recorded in the graph, if it is still there."""
    recorded = onnx_io.metadata(onnx_io.load(onnx_path, load_external_data=False)).get("source_model_dir")
    # A folder that has moved away since the export is no error (the caller decides what stands in);
    # one that is still there but has lost its tokenizer is, and check_tokenizer_folder says so.
    return Path(recorded) if recorded and Path(recorded).is_dir() else None


def checked_tokenizer_dir(folder, onnx_path) -> Path:
    """`folder`, once it has tokenizer files whose ids all fit the graph's embedding table."""
    check_tokenizer_folder(folder, embedding_rows=graph_embedding_rows(onnx_path), rows_from=Path(onnx_path).name)
    return Path(folder)


def tokenizer_max_len(tokenizer, limit: int = DEFAULT_MAX_LEN) -> int:
    """The longest row the tokenizer's model takes, at most `limit` (some tokenizers say 10**30)."""
    return min(int(getattr(tokenizer, "model_max_length", limit) or limit), limit)


def inputs_for_graph(onnx_path, runner: BaseRunner, *, model_dir=None, count: int = DEFAULT_SENTENCES,
                     batch_size: int = DEFAULT_BATCH, data_dir=None) -> CheckInputs:
    """Real-sentence batches shaped for a graph (its fixed batch/sequence if it has them).

    The tokenizer comes from `model_dir`, else from the checkpoint folder that the exporter
    recorded in the graph's metadata; if neither is there, random ids stand in (said so in
    the inputs' description)."""
    fixed_batch, fixed_seq = fixed_input_shape(runner)
    tok_dir = Path(model_dir) if model_dir is not None else recorded_model_dir(onnx_path)
    if tok_dir is None:
        return random_inputs(graph_embedding_rows(onnx_path) or SAFE_SYNTHETIC_VOCAB, count=count,
                             batch_size=batch_size, fixed_batch=fixed_batch, fixed_seq=fixed_seq)
    tokenizer = load_tokenizer(checked_tokenizer_dir(tok_dir, onnx_path))
    sentences, source = real_sentences(count, data_dir)
    return encode_inputs(tokenizer, sentences, source, batch_size=batch_size, fixed_batch=fixed_batch,
                         fixed_seq=fixed_seq, max_len=tokenizer_max_len(tokenizer))


# ---------------------------------------------------------------- comparison

def _logits(runner: BaseRunner, feed: Feed) -> np.ndarray:
    return runner.infer(feed)[runner.get_output_metadata()[0].name]


def compare(candidate: BaseRunner, reference: BaseRunner, inputs: CheckInputs, *,
            atol: Optional[float] = DEFAULT_ATOL, what: str = "candidate vs reference") -> CheckResult:
    """Run both runners on every batch; raise ValidationError when the largest difference exceeds `atol`.

    Each runner is activated here (and deactivated after). Labels that flip while the logits agree
    within `atol` are near-ties: reported, not fatal. A NaN or inf on a real token is always a failure.
    `atol=None` only measures."""
    worst, total, values, mismatches, words, tokens = 0.0, 0.0, 0, 0, 0, 0
    changes: Counter = Counter()
    with candidate, reference:
        names = {runner: [m.name for m in runner.get_input_metadata()] for runner in (candidate, reference)}
        for batch in inputs.batches:
            got = _logits(candidate, inputs.feed(batch, names[candidate]))
            want = _logits(reference, inputs.feed(batch, names[reference]))
            if got.shape != want.shape:
                raise ValidationError(f"{what}: logits shape {tuple(got.shape)} != {tuple(want.shape)}")
            distinct = len(np.unique(batch.rows))  # rows after these only top up a static batch
            lengths = inputs.rows.lengths[batch.rows[:distinct]]
            real = np.arange(batch.length)[None, :] < lengths[:, None]
            got_real, want_real = got[:distinct][real], want[:distinct][real]
            if not np.isfinite(got_real).all():
                raise ValidationError(f"{what}: non-finite logits (NaN/inf) on real tokens")
            diff = np.abs(got_real.astype(np.float64) - want_real)
            if diff.size:
                worst = max(worst, float(diff.max()))
                total += float(diff.sum())
                values += diff.size
            got_ids = word_label_ids(got, batch.word_row, batch.word_pos)
            want_ids = word_label_ids(want, batch.word_row, batch.word_pos)
            differ = got_ids != want_ids
            mismatches += int(differ.sum())
            changes.update(zip(got_ids[differ].tolist(), want_ids[differ].tolist()))
            words += len(batch.word_row)
            tokens += int(real.sum())
    result = CheckResult(max_abs_diff=worst, mean_abs_diff=total / values if values else 0.0,
                         label_mismatches=mismatches, words=words, sentences=inputs.rows.num_sentences,
                         tokens=tokens, atol=atol, inputs=inputs.source, label_changes=tuple(changes.most_common()))
    if not result.ok:
        raise ValidationError(f"{what}: {result.summary()} - over tolerance")
    return result


def check_onnx_against_onnx(candidate_path, reference_path, *, atol: float = DEFAULT_ATOL, model_dir=None,
                            count: int = DEFAULT_SENTENCES, what: Optional[str] = None) -> CheckResult:
    """Same logits from two ONNX graphs (fix, simplify, optimize), on batches shaped for the candidate."""
    candidate = graph_runner(candidate_path)
    with candidate:  # activated once here to read its input shape; compare() keeps it active
        inputs = inputs_for_graph(candidate_path, candidate, model_dir=model_dir, count=count)
        return compare(candidate, graph_runner(reference_path), inputs, atol=atol,
                       what=what or f"{Path(candidate_path).name} vs {Path(reference_path).name}")


def one_row_feeds(tokenizer, sentences: Sequence[Sequence[str]], input_names: Sequence[str],
                  max_len: int = DEFAULT_MAX_LEN) -> list[Feed]:
    """One unpadded row per feed (calibration data: padding never enters an activation range)."""
    inputs = encode_inputs(tokenizer, sentences, "", batch_size=1, max_len=max_len)
    return [inputs.feed(batch, input_names) for batch in inputs.batches]
