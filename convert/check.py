"""The one equivalence checker: export (ONNX vs PyTorch), simplify and fix (ONNX vs ONNX) all use it.

Inputs are real CoNLL-2003 sentences tokenised with the checkpoint's own tokenizer
(`is_split_into_words=True`, batches padded), so the attention mask really masks something.
ONNX graphs run on ONNX Runtime with graph optimisation disabled, so what is compared is the
graph as written, not ORT's rewrite of it. Differences are measured on real tokens only:
padded positions are never read downstream.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.checkpoint import check_tokenizer_folder
from common.errors import ValidationError
from common.model_spec import CANONICAL_INPUT_ORDER

Batch = dict  # input name -> int64 array (batch, seq)
Runner = Callable[[Batch], np.ndarray]

DEFAULT_ATOL = 1e-4
DEFAULT_SENTENCES = 16
DEFAULT_BATCH = 8

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
    labels_agree: bool
    label_mismatches: int
    sentences: int
    tokens: int
    atol: float
    inputs: str  # where the inputs came from, for the report

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol

    def summary(self) -> str:
        labels = "argmax labels agree" if self.labels_agree else f"{self.label_mismatches} argmax labels differ"
        return (f"max |diff| {self.max_abs_diff:.3g} (atol {self.atol:g}) over {self.tokens} tokens of "
                f"{self.sentences} sentences ({self.inputs}); {labels}")


# ---------------------------------------------------------------- inputs

def real_sentences(count: int = DEFAULT_SENTENCES, data_dir=None) -> tuple[list[list[str]], str]:
    """The first `count` sentences of CoNLL-2003 test (or the built-in ones if the data is absent)."""
    from common.paths import conll_dir

    path = Path(data_dir or conll_dir()) / "test.txt"
    if path.is_file():
        from preprocess.conll import read_conll

        sentences = [list(s.words) for s in read_conll(path)[:count]]
        source = f"{path}"
    else:
        sentences = [s.split() for s in FALLBACK_SENTENCES][:count]
        source = "built-in sentences (CoNLL test.txt not found)"
    # Repeat to reach `count`: a static graph needs full batches.
    while len(sentences) < count:
        sentences.append(sentences[len(sentences) % max(1, len(sentences))])
    return sentences, source


def encode_batches(tokenizer, sentences: Sequence[Sequence[str]], input_names: Sequence[str], *,
                   batch_size: int = DEFAULT_BATCH, seq_len: int | None = None,
                   max_len: int = 512) -> list[Batch]:
    """Tokenise words into padded int64 batches holding exactly `input_names`.

    `seq_len` pads every batch to that length (static graphs); otherwise each batch is padded to
    its longest sentence. Sentences longer than the length are cut: this is a numeric check,
    not scoring, and the cut still leaves every position of the graph exercised.
    """
    batches = []
    for start in range(0, len(sentences), batch_size):
        chunk = [list(words) for words in sentences[start:start + batch_size]]
        if seq_len is not None and len(chunk) < batch_size:
            chunk += [chunk[i % len(chunk)] for i in range(batch_size - len(chunk))]
        enc = tokenizer(chunk, is_split_into_words=True, truncation=True,
                        padding="max_length" if seq_len else True,
                        max_length=seq_len or max_len, return_tensors="np")
        batch = {}
        for name in input_names:
            if name in enc:
                batch[name] = np.asarray(enc[name], dtype=np.int64)
            elif name == "token_type_ids":
                batch[name] = np.zeros_like(np.asarray(enc["input_ids"]), dtype=np.int64)
            else:
                raise ValidationError(f"the tokenizer gives no {name!r}, which the graph needs")
        batches.append(batch)
    return batches


def synthetic_batches(vocab_size: int, input_names: Sequence[str], *, count: int = DEFAULT_SENTENCES,
                      batch_size: int = DEFAULT_BATCH, seq_len: int | None = None, seed: int = 0) -> list[Batch]:
    """Padded batches of random token ids, for graphs whose tokenizer cannot be found."""
    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, count, batch_size):
        rows = batch_size if seq_len else min(batch_size, count - start)
        length = seq_len or int(rng.integers(8, 48))
        lengths = rng.integers(2, length + 1, size=rows)
        lengths[0] = length  # one full row, the rest padded
        ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(rows, length)).astype(np.int64)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
        ids *= mask
        full = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        batches.append({name: full[name] for name in input_names})
    return batches


def session_inputs(session) -> tuple[list[str], int | None, int | None]:
    """Input names of an ORT session, and its fixed batch size / sequence length (None if dynamic)."""
    names, batch, seq = [], None, None
    for value in session.get_inputs():
        names.append(value.name)
        shape = list(value.shape)
        if len(shape) != 2:
            raise ValidationError(f"input {value.name!r} has shape {shape}; expected (batch, sequence)")
        if isinstance(shape[0], int):
            batch = shape[0]
        if isinstance(shape[1], int):
            seq = shape[1]
    unknown = [n for n in names if n not in CANONICAL_INPUT_ORDER]
    if unknown:
        raise ValidationError(f"graph inputs {unknown} are not BERT inputs {list(CANONICAL_INPUT_ORDER)}")
    return names, batch, seq


def batches_for_graph(onnx_path, *, model_dir=None, count: int = DEFAULT_SENTENCES,
                      batch_size: int = DEFAULT_BATCH, data_dir=None, session=None) -> tuple[list[Batch], str]:
    """Real-sentence batches shaped for a graph (its fixed batch/sequence if it has them).

    The tokenizer comes from `model_dir`, else from the checkpoint folder that the exporter
    recorded in the graph's metadata; if neither is there, random ids stand in (said so in
    the returned description).
    """
    session = session or ort_session(onnx_path)
    names, fixed_batch, fixed_seq = session_inputs(session)
    batch_size = fixed_batch or batch_size
    if fixed_batch:
        count = max(fixed_batch, (count // fixed_batch) * fixed_batch)
    tok_dir = _tokenizer_dir(model_dir, session)
    if tok_dir is None:
        vocab = graph_embedding_rows(onnx_path) or SAFE_SYNTHETIC_VOCAB
        return (synthetic_batches(vocab, names, count=count, batch_size=batch_size, seq_len=fixed_seq),
                "random token ids: no tokenizer found, pass --model_dir for real sentences")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checked_tokenizer_dir(tok_dir, onnx_path)))
    sentences, source = real_sentences(count, data_dir)
    return encode_batches(tokenizer, sentences, names, batch_size=batch_size, seq_len=fixed_seq), source


def checked_tokenizer_dir(folder, onnx_path) -> Path:
    """`folder`, once it has tokenizer files whose ids all fit the graph's embedding table."""
    check_tokenizer_folder(folder, embedding_rows=graph_embedding_rows(onnx_path), rows_from=Path(onnx_path).name)
    return Path(folder)


def _tokenizer_dir(model_dir, session) -> Path | None:
    if model_dir is not None:
        return Path(model_dir)
    recorded = session.get_modelmeta().custom_metadata_map.get("source_model_dir")
    # A folder that has moved away since the export is no error (random ids stand in); one that is
    # still there but has lost its tokenizer is, and check_tokenizer_folder says so.
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return None


# Ids below this are valid for any BERT-family vocabulary (used when the graph's table is not found).
SAFE_SYNTHETIC_VOCAB = 1000


def graph_embedding_rows(onnx_path) -> int | None:
    """Rows of the initializer that `input_ids` indexes (the word embeddings); None if not found."""
    from .onnx_io import load

    model = load(onnx_path, load_external_data=False)
    inits = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == "input_ids" and node.input[0] in inits:
            return int(inits[node.input[0]].dims[0])
    return None


# ---------------------------------------------------------------- runners

def ort_session(onnx_path):
    """A CPU ORT session with graph optimisation off (we check the graph, not ORT's rewrite)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ValidationError(f"{onnx_path}: ONNX Runtime cannot load it ({err})") from None


def onnx_runner(onnx_path, session=None) -> Runner:
    session = session or ort_session(onnx_path)
    output = session.get_outputs()[0].name
    names = [v.name for v in session.get_inputs()]

    def run(batch: Batch) -> np.ndarray:
        return session.run([output], {n: batch[n] for n in names})[0]

    return run


def torch_runner(model) -> Runner:
    """A PyTorch token classifier as a runner (logits as float32 numpy)."""
    import torch

    def run(batch: Batch) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{name: torch.from_numpy(array) for name, array in batch.items()})
        return out.logits.float().numpy()

    return run


# ---------------------------------------------------------------- comparison

def compare(candidate: Runner, reference: Runner, batches: Sequence[Batch], *, atol: float = DEFAULT_ATOL,
            what: str = "candidate vs reference", inputs: str = "") -> CheckResult:
    """Run both on every batch; raise ValidationError when the largest difference exceeds `atol`.

    Labels that flip while the logits agree within `atol` are near-ties: reported, not fatal.
    A NaN or inf on a real token is always a failure.
    """
    worst, mismatches, tokens, sentences = 0.0, 0, 0, 0
    for batch in batches:
        got, want = candidate(batch), reference(batch)
        if got.shape != want.shape:
            raise ValidationError(f"{what}: logits shape {tuple(got.shape)} != {tuple(want.shape)}")
        real = batch["attention_mask"].astype(bool)
        got_real, want_real = got[real], want[real]
        if not np.isfinite(got_real).all():
            raise ValidationError(f"{what}: non-finite logits (NaN/inf) on real tokens")
        if got_real.size:
            worst = max(worst, float(np.max(np.abs(got_real.astype(np.float64) - want_real))))
        mismatches += int(np.sum(got_real.argmax(-1) != want_real.argmax(-1)))
        tokens += int(real.sum())
        sentences += len(real)
    result = CheckResult(max_abs_diff=worst, labels_agree=mismatches == 0, label_mismatches=mismatches,
                         sentences=sentences, tokens=tokens, atol=atol, inputs=inputs)
    if not result.ok:
        raise ValidationError(f"{what}: {result.summary()} - over tolerance")
    return result


def check_onnx_against_onnx(candidate_path, reference_path, *, atol: float = DEFAULT_ATOL, model_dir=None,
                            count: int = DEFAULT_SENTENCES, what: str | None = None) -> CheckResult:
    """Same logits from two ONNX graphs (fix, simplify), on batches shaped for the candidate."""
    session = ort_session(candidate_path)
    batches, inputs = batches_for_graph(candidate_path, model_dir=model_dir, count=count, session=session)
    return compare(onnx_runner(candidate_path, session), onnx_runner(reference_path), batches, atol=atol,
                   what=what or f"{Path(candidate_path).name} vs {Path(reference_path).name}", inputs=inputs)

