"""Offline batch inference with ais_bench's flags and layout, on any runner (ORT by default).

`run_offline` is the whole of `python -m infer --input ...`: pair the input files, validate
every file against the model (sizes, and token ids against the graph's embedding tables), find
a matching folder to resume (locked while this run uses it) or create a new one, group samples
by length, run batches (a short last batch is padded only for a graph that fixes the batch;
padded rows are never written), write each sample's logits atomically and the summary beside
the folder. Each input file is read once, straight into its batch's preallocated array, and checked
there (the feeds are kept for the run while they fit in memory); the outputs are written by a writer
thread (`infer.writer`) while the next batch runs. The speed it prints, "inference: X samples/s", spans model load to last output
and counts only samples this run computed; outputs reused from an earlier run get no speed.
`run_pure` is `python -m infer` without `--input`: `--loop` runs on zero inputs.

Timing follows ais_bench: `--warmup_count` untimed runs first (here once per distinct input
shape, so each length bucket's first batch is not timed cold), then each batch runs `--loop`
times and every run's `session.run` time is one entry of `npu_compute_time_list`; the last
run's outputs are written. A resumed run times only the batches it ran; its `filesinfo` still
lists every sample of the folder.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import click
import numpy as np
from tqdm import tqdm

from common.atomic import remove_stale_temporaries
from common.errors import UserError, existing_path

from . import outputs as out
from .inputs import (check_batch_token_ids, check_folders_match_model, fixes_batch, load_batch,
                     load_checked_batches, model_batchsize, pair_samples, parse_input_arg, plan_batches,
                     sample_lengths, zero_feed)
from runners.base import BaseRunner
from runners.onnxrt import OrtRunner
from runners.openvino import OpenVinoRunner
from .repack import check_repackable, repack
from .summary import build_summary, summary_lines
from .token_ids import embedding_table_rows
from .writer import BackgroundWriter, InlineWriter, write_batch_outputs, written_dtype, written_shape

DEFAULT_SEQ_LEN = 128
OUTFMTS = ("NPY", "BIN")


@dataclass
class RunResult:
    """What a run did; `summary` is the ais_bench summary dict (None when nothing ran)."""

    out_dir: Optional[Path] = None
    summary_path: Optional[Path] = None
    summary: Optional[dict] = None
    total: int = 0
    computed: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    written: list = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        return self.computed / self.wall_s if self.wall_s > 0 else 0.0


def check_model_path(model) -> Path:
    return existing_path(model, "model file", folder=False)


def canonical_argv(**params) -> list[str]:
    """The command line as ais_bench records it in `args`, rebuilt from parameters (for library calls)."""
    argv = ["python", "-m", "infer"]
    for key, value in params.items():
        if value is None or value is False:
            continue
        argv += [f"--{key}", str(value)]
    return argv


def _check_common(outfmt: str, loop: int, warmup_count: int, batchsize: Optional[int]) -> str:
    outfmt = outfmt.upper()
    if outfmt not in OUTFMTS:
        raise UserError(f"--outfmt {outfmt} is not supported here; use one of {', '.join(OUTFMTS)}")
    if loop < 1:
        raise UserError("--loop must be at least 1")
    if warmup_count < 0:
        raise UserError("--warmup_count must be 0 or more")
    if batchsize is not None and batchsize < 1:
        raise UserError("--batchsize must be at least 1")
    return outfmt


def _default_runner(model: Path, device: int) -> BaseRunner:
    return OrtRunner.from_path(model, device=device)


BACKENDS = ("auto", "onnxrt", "openvino")
PRECISIONS = ("f32", "bf16", "auto")


def runner_factory_for(model, backend: str = "auto", precision: str = "f32") -> Callable[[Path, int], BaseRunner]:
    """The runner of `--backend` (auto: OpenVINO for an IR `.xml`, ONNX Runtime otherwise).

    `--precision` is OpenVINO's inference precision (f32 by default, so that the logits are the ONNX
    Runtime fp32 ones; bf16 where the CPU has it; auto lets `common.cpu` choose); ORT runs the graph's own."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if backend == "auto":
        backend = "openvino" if str(model).lower().endswith(".xml") else "onnxrt"
    if backend == "onnxrt":
        if str(model).lower().endswith(".xml"):
            raise UserError(f"{model}: an OpenVINO IR runs with --backend openvino, not onnxrt")
        if precision != "f32":
            raise UserError(f"--precision {precision}: only --backend openvino runs in another precision; "
                            "ONNX Runtime runs the graph as it is")
        return _default_runner
    return lambda path, device: OpenVinoRunner.from_path(path, precision=precision)


def _warmup(runner: BaseRunner, feeds: Sequence[dict], count: int) -> None:
    # One warm-up per distinct shape: the first run of a shape allocates buffers and picks kernels,
    # and would otherwise land in the timings of the first batch of every length bucket.
    for feed in feeds:
        for _ in range(count):
            runner.infer(feed)
    runner.inference_times = []


def run_offline(*, model, input: str, output=None, outfmt: str = "BIN", batchsize: Optional[int] = None,
                loop: int = 1, warmup_count: int = 1, device: int = 0, output_dirname: Optional[str] = None,
                display_all_summary: bool = False, argv: Optional[Sequence[str]] = None,
                runner_factory: Callable[[Path, int], BaseRunner] = _default_runner,
                log: Callable[[str], None] = click.echo, progress: Optional[bool] = None,
                background_writes: bool = True, max_tokens: Optional[int] = None) -> RunResult:
    """Run every sample of the input folders through the model; see the module docstring.

    `progress`: True draws the bar on stderr, False never, None only on a terminal.
    `background_writes`: outputs are written by a writer thread while the next batch runs (False: in line;
    the files are the same byte for byte).
    `max_tokens`: regroup the samples by real length under this padded-token budget (`infer.repack`;
    `batchsize` is then the row cap); None runs them by length on disk, as ais_bench does.
    """
    outfmt = _check_common(outfmt, loop, warmup_count, batchsize)
    if max_tokens is not None and max_tokens < 1:
        raise UserError("--max_tokens must be at least 1")
    model = check_model_path(model)
    folders = parse_input_arg(input)
    samples = pair_samples(folders)
    args = list(argv) if argv is not None else canonical_argv(
        model=model, input=input, output=output, outfmt=outfmt, batchsize=batchsize, loop=loop,
        warmup_count=warmup_count, device=device, output_dirname=output_dirname, max_tokens=max_tokens)
    result = RunResult(total=len(samples))
    started = time.perf_counter()

    with ExitStack() as held:  # the runner, then the folder lock: both released however the run ends
        log(f"[INFO] loading {model}")
        runner = held.enter_context(runner_factory(model, device))
        metas, out_metas = runner.get_input_metadata(), runner.get_output_metadata()
        log(f"[INFO] model loaded in {time.perf_counter() - started:.1f} s: {runner.name} on "
            f"{', '.join(getattr(runner, 'providers', []) or ['?'])}")
        check_folders_match_model(folders, metas)
        lengths = dict(zip((s.index for s in samples), sample_lengths(samples, metas)))
        if max_tokens is not None:
            check_repackable(metas, model)
        rows = model_batchsize(metas, batchsize)

        folder, manifest, pending = None, None, list(samples)
        if output is not None:
            wanted = out.make_manifest(model_path=model, input_dirs=folders, outfmt=outfmt)
            folder, manifest = out.choose_output_folder(output_root=output, output_dirname=output_dirname,
                                                        wanted=wanted)
        if folder is not None:
            held.enter_context(out.FolderLock(folder))  # a second run resuming it now stops with an error
            result.out_dir, result.summary_path = folder, out.summary_path(folder)
            pending = _resume(folder, samples, lengths, out_metas, outfmt, log)
            result.skipped = len(samples) - len(pending)
            if not pending:
                return _all_reused(result, samples, folder, outfmt, len(out_metas), args, log)

        step = time.perf_counter()
        batches = plan_batches(pending, [lengths[s.index] for s in pending], rows, pad=fixes_batch(metas))
        # every file read and checked once, before anything is created; the feeds are kept for the run
        table_rows = embedding_table_rows(model)
        feeds = load_checked_batches(batches, metas, table_rows)
        if max_tokens is not None and None not in feeds:
            batches, feeds = repack(batches, feeds, metas, max_tokens, batchsize or max_tokens)
        elif max_tokens is not None:
            log("[INFO] --max_tokens: the inputs are too large to keep in memory; batches by length on disk")
        log(f"[INFO] checked the token ids of {len(pending)} samples in {time.perf_counter() - step:.1f} s "
            f"(inputs read once{'' if None not in feeds else '; too large to keep, read again while running'})")
        regrouped = bool(batches) and batches[0].file_lengths is not None
        log(f"[INFO] {len(pending)} samples in {len(batches)} batch(es) " + (
            f"regrouped by real length, up to {max_tokens} padded tokens" if regrouped else
            f"of up to {rows} (lengths {', '.join(str(n) for n in sorted({b.length for b in batches}))})"))

        if output is not None and folder is None:
            # Created only now, after every input file passed validation: a failed run leaves nothing.
            folder = out.create_result_folder(output, output_dirname)
            held.enter_context(out.FolderLock(folder))
            out.write_manifest(folder, out.make_manifest(model_path=model, input_dirs=folders, outfmt=outfmt,
                                                          num_outputs=len(out_metas)))
            result.out_dir, result.summary_path = folder, out.summary_path(folder)
        if folder is not None:
            log(f"[INFO] output path:{folder}")

        step = time.perf_counter()
        first_of_shape = {}
        # regrouped, the shapes vary from batch to batch: the longest (the last) warms up
        for batch, feed in zip(batches[-1:] if regrouped else batches, feeds[-1:] if regrouped else feeds):
            first_of_shape.setdefault(batch.length, (batch, feed))
        _warmup(runner, [feed if feed is not None else load_batch(batch, metas)
                         for batch, feed in first_of_shape.values()], warmup_count)
        log(f"[INFO] warm up {warmup_count} done ({time.perf_counter() - step:.1f} s)")

        def write(item) -> list:
            return write_batch_outputs(folder, *item, out_metas, outfmt)

        compute_ms: list[float] = []
        rows_run: list[int] = []
        # the writer is entered after the lock: on any error it stops (and is joined) before the lock goes
        writer = held.enter_context(BackgroundWriter(write) if background_writes else InlineWriter(write))
        with tqdm(total=len(pending), unit="sample", desc="Inference", file=sys.stderr, mininterval=0.5,
                  disable=None if progress is None else not progress) as bar:
            try:
                for position, batch in enumerate(batches):
                    feed = feeds[position] if feeds[position] is not None else _reload(batch, metas, table_rows)
                    feeds[position] = None  # its memory goes back once the batch has run
                    for _ in range(loop):
                        results = runner.infer(feed)
                        compute_ms.append(runner.inference_time)
                        rows_run.append(batch.rows)
                    if folder is not None:
                        writer.put((batch, results))
                    result.computed += len(batch.samples)
                    bar.update(len(batch.samples))
                result.written += writer.close()  # the last output is on disk (or the writer's error is raised)
            except BaseException:
                bar.leave = False  # on a terminal the bar is wiped: the error line stands alone
                raise
        result.wall_s = time.perf_counter() - started

        summary = build_summary(filesinfo=_filesinfo(samples, folder, outfmt, len(out_metas)) if folder else {},
                                args=args, compute_ms=compute_ms, batchsizes=rows_run)
        result.summary = summary
        for line in summary_lines(summary, float(np.mean(rows_run)), display_all=display_all_summary):
            log(line)
        reused = f"; {result.skipped} outputs reused from an earlier run" if result.skipped else ""
        log(f"[INFO] inference: {result.computed} samples in {result.wall_s:.2f} s = {result.samples_per_s:.2f} "
            f"samples/s (python -m infer, model load to last output){reused}")
        if folder is not None:  # still under the folder lock
            out.save_json(result.summary_path, summary, indent=None)
            _write_run_record(folder, result)
            log(f"[INFO] summary: {result.summary_path}")
    return result


def _reload(batch, metas, table_rows: dict) -> dict:
    """A batch whose feed was not kept (a data set too large for memory): read and checked again."""
    feed = load_batch(batch, metas)
    check_batch_token_ids(batch, feed, metas, table_rows)
    return feed


def _resume(folder: Path, samples, lengths: dict, out_metas, outfmt: str, log) -> list:
    """The samples of a resumed folder still to compute: outputs missing, or not the shape and size
    their input implies (a truncated or foreign file is recomputed, never kept)."""
    removed = remove_stale_temporaries(folder)  # left by a run killed mid-write
    pending, damaged = [], 0
    for sample in samples:
        paths = [out.output_path(folder, sample.stem, i, outfmt) for i in range(len(out_metas))]
        whole = [out.output_is_whole(path, outfmt, written_shape(meta, lengths[sample.index]), written_dtype(meta))
                 for path, meta in zip(paths, out_metas)]
        if not all(whole):
            pending.append(sample)
            damaged += any(path.exists() for path, ok in zip(paths, whole) if not ok)
    notes = [f"{n} {what}" for n, what in ((damaged, "incomplete outputs recomputed"),
                                            (removed, "stale temporary files removed")) if n]
    if pending:
        log(f"[INFO] resuming {folder}: {len(samples) - len(pending)} of {len(samples)} outputs already present, "
            f"computing {len(pending)}" + (f" ({', '.join(notes)})" if notes else ""))
    return pending


def _all_reused(result: RunResult, samples, folder: Path, outfmt: str, n_outputs: int, args, log) -> RunResult:
    log(f"[INFO] {len(samples)} of {len(samples)} outputs already present, nothing to do: {folder}")
    log(f"[INFO] inference: not run; all {len(samples)} outputs reused from an earlier run (no speed measured)")
    if not result.summary_path.exists():  # a run cut off between its last output and its summary
        out.save_json(result.summary_path, build_summary(
            filesinfo=_filesinfo(samples, folder, outfmt, n_outputs), args=args, compute_ms=[], batchsizes=[]),
            indent=None)
    _write_run_record(folder, result)
    return result


def _write_run_record(folder: Path, result: RunResult) -> None:
    """What this run did, for scripts/summarize_run.py: a speed only for work really done."""
    out.write_run_record(folder, {
        "total": result.total, "computed": result.computed, "reused": result.skipped,
        "seconds": round(result.wall_s, 3) if result.computed else None,
        "samples_per_s": round(result.samples_per_s, 2) if result.computed else None,
        "measured": "python -m infer, model load to last output"})


def _filesinfo(samples, folder: Optional[Path], outfmt: str, n_outputs: int) -> dict:
    """ais_bench's `filesinfo`: per sample index, its input files and its output files."""
    base = str(folder)  # joined as strings: thousands of samples, a Path each would cost more than the rest
    return {s.index: {"infiles": [str(p) for p in s.files],
                      "outfiles": [os.path.join(base, out.output_name(s.stem, i, outfmt)) for i in range(n_outputs)]}
            for s in samples}


def run_pure(*, model, output=None, outfmt: str = "BIN", batchsize: Optional[int] = None, loop: int = 1,
             warmup_count: int = 1, device: int = 0, output_dirname: Optional[str] = None,
             seq_len: Optional[int] = None, display_all_summary: bool = False,
             argv: Optional[Sequence[str]] = None,
             runner_factory: Callable[[Path, int], BaseRunner] = _default_runner,
             log: Callable[[str], None] = click.echo) -> RunResult:
    """ais_bench's pure-inference mode: `loop` runs on zero inputs of the model's shape.

    Dynamic dims take batch = --batchsize (default 1) and sequence = --seq_len (default 128);
    a --seq_len that contradicts a fixed sequence dim is an error. With --output, the last
    run's outputs go to `pure_infer_data_<i>` and the summary beside the folder, as ais_bench does.
    """
    outfmt = _check_common(outfmt, loop, warmup_count, batchsize)
    if seq_len is not None and seq_len < 1:
        raise UserError("--seq_len must be at least 1")
    model = check_model_path(model)
    args = list(argv) if argv is not None else canonical_argv(
        model=model, output=output, outfmt=outfmt, batchsize=batchsize, loop=loop, warmup_count=warmup_count,
        device=device, output_dirname=output_dirname, seq_len=seq_len)
    result = RunResult()
    if output is not None:
        out.choose_output_folder(output_root=output, output_dirname=output_dirname, wanted=None)  # checks only

    with runner_factory(model, device) as runner:
        metas = runner.get_input_metadata()
        out_metas = runner.get_output_metadata()
        rows = model_batchsize(metas, batchsize)
        fixed_seq = {m.fixed_dim(1) for m in metas} - {None}
        if seq_len is not None and fixed_seq and fixed_seq != {seq_len}:
            raise UserError(f"--seq_len {seq_len} disagrees with the model's fixed sequence length "
                            f"{sorted(fixed_seq)[0]}")
        feed = zero_feed(metas, rows, seq_len or DEFAULT_SEQ_LEN)
        shapes = "; ".join(f"{k}:{','.join(map(str, v.shape))}" for k, v in feed.items())
        log(f"[INFO] pure inference on zero inputs ({shapes}), {loop} loop(s)")
        _warmup(runner, [feed], warmup_count)
        log(f"[INFO] warm up {warmup_count} done")
        start = time.perf_counter()
        for _ in range(loop):
            results = runner.infer(feed)
        result.wall_s = time.perf_counter() - start
        compute_ms = list(runner.inference_times)
        result.computed = rows * loop

    filesinfo, folder = {}, None
    with ExitStack() as held:
        if output is not None:
            folder = out.create_result_folder(output, output_dirname)
            held.enter_context(out.FolderLock(folder))
            result.out_dir, result.summary_path = folder, out.summary_path(folder)
            outfiles = []
            for index, meta in enumerate(out_metas):
                path = out.output_path(folder, out.PURE_INFER_NAME, index, outfmt)
                out.write_array(path, np.asarray(results[meta.name]), outfmt)
                outfiles.append(str(path))
                result.written.append(path)
            filesinfo = {0: {"infiles": [out.PURE_INFER_NAME] * len(metas), "outfiles": outfiles}}
            log(f"[INFO] output path:{folder}")
        summary = build_summary(filesinfo=filesinfo, args=args, compute_ms=compute_ms,
                                batchsizes=[rows] * len(compute_ms))
        result.summary = summary
        for line in summary_lines(summary, float(rows), display_all=display_all_summary):
            log(line)
        if folder is not None:
            out.save_json(result.summary_path, summary, indent=None)
            log(f"[INFO] summary: {result.summary_path}")
    return result
