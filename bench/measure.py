"""One path measured: load, warm up, time, score (`start_path`), and its speed from the median pass."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from common.metrics import classification_report
from common.model_spec import TrainedContext
from preprocess.plan import BatchPolicy

from .flops import EncoderShape
from .machine import RssMeter, trim_memory
from .paths import BenchPath, OrtPath, agreement
from .timing import interleave, time_pass

BATCH_TABLE_SIZES = (1, 4, 8, 16, 32, 64)


@dataclass
class Context:
    model_dir: Path
    input_file: Path
    sentences: list  # preprocess.conll.Sentence
    sample_idx: np.ndarray
    tokenizer: object
    spec: object  # common.model_spec.ModelSpec
    shape: EncoderShape
    sample_flops: int
    sample_tokens: int
    threads: int
    log: Callable[[str], None]
    words_in: TrainedContext = TrainedContext()  # sentences, or document windows
    documents: Optional[list] = None  # document context: the file's documents (lists of sentence indices)
    sample_documents: Optional[list] = None  # ... and the sample's, as indices into the sample

    @property
    def sample(self) -> list[list[str]]:
        return [list(self.sentences[i].words) for i in self.sample_idx]

    def run_sample(self, path: BenchPath):
        return path.predict(self.sample, self.sample_documents)

    @property
    def all_words(self) -> list[list[str]]:
        return [list(s.words) for s in self.sentences]

    def gold(self, indices=None) -> list[list[str]]:
        chosen = self.sentences if indices is None else [self.sentences[i] for i in indices]
        return [list(s.tags) for s in chosen]


def warm_up(ctx: Context, path: BenchPath, count: int) -> None:
    """Run `count` sentences of the sample through `path`, so buffers reach their full size: the longest
    sentence among them, or in document context the sample's first documents (full windows)."""
    sample = ctx.sample
    if ctx.sample_documents is not None:
        documents, taken = [], 0
        for document in ctx.sample_documents:
            if taken >= count:
                break
            documents.append([taken + i for i in range(len(document))])
            taken += len(document)
        path.predict([sample[i] for document in ctx.sample_documents[:len(documents)] for i in document], documents)
        return
    longest = max(range(len(sample)), key=lambda i: len(sample[i]))
    chosen = [sample[longest]] + [s for i, s in enumerate(sample[:count]) if i != longest]
    path.predict(chosen[:max(1, count)])


def agreement_between(ctx: Context, got: dict, ref: dict) -> Optional[float]:
    """Share of words two paths label alike, on the sentences both scored (the sample at least)."""
    if got["scope"] == ref["scope"]:
        return agreement(got["pred"], ref["pred"])
    if got["scope"] == "sample" and ref["scope"] == "file":
        return agreement(got["pred"], [ref["pred"][i] for i in ctx.sample_idx])
    if got["scope"] == "file" and ref["scope"] == "sample":
        return agreement([got["pred"][i] for i in ctx.sample_idx], ref["pred"])
    return None


def start_path(ctx: Context, path: BenchPath, *, warmup: int, f1_scope: str) -> tuple[dict, dict]:
    """Load, warm up, time one pass, score; the path stays loaded for the interleaved passes.

    Returns (the run's JSON record, its predictions). The memory figure covers all of this."""
    ctx.log(f"[{path.name}] {path.description}")
    sample = ctx.sample
    with RssMeter() as memory:
        t0 = time.perf_counter()
        path.load()
        load_s = time.perf_counter() - t0
        warm_up(ctx, path, warmup)
        first = time_pass(lambda: ctx.run_sample(path))
        scope = "sample" if f1_scope == "sample" or path.name == "hf_pipeline" else "file"
        if scope == "file":
            pred, gold = path.predict(ctx.all_words, ctx.documents), ctx.gold()
        else:
            pred, gold = ctx.run_sample(path), ctx.gold(ctx.sample_idx)
    report = classification_report(gold, pred)
    record = {
        "name": path.name,
        "description": path.description,
        "passes": [first],
        "f1": report["f1"],
        "precision": report["precision"],
        "recall": report["recall"],
        "f1_on": scope,
        "f1_sentences": len(gold),
        "model_mb": path.model_mb,
        "model_file": str(path.model_file) if path.model_file else None,
        "peak_rss_mb": memory.growth_mb,
        "process_peak_rss_mb": memory.peak_mb,
        "load_s": load_s,
        **path.facts(),
    }
    ctx.log(f"[{path.name}] first pass {len(sample) / first:.1f} sentences/s, F1 {100 * record['f1']:.2f} on the "
            f"{scope}, peak RSS +{record['peak_rss_mb'] or 0:.0f} MB")
    return record, {"scope": scope, "pred": pred}


def finish_record(ctx: Context, record: dict) -> dict:
    """Speed from the median pass."""
    seconds = statistics.median(record["passes"])
    record.update(sentences_per_s=len(ctx.sample_idx) / seconds, seconds=seconds,
                  gflops=ctx.sample_flops / seconds / 1e9, passes=[round(t, 4) for t in record["passes"]])
    return record


def loaded_and_timed_once(ctx: Context, path: BenchPath) -> tuple[Callable[[], object], list[float]]:
    """Load `path`, warm it up on 64 sentences, time one pass over the sample: an `interleave` job."""
    path.load()
    warm_up(ctx, path, 64)
    run = (lambda p: lambda: ctx.run_sample(p))(path)
    return run, [time_pass(run)]


def batch_table(ctx: Context, model_file: Path, io_binding: bool, repeats: int) -> list[dict]:
    """Sentences/s of one graph at batch sizes 1..64 (sorted by length, no token budget), interleaved."""
    sample = ctx.sample
    jobs, paths = [], []
    for size in BATCH_TABLE_SIZES:
        path = OrtPath(f"batch{size}", model_file, BatchPolicy(max_rows=size), ctx.tokenizer, ctx.spec, what="",
                       threads=ctx.threads, io_binding=io_binding, words_in=ctx.words_in)
        jobs.append(loaded_and_timed_once(ctx, path))
        paths.append(path)
    interleave(jobs, repeats - 1)
    rows = []
    for size, path, (_, times) in zip(BATCH_TABLE_SIZES, paths, jobs):
        path.close()
        seconds = statistics.median(times)
        rows.append({"batch_size": size, "sentences_per_s": len(sample) / seconds,
                     "gflops": ctx.sample_flops / seconds / 1e9})
        ctx.log(f"[batch table] batch {size}: {rows[-1]['sentences_per_s']:.1f} sentences/s")
    trim_memory()
    return rows
