"""Writing a batch's outputs, on a writer thread or in line.

`python -m infer` writes one file per sample and model output, each atomically (`outputs.write_array`:
a locked temporary, then a rename). That is several system calls per file: done in line they stall the
model between batches. `BackgroundWriter` takes them off the critical path: the main thread hands each
batch's results to one writer thread through a bounded queue (a slow disk then slows the run down
instead of filling memory) and goes on with the next batch.

Failures keep the in-line semantics: the first error of the writer (a read-only or full disk, a Ctrl-C
that landed there) stops it, is raised again in the main thread at its next `put` or at `close`, and the
batches still queued are dropped. Every file is written whole or not at all, so what is on disk is what a
resumed run expects; `close` returns only after the last write, and the summary is written after it. When
the main thread fails instead (the model raises, Ctrl-C), the batches it had handed over are written first.
`InlineWriter` has the same interface and writes in the caller's thread.
"""
from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from runners.base import TensorMeta

from . import outputs as out

# Batches waiting for the writer; a few are enough to smooth out one slow write.
QUEUE_DEPTH = 4
# While the writer runs, the interpreter hands the GIL over every 0.5 ms instead of every 5 ms: when
# `session.run` returns, the main thread gets the GIL back from a writer busy in Python at once, not up to
# 5 ms later for each of a hundred batches. Measured on the CoNLL-2003 test flow (2 cores, 154 batches):
# 9.6-10.1 s against 10.3-10.9 s with the default interval; restored when the writer stops.
WRITER_SWITCH_INTERVAL_S = 0.0005
_STOP = object()


def written_dtype(meta: TensorMeta) -> np.dtype:
    # the contract is float32 logits, whatever float type the graph computes in
    return np.dtype(np.float32) if np.dtype(meta.dtype) in (np.float16, np.float64) else np.dtype(meta.dtype)


def written_shape(meta: TensorMeta, length: int) -> list[Optional[int]]:
    """The shape of one sample's output file: one row, the sample's length, the graph's other dims."""
    shape = []
    for axis, dim in enumerate(meta.shape):
        if axis == 0:
            shape.append(1)
        elif TensorMeta.is_static(dim):
            shape.append(dim)
        else:
            shape.append(length if axis == 1 else None)
    return shape


def write_batch_outputs(folder: Path, batch, results: dict, out_metas: Sequence[TensorMeta],
                        outfmt: str) -> list[Path]:
    """One file per real sample and model output, `<stem>_<output index>.<fmt>`, shape (1, L, labels)."""
    written = []
    for index, meta in enumerate(out_metas):
        array = np.asarray(results[meta.name]).astype(written_dtype(meta), copy=False)
        # Rows past len(batch.samples) are padding: never written.
        for row, sample in enumerate(batch.samples):
            path = out.output_path(folder, sample.stem, index, outfmt)
            out.write_array(path, _to_file_length(array[row:row + 1], batch, row, meta), outfmt)
            written.append(path)
    return written


def _to_file_length(sample_output: np.ndarray, batch, row: int, meta: TensorMeta) -> np.ndarray:
    """A regrouped batch ran each sample only up to the batch's longest real length: the output file
    keeps the sample's length on disk (the layout an untrimmed run writes), and every position past
    the sample's own real length holds 0 (padding: masked out of attention, never scored)."""
    if batch.file_lengths is None or sample_output.ndim < 2 or TensorMeta.is_static(meta.shape[1]):
        return sample_output
    real = batch.real_lengths[row]
    full = np.zeros((sample_output.shape[0], batch.file_lengths[row], *sample_output.shape[2:]),
                    dtype=sample_output.dtype)
    full[:, :real] = sample_output[:, :real]
    return full


class InlineWriter:
    """Writes each batch in the caller's thread (the reference `BackgroundWriter` must equal)."""

    def __init__(self, write: Callable[[tuple], list]):
        self._write = write
        self.written: list = []

    def put(self, item: tuple) -> None:
        self.written += self._write(item)

    def close(self) -> list:
        return self.written

    def __enter__(self) -> "InlineWriter":
        return self

    def __exit__(self, *exc) -> None:
        pass


class BackgroundWriter:
    """One writer thread fed through a bounded queue; see the module docstring."""

    def __init__(self, write: Callable[[tuple], list], depth: int = QUEUE_DEPTH):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._failed = threading.Event()
        self._error: Optional[BaseException] = None
        self.written: list = []
        self._thread = threading.Thread(target=self._loop, name="infer-writer", daemon=True)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, WRITER_SWITCH_INTERVAL_S))
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._failed.is_set():
                continue  # after an error nothing more is written; the main thread is told at its next call
            try:
                self.written += self._write(item)
            except BaseException as err:  # KeyboardInterrupt too: the main thread re-raises it as it was
                self._error = err
                self._failed.set()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            self._stop()
            raise self._error

    def put(self, item: tuple) -> None:
        """Queue one batch's results; raises the writer's error, if any, instead of queueing more."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue  # the writer is busy (or has just failed: checked on the next round)

    def close(self) -> list:
        """Wait for every queued write; returns the paths written, or raises the writer's error."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self.written

    def _stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._failed.is_set() or self._error is not None:
            self._drop_queued()
        self._queue.put(_STOP)
        self._thread.join()
        sys.setswitchinterval(self._switch_interval)

    def _drop_queued(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def abort(self) -> None:
        """The main thread failed: the batches it handed over are still written (as in-line writes would
        have been before the failure, so a rerun resumes after them), then the thread stops."""
        self._stop()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()  # before the folder lock is released: no write outlives it
        else:
            self._stop()
