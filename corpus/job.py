"""A corpus job: its inputs, shards, model and output folder; the manifest; the final result.

`prepare` does every check that can fail before any inference (inputs, model folder, the output
folder's manifest), so a bad flag costs nothing. `finish` adds the shards' counts into
`result.json` (`postprocess.from_counts`: the values `bert_metric.py` writes for the same data)
and, on request, streams the shards into the `word gold pred` file that conlleval reads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pyarrow.parquet as pq

from common.atomic import atomic_path, remove_stale_temporaries, write_json
from common.errors import InputFileError, UserError
from common.model_spec import read_model_spec
from convert.onnx_cache import CACHE_DIR, cached_onnx_path, checkpoint_fingerprint
from engine.backends import BACKENDS
from engine.core import CONTEXTS
from postprocess.from_counts import add_counts, result_from_counts

from .inputs import ShardSpec, check_format, expand_inputs, file_fingerprint, plan_shards
from .shard import POLICY, counts_per_type, is_done, read_counts, shard_paths, window_length

MANIFEST = "manifest.json"
# what a manifest written before a key existed meant by it
MANIFEST_DEFAULTS = {"context": "sentence", "window_overlap": None}
RESULT = "result.json"
SHARDS = "shards"


@dataclass
class Job:
    files: list[Path]
    shards: list[ShardSpec]
    total_sentences: int
    model_dir: Path
    spec: object  # common.model_spec.ModelSpec
    output: Path
    backend: str
    onnx: Optional[Path]  # where the ONNX export lives (onnxrt); None for other backends
    context: str = "sentence"
    window_overlap: Optional[int] = None

    @property
    def shards_dir(self) -> Path:
        return self.output / SHARDS

    def pending(self) -> list[ShardSpec]:
        return [s for s in self.shards if not is_done(self.shards_dir, s.shard)]


def prepare(inputs, model_dir, output, *, fmt: Optional[str], backend: str, shard_sentences: int,
            context: str = "sentence", window_overlap: Optional[int] = None,
            note: Callable[[str], None] = lambda m: None) -> Job:
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: choose from {', '.join(sorted(BACKENDS))}")
    if shard_sentences < 1:
        raise UserError(f"--shard_sentences {shard_sentences}: must be at least 1")
    if context not in CONTEXTS:
        raise UserError(f"--context {context!r}: expected one of {', '.join(CONTEXTS)}")
    fmt = check_format(fmt)
    model_dir = Path(model_dir)
    spec = read_model_spec(model_dir)  # a folder that is not a checkpoint fails here, in one line
    check_window_overlap(window_overlap, window_length(spec))
    files = expand_inputs(inputs)
    shards, total = plan_shards(files, fmt, shard_sentences, context, note)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputFileError(output, "--output is a file, not a folder")
    manifest = {
        "model_dir": str(model_dir.resolve()),
        "model_fingerprint": checkpoint_fingerprint(model_dir),
        "backend": backend,
        "format": fmt,
        "shard_sentences": shard_sentences,
        "batch_policy": POLICY.describe(),
        "inputs": [file_fingerprint(p) for p in files],
        "context": context,
        "window_overlap": window_overlap,
    }
    _bind(output, manifest)
    remove_stale_temporaries(output / SHARDS)
    onnx = None
    if backend == "onnxrt":
        onnx = cached_onnx_path(model_dir)
        if not os.access(model_dir, os.W_OK) and not onnx.is_file():  # read-only checkpoint: cache beside the output
            onnx = output / CACHE_DIR / onnx.name
    return Job(files, shards, total, model_dir, spec, output, backend, onnx, context, window_overlap)


def check_window_overlap(window_overlap: Optional[int], window: int) -> None:
    """Before anything is read: the overlap must leave each window room to move on."""
    if window_overlap is not None and not 0 <= window_overlap < window - 2:
        raise UserError(f"--window_overlap {window_overlap}: must be at least 0 and below the window's "
                        f"{window - 2} word-piece tokens")


def _bind(output: Path, manifest: dict) -> None:
    """The folder belongs to one model and one set of inputs; anything else is refused, not mixed."""
    path = output / MANIFEST
    if path.is_file():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InputFileError(path, "is not valid JSON; not a corpus output folder?") from None
        for key, what in (("model_fingerprint", "another model"), ("model_dir", "another model folder"),
                          ("inputs", "other inputs (names, sizes or times changed)"),
                          ("shard_sentences", "another --shard_sentences"), ("format", "another --format"),
                          ("backend", "another --backend"), ("batch_policy", "another batch policy"),
                          ("context", "another --context"), ("window_overlap", "another --window_overlap")):
            if theirs.get(key, MANIFEST_DEFAULTS.get(key)) != manifest[key]:
                raise InputFileError(path, f"this folder holds a run with {what}; use another --output "
                                           "or remove the folder")
        return
    if output.exists() and any(output.iterdir()):
        raise InputFileError(output, "--output is not empty and holds no manifest.json; use another folder")
    try:
        write_json(path, manifest)
    except OSError as err:
        raise InputFileError(output, f"cannot write the output folder ({err.strerror})") from None


def finish(job: Job, predictions: Optional[Path] = None,
           log: Callable[[str], None] = lambda m: None) -> tuple[dict, dict]:
    """Sum the shards' counts into result.json (and write --predictions); returns the result and the
    corpus totals (all sentences and words, gold or not)."""
    per_type: dict = {}
    totals = dict.fromkeys(("sentences", "words", "samples", "scored_sentences", "scored_words", "words_right",
                            "repaired_tags"), 0)
    for spec in job.shards:
        counts = read_counts(job.shards_dir, spec.shard)
        per_type = add_counts(per_type, counts_per_type(counts))
        for key in totals:
            totals[key] += counts[key]
    context = {
        "num_samples": totals["samples"],
        "output_format": ["parquet"],
        "source": [str(p) for p in job.files] if len(job.files) > 1 else str(job.files[0]),
        "model_dir": str(job.model_dir),
        "seq_len": window_length(job.spec),
        "id2label": {str(k): v for k, v in job.spec.id2label.items()},
        "result_dir": str(job.output),
    }
    result = result_from_counts(per_type, words_right=totals["words_right"], num_words=totals["scored_words"],
                                num_sentences=totals["scored_sentences"], repaired_tags=totals["repaired_tags"],
                                context=context)
    write_json(job.output / RESULT, result)
    if predictions is not None:
        if totals["scored_sentences"] != totals["sentences"]:
            raise UserError(f"--predictions {predictions}: needs gold tags, and "
                            f"{totals['sentences'] - totals['scored_sentences']} sentences have none")
        _write_predictions(job, Path(predictions))
        log(f"wrote {predictions}")
    return result, totals


def _write_predictions(job: Job, path: Path) -> None:
    """`word gold pred` per line, a blank line between sentences, streamed shard by shard."""
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            first = True
            for spec in job.shards:
                table = pq.read_table(shard_paths(job.shards_dir, spec.shard)[0], columns=["words", "gold", "tags"])
                for words, gold, tags in zip(*(table.column(c).to_pylist() for c in ("words", "gold", "tags"))):
                    if not words:
                        continue
                    handle.write(("" if first else "\n") + "".join(
                        f"{w} {g} {p}\n" for w, g, p in zip(words, gold, tags)))
                    first = False
    except OSError as err:
        raise InputFileError(path, f"cannot write --predictions ({err.strerror})") from None
