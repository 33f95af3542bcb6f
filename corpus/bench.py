"""`python -m corpus.bench`: what the corpus path costs, measured (never a timed test).

    python -m corpus.bench [--sentences 50000] [--rss_pair 50000,500000] [--shard_sentences 10000]

On a synthetic corpus (CoNLL-2003 train shuffled and repeated into a temp folder) it prints:
1. local engine sentences/s against the in-process `engine.Engine` on the same sentences (>= 0.9x);
2. peak RSS of `python -m corpus` at the small vs the large size of `--rss_pair` (<= 1.15x), each in
   its own subprocess;
3. the Ray engine with 2 actors against the local engine, both as `python -m corpus` (>= 0.8x).
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from common.model_spec import read_model_spec
from common.paths import DEFAULT_MODEL_DIR, conll_dir
from common.cli import CONTEXT_SETTINGS, model_dir_option
from preprocess.conll_stream import iter_conll

from .job import finish, prepare
from .local import build_engine, run_local

_RSS_WRAPPER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                "sys.stderr.write(p.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def synthetic_corpus(path: Path, sentences: int, seed: int = 0) -> Path:
    """CoNLL-2003 train's sentences, shuffled and repeated up to `sentences`, written as CoNLL."""
    pool = list(iter_conll(conll_dir() / "train.txt"))
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        written = 0
        while written < sentences:
            rng.shuffle(pool)
            for s in pool[: sentences - written]:
                handle.write("".join(f"{w} {t}\n" for w, t in zip(s.words, s.tags)) + "\n")
            written += min(len(pool), sentences - written)
    return path


def _corpus_cmd(data, out, model_dir, shard_sentences, *extra):
    return [sys.executable, "-m", "corpus", "--input", str(data), "--model_dir", str(model_dir), "--output", str(out),
            "--shard_sentences", str(shard_sentences), *extra]


def _computed_rate(stderr: str) -> float:
    match = re.search(r"\(([\d.]+) sentences/s\)", stderr)
    if not match:
        raise RuntimeError(f"no rate in the output:\n{stderr[-2000:]}")
    return float(match.group(1))


def local_vs_engine(data: Path, work: Path, model_dir, shard_sentences: int, rounds: int = 2) -> tuple[float, float]:
    """Best of `rounds` for each, alternating (the machine may be shared: the best run is the least disturbed)."""
    sentences = [s.words for s in iter_conll(data)]
    corpus_rates, engine_rates = [], []
    for round_ in range(rounds):
        start = time.perf_counter()
        engine = build_engine(Path(model_dir), read_model_spec(model_dir), "onnxrt", None, None, lambda m: None)
        for at in range(0, len(sentences), shard_sentences):  # the same work (tags and their probabilities), no files
            engine.label_with_probs(sentences[at:at + shard_sentences])
        engine.runner.deactivate()
        engine_rates.append(len(sentences) / (time.perf_counter() - start))
        start = time.perf_counter()
        job = prepare([data], model_dir, work / f"local{round_}", fmt="conll", backend="onnxrt",
                      shard_sentences=shard_sentences)
        run_local(job, lambda n: None)
        finish(job)
        corpus_rates.append(len(sentences) / (time.perf_counter() - start))
    return max(corpus_rates), max(engine_rates)


def peak_rss_kib(data: Path, out: Path, model_dir, shard_sentences: int) -> int:
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *_corpus_cmd(data, out, model_dir, shard_sentences)],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout.strip().splitlines()[-1])


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--sentences", type=click.IntRange(100), default=50000, show_default=True,
              help="Corpus size for the speed comparisons.")
@click.option("--rss_pair", default="50000,500000", show_default=True, help="Small,large corpus sizes for peak RSS.")
@click.option("--shard_sentences", type=click.IntRange(1), default=10000, show_default=True)
@model_dir_option(default=DEFAULT_MODEL_DIR)
@click.option("--skip_ray", is_flag=True, help="Skip the Ray comparison.")
def main(sentences, rss_pair, shard_sentences, model_dir, skip_ray):
    small, large = (int(x) for x in rss_pair.split(","))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="corpus-bench-") as tmp:
        work = Path(tmp)
        data = synthetic_corpus(work / "speed.conll", sentences)
        corpus_rate, engine_rate = local_vs_engine(data, work, model_dir, shard_sentences)
        click.echo(f"{sentences} sentences: corpus local {corpus_rate:.1f} sent/s, in-process engine "
                   f"{engine_rate:.1f} sent/s: {corpus_rate / engine_rate:.2f}x (goal >= 0.9x)")
        rss = {}
        for size in (small, large):
            rss[size] = peak_rss_kib(synthetic_corpus(work / f"rss{size}.conll", size), work / f"rss{size}",
                                     model_dir, shard_sentences)
        click.echo(f"peak RSS {small} sentences {rss[small] / 1024:.0f} MiB, {large} sentences "
                   f"{rss[large] / 1024:.0f} MiB: {rss[large] / rss[small]:.2f}x (goal <= 1.15x)")
        if skip_ray:
            return
        local = subprocess.run(_corpus_cmd(data, work / "l2", model_dir, shard_sentences), capture_output=True,
                               text=True, check=True)
        ray = subprocess.run(_corpus_cmd(data, work / "r2", model_dir, shard_sentences, "--engine", "ray",
                                         "--workers", "2"), capture_output=True, text=True, check=True)
        local_rate, ray_rate = _computed_rate(local.stderr), _computed_rate(ray.stderr)
        click.echo(f"ray (2 actors) {ray_rate:.1f} sent/s, local {local_rate:.1f} sent/s: "
                   f"{ray_rate / local_rate:.2f}x (goal >= 0.8x; includes starting the local cluster)")


if __name__ == "__main__":
    sys.exit(main())
