"""`python -m corpus`: a whole corpus through the model, in shards, locally or on Ray.

    python -m corpus --input data/*.conll --model_dir models/minilm-l6-conll03 --output runs/c1
    python -m corpus --input texts/ --format text --output runs/t1 --engine ray --ray_address auto

With `--context document` the sentences of a document (a CoNLL -DOCSTART- document, the text lines
up to a blank line, JSONL records with one "doc" value) are labelled as one windowed sequence and
shards end at document ends (`corpus.documents`).

Writes `<output>/shards/shard-NNNNN.parquet` (+ `.counts.json`), `<output>/result.json` and
`<output>/manifest.json`; a rerun into the same folder computes only the shards that are missing.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from common.errors import handle_errors
from common.paths import DEFAULT_MODEL_DIR
from common.cli import CONTEXT_SETTINGS, model_dir_option
from engine.backends import BACKENDS
from engine.core import CONTEXTS

from .inputs import FORMATS
from .job import RESULT, finish, prepare
from .local import run_local
from .ray_engine import check_address, run_ray


@click.command(name="corpus", context_settings=CONTEXT_SETTINGS)
@click.option("--input", "inputs", multiple=True, required=True, metavar="PATH",
              help="A file, a folder or a glob (repeat the flag, or give several after one).")
@click.argument("more_inputs", nargs=-1, metavar="[PATH]...")
@model_dir_option(default=DEFAULT_MODEL_DIR, help="Token-classification checkpoint folder.")
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Output folder (resumable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="conll, text (one text per line) or jsonl [default: from the extension / content].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray_address", "--ray-address", "ray_address", default=None,
              help="Join this Ray cluster (auto or HOST:PORT) [default: start a local one].")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Ray: actors (runner sessions).")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="onnxrt", show_default=True)
@click.option("--shard_sentences", "--shard-sentences", "shard_sentences", type=click.IntRange(1), default=10000,
              show_default=True, help="Sentences per shard (per Parquet file).")
@click.option("--predictions", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write `word gold pred` lines (what conlleval reads).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Local: CPU threads [default: physical cores].")
@click.option("--context", type=click.Choice(CONTEXTS), default="sentence", show_default=True,
              help="sentence: each sentence on its own; document: the sentences of a document (CoNLL: -DOCSTART-; "
                   "text: lines up to a blank line; JSONL: consecutive records with one \"doc\" value) form one "
                   "sequence in overlapping windows of the model's length (at most 512), each word scored once; "
                   "a shard ends at a document end (a document longer than --shard_sentences is cut).")
@click.option("--window_overlap", "--window-overlap", "window_overlap", type=click.IntRange(0), default=None,
              help="Tokens shared by neighbouring windows [default: half a window].")
@handle_errors
def main(inputs, more_inputs, model_dir, output, fmt, engine, ray_address, workers, backend, shard_sentences,
         predictions, threads, context, window_overlap):
    """Label a whole corpus (CoNLL, text or JSONL) in shards; score it when it has gold tags."""
    if ray_address is not None and engine != "ray":
        raise click.UsageError("--ray_address needs --engine ray")
    if ray_address is not None:
        check_address(ray_address)  # before anything is written
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    job = prepare(list(inputs) + list(more_inputs), model_dir, output, fmt=fmt, backend=backend,
                  shard_sentences=shard_sentences, context=context, window_overlap=window_overlap, note=log)
    done = sum(s.count for s in job.shards) - sum(s.count for s in job.pending())
    log(f"{job.total_sentences} sentences in {len(job.shards)} shards from {len(job.files)} file(s); "
        f"{len(job.shards) - len(job.pending())} shards already done")
    start = time.perf_counter()
    with tqdm(total=job.total_sentences, initial=done, unit="sent", dynamic_ncols=True, file=sys.stderr) as bar:
        if engine == "local":
            computed = run_local(job, bar.update, threads=threads, log=log)
        else:
            computed = run_ray(job, bar.update, address=ray_address, workers=workers, log=log)
    seconds = time.perf_counter() - start
    result, totals = finish(job, predictions, log=log)
    rate = (job.total_sentences - done) / seconds if computed and seconds > 0 else 0.0
    log(f"computed {computed} shards in {seconds:.1f}s ({rate:.0f} sentences/s); wrote {job.output / RESULT}")
    if result["num_sentences"]:
        click.echo(f"f1 {100 * result['f1']:.2f}  precision {100 * result['precision']:.2f}  "
                   f"recall {100 * result['recall']:.2f}  accuracy {100 * result['accuracy']:.2f}  "
                   f"({result['num_sentences']} sentences, {result['num_words']} words)")
    else:
        click.echo(f"{totals['sentences']} sentences, {totals['words']} words labelled (no gold tags)")
