"""The local engine: one process, one runner session, shard after shard.

Memory holds one shard at a time (its items, rows and Parquet bytes), so it is flat in corpus size.
"""
from __future__ import annotations

from typing import Callable, Optional

from convert.onnx_cache import ensure_onnx
from engine.backends import open_runner
from preprocess.pipeline import load_tokenizer

from .job import Job
from .shard import encode_shard, label_shard, make_engine, write_shard


def build_engine(job_model_dir, spec, backend: str, onnx, threads: Optional[int], log: Callable[[str], None],
                 context: str = "sentence", window_overlap: Optional[int] = None):
    """Tokenizer + activated runner + Engine (the caller deactivates `engine.runner`)."""
    if backend == "onnxrt":
        onnx = ensure_onnx(job_model_dir, onnx, log)
    runner = open_runner(backend, job_model_dir, onnx=onnx, threads=threads, log=log)
    runner.activate()
    return make_engine(runner, spec, load_tokenizer(job_model_dir), context, window_overlap)


def run_local(job: Job, progress, threads: Optional[int] = None, log: Callable[[str], None] = lambda m: None) -> int:
    """Compute every missing shard; returns how many were computed."""
    pending = job.pending()
    if not pending:
        return 0
    engine = build_engine(job.model_dir, job.spec, job.backend, job.onnx, threads, log, job.context,
                          job.window_overlap)
    try:
        for spec in pending:
            parquet, counts = label_shard(engine, encode_shard(engine, spec))
            write_shard(job.shards_dir, spec.shard, parquet, counts)
            progress(spec.count)
    finally:
        engine.runner.deactivate()
    return len(pending)
