"""The ways of getting word labels that `infer.benchmark` compares, behind one small interface.

A path is built cheaply, `load()`ed (model, session: what its memory figure covers), then
`predict(sentences)` turns lists of words into lists of IOB2 tags, everything included:
tokenising, batching, inference, decoding. `close()` drops what `load()` made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .bench_core import BatchPolicy, predict


class BenchPath:
    name = "path"
    description = ""
    model_file: Optional[Path] = None  # what model_mb measures

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def model_mb(self) -> Optional[float]:
        if self.model_file is None:
            return None
        path = Path(self.model_file)
        total = path.stat().st_size
        data = path.parent / (path.name + ".data")
        if data.is_file():
            total += data.stat().st_size
        return total / 2**20


def _weights_file(model_dir: Path) -> Optional[Path]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def load_torch_model(model_dir: Path, threads: int):
    import torch
    from transformers import AutoModelForTokenClassification

    torch.set_num_threads(threads)
    # dtype=float32 also widens a checkpoint stored as float16 (the default model is)
    return AutoModelForTokenClassification.from_pretrained(str(model_dir), dtype=torch.float32).float().eval()


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

    def load(self) -> None:
        from transformers import AutoTokenizer, pipeline

        model = load_torch_model(self.model_dir, self.threads)
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="none",
                             ignore_labels=[], device=-1)

    def predict(self, sentences):
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


class TorchPath(BenchPath):
    """The checkpoint in PyTorch (fp32, transformers' default attention), batched like the ORT paths."""

    name = "torch_batched"

    def __init__(self, model_dir: Path, threads: int, policy: BatchPolicy, tokenizer, spec):
        self.model_dir, self.threads, self.policy = Path(model_dir), threads, policy
        self.tokenizer, self.spec = tokenizer, spec
        self.model_file = _weights_file(self.model_dir)
        self.description = f"PyTorch fp32, {policy.describe()}"
        self.model = None

    def load(self) -> None:
        self.model = load_torch_model(self.model_dir, self.threads)

    def _infer(self, feed):
        import torch

        with torch.inference_mode():
            return self.model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()

    def predict(self, sentences):
        return predict(sentences, tokenizer=self.tokenizer, infer=self._infer, input_names=self.spec.input_names,
                       id2label=self.spec.id2label, policy=self.policy, max_len=self.spec.max_positions)

    def close(self) -> None:
        self.model = None


class OrtPath(BenchPath):
    """An ONNX graph on ONNX Runtime through the project's runner (`infer.runners.OrtRunner`)."""

    def __init__(self, name: str, model_file: Path, policy: BatchPolicy, tokenizer, spec, what: str,
                 threads: Optional[int] = None, io_binding: bool = False):
        self.name, self.model_file, self.policy = name, Path(model_file), policy
        self.tokenizer, self.spec, self.threads, self.io_binding = tokenizer, spec, threads, io_binding
        self.description = f"{what}, {policy.describe()}"
        self.runner = None

    def load(self) -> None:
        from .runners.onnxrt import OrtRunner

        self.runner = OrtRunner.from_path(self.model_file, intra_op_threads=self.threads, io_binding=self.io_binding)
        self.runner.activate()
        self.output = self.runner.get_output_metadata()[0].name

    def _infer(self, feed):
        return self.runner.infer(feed, check_inputs=False)[self.output]

    def predict(self, sentences):
        max_len = self.policy.pad_to or self.spec.max_positions
        return predict(sentences, tokenizer=self.tokenizer, infer=self._infer, input_names=self.spec.input_names,
                       id2label=self.spec.id2label, policy=self.policy, max_len=max_len)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()
        self.runner = None


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
