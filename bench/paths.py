"""The ways of getting word labels that the benchmark compares, behind one small interface.

A path is built cheaply, `load()`ed (model, session: what its memory figure covers), then
`predict(sentences, documents)` turns lists of words into lists of IOB2 tags, everything included:
tokenising, batching, inference, decoding. `close()` drops what `load()` made. The engine paths
feed words in the benchmark's context (`words_in`: sentences, or document windows, where
`documents` groups the sentences); the transformers pipeline knows sentences only.

Every path but the transformers pipeline is the project's engine (`engine.Engine`) on a runner:
PyTorch (`TorchRunner`), ONNX Runtime (`OrtRunner`) on one of the graphs the convert steps make, or
OpenVINO (`OpenVinoRunner`) on the plain export (f32, bf16) or on NNCF's INT8 IR.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from common.checkpoint import check_checkpoint
from common.cpu import CpuCapabilities
from common.model_spec import TrainedContext, read_model_spec
from engine import Engine
from runners.onnxrt import OrtRunner
from runners.openvino import OpenVinoRunner
from runners.torchrt import TorchRunner
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy

PATHS = ("hf_pipeline", "torch_batched", "ort_fixed512", "ort_bucketed_fp32", "ort_fused_fp32",
         "ort_int8_dynamic", "ort_int8_static", "ov_fp32", "ov_bf16", "ov_int8_nncf")
FP32_PATHS = ("hf_pipeline", "torch_batched", "ort_fixed512", "ort_bucketed_fp32", "ort_fused_fp32", "ov_fp32")
BF16_PATHS = ("ov_bf16",)
INT8_PATHS = ("ort_int8_dynamic", "ort_int8_static", "ov_int8_nncf")
OPENVINO_PATHS = ("ov_fp32", "ov_bf16", "ov_int8_nncf")
# the precision of a path's GEMMs: which MatMul peak its GFLOP/s are a share of
PRECISION_OF_PATH = {**{p: "fp32" for p in FP32_PATHS}, **{p: "bf16" for p in BF16_PATHS},
                     **{p: "int8" for p in INT8_PATHS}}
OLD_RECIPE = BatchPolicy(max_rows=8, sort=False, pad_to=512)
# Measured on the 2-core AMD EPYC (AVX-512) this was tuned on: a few hundred padded tokens per
# batch keep the activations cache-resident; fp32 slows down past ~1000 tokens per batch.
DEFAULT_POLICY = BatchPolicy(max_rows=256, max_tokens=512)
# document windows are 256 tokens: 4 per batch (run.sh and bench.context too); measured on the default model,
# CoNLL test: 1024 beat 512 and 2048 on ort_fused_fp32, ov_fp32 and ov_int8_nncf (2048: 15-26% slower)
DEFAULT_MAX_TOKENS = {"sentence": DEFAULT_POLICY.max_tokens, "document": 1024}


class BenchPath:
    name = "path"
    description = ""
    model_file: Optional[Path] = None  # what model_mb measures

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, sentences: Sequence[Sequence[str]], documents=None) -> list[list[str]]:
        """Tags of `sentences`; `documents` (lists of sentence indices) matter in document context only."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def facts(self) -> dict:
        """Extra JSON facts of the loaded path (e.g. the precision OpenVINO compiled with)."""
        return {}

    @property
    def model_mb(self) -> Optional[float]:
        if self.model_file is None:
            return None
        path = Path(self.model_file)
        # ONNX external data (model.onnx.data), OpenVINO IR weights (model.xml -> model.bin)
        extras = [path.parent / (path.name + ".data"), path.with_suffix(".bin") if path.suffix == ".xml" else None]
        return (path.stat().st_size + sum(p.stat().st_size for p in extras if p and p.is_file())) / 2**20


def _weights_file(model_dir: Path) -> Optional[Path]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


class PipelinePath(BenchPath):
    """transformers `pipeline("token-classification")`, one sentence at a time, text = words joined by spaces.

    `aggregation_strategy="none"` and `ignore_labels=[]` give every word piece with its character
    offsets; a word's label is that of the piece that starts where the word starts (its first
    sub-token, the same rule as everywhere else). Words are split on spaces by the BERT
    pre-tokenizer either way, so the pieces are those of `is_split_into_words=True`."""

    name = "hf_pipeline"
    description = "transformers pipeline('token-classification'), one sentence at a time"

    def __init__(self, model_dir: Path, threads: int):
        self.model_dir, self.threads = Path(model_dir), threads
        self.model_file = _weights_file(self.model_dir)
        self.pipe = None
        if read_model_spec(self.model_dir).word_case:
            # the pipeline tokenises text itself: its token_type_ids are 0, whatever the model learned
            self.description += " (without word case: the pipeline feeds token_type_ids 0)"

    def load(self) -> None:
        # torch and transformers take seconds to import: only this path (and TorchRunner) needs them
        import torch
        from transformers import AutoModelForTokenClassification, pipeline

        torch.set_num_threads(self.threads)
        check_checkpoint(self.model_dir, weights=True)
        # dtype=float32 also widens a checkpoint stored as float16 (the default model is)
        model = AutoModelForTokenClassification.from_pretrained(str(self.model_dir), dtype=torch.float32,
                                                                use_safetensors=True).float().eval()
        tokenizer = load_tokenizer(self.model_dir)  # a byte-level BPE gets its word-start space
        self.pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="none",
                             ignore_labels=[], device=-1)

    def predict(self, sentences, documents=None):
        out = []
        for words in sentences:
            text = " ".join(words)
            by_start = {}
            for piece in self.pipe(text):
                by_start.setdefault(piece["start"], piece["entity"])
            tags, start = [], 0
            for word in words:
                tags.append(by_start.get(start, "O"))
                start += len(word) + 1
            out.append(tags)
        return out

    def close(self) -> None:
        self.pipe = None


class EnginePath(BenchPath):
    """The engine on a runner that `make_runner()` builds; the runner is activated by `load()`."""

    def __init__(self, name: str, policy: BatchPolicy, tokenizer, spec, words_in: TrainedContext = TrainedContext()):
        self.name, self.policy, self.tokenizer, self.spec = name, policy, tokenizer, spec
        self.words_in = words_in
        self.runner = None
        self.engine: Optional[Engine] = None

    def make_runner(self):
        raise NotImplementedError

    def output_name(self) -> str:
        return self.runner.get_output_metadata()[0].name

    def load(self) -> None:
        self.runner = self.make_runner()
        self.runner.activate()
        # the feeds are built from the model spec: the per-call feed check is left out of the timing
        self.engine = Engine(self.runner, tokenizer=self.tokenizer, input_names=self.spec.input_names,
                             id2label=self.spec.id2label, policy=self.policy,
                             max_len=self.words_in.seq_len or self.spec.max_positions,
                             output_name=self.output_name(), check_inputs=False, context=self.words_in.context,
                             window_overlap=self.words_in.window_overlap)

    def predict(self, sentences, documents=None):
        return self.engine.label(sentences, documents)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()
        self.runner, self.engine = None, None


class TorchPath(EnginePath):
    """The checkpoint in PyTorch (fp32, transformers' default attention), batched like the ORT paths."""

    def __init__(self, model_dir: Path, threads: int, policy: BatchPolicy, tokenizer, spec,
                 words_in: TrainedContext = TrainedContext()):
        super().__init__("torch_batched", policy, tokenizer, spec, words_in)
        self.model_dir, self.threads = Path(model_dir), threads
        self.model_file = _weights_file(self.model_dir)
        self.description = f"PyTorch fp32, {policy.describe()}"

    def make_runner(self):
        # attn_implementation=None: transformers' default, what a PyTorch user gets
        return TorchRunner(self.model_dir, name=self.name, threads=self.threads, attn_implementation=None)


class OrtPath(EnginePath):
    """An ONNX graph on ONNX Runtime through the project's runner (`OrtRunner`)."""

    def __init__(self, name: str, model_file: Path, policy: BatchPolicy, tokenizer, spec, what: str,
                 threads: Optional[int] = None, io_binding: bool = False, words_in: TrainedContext = TrainedContext()):
        super().__init__(name, policy, tokenizer, spec, words_in)
        self.model_file, self.threads, self.io_binding = Path(model_file), threads, io_binding
        self.description = f"{what}, {policy.describe()}"

    def make_runner(self):
        return OrtRunner.from_path(self.model_file, intra_op_threads=self.threads, io_binding=self.io_binding)


class OpenVinoPath(EnginePath):
    """A graph (the plain ONNX export, or an IR) on OpenVINO's CPU plugin at `precision` (f32 / bf16 / auto)."""

    def __init__(self, name: str, model_file: Path, policy: BatchPolicy, tokenizer, spec, what: str, *,
                 precision: str, threads: Optional[int] = None, capabilities: Optional[CpuCapabilities] = None,
                 streams: int = 1, words_in: TrainedContext = TrainedContext()):
        super().__init__(name, policy, tokenizer, spec, words_in)
        self.model_file, self.precision, self.threads = Path(model_file), precision, threads
        self.capabilities, self.streams = capabilities, streams
        in_flight = f", {streams} streams (batches in flight)" if streams > 1 else ""
        self.description = f"{what}{in_flight}, {policy.describe()}"
        self.compiled_precision: Optional[str] = None

    def make_runner(self):
        return OpenVinoRunner.from_path(self.model_file, precision=self.precision, threads=self.threads,
                                        capabilities=self.capabilities, streams=self.streams)

    def load(self) -> None:
        super().load()
        self.compiled_precision = self.runner.precision  # read back from the compiled model

    def facts(self) -> dict:
        return {"openvino_precision": self.compiled_precision, "openvino_streams": self.streams}


def agreement(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float:
    """Share of words with the same tag in two predictions of the same sentences."""
    same = total = 0
    for x, y in zip(a, b):
        same += sum(p == q for p, q in zip(x, y))
        total += len(x)
    return same / total if total else 1.0


def sample_indices(count: int, total: int, seed: int) -> np.ndarray:
    """A fixed-seed sample of sentence indices, in file order (all of them if count >= total)."""
    if count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))


def document_sample(documents: Sequence[Sequence[int]], count: int, seed: int) -> tuple[np.ndarray, list[list[int]]]:
    """Whole documents drawn with a fixed seed until they hold `count` sentences (all of them if the file
    has fewer), in file order: the sentence indices, and the documents as indices into that sample."""
    order = np.random.default_rng(seed).permutation(len(documents))
    chosen, total = [], 0
    for d in order.tolist():
        if total >= count:
            break
        chosen.append(d)
        total += len(documents[d])
    idx, grouped = [], []
    for d in sorted(chosen):
        grouped.append(list(range(len(idx), len(idx) + len(documents[d]))))
        idx.extend(documents[d])
    return np.asarray(idx, dtype=np.int64), grouped
