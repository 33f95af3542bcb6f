"""One model, many requests: a worker thread that takes texts in chunks, round-robin across requests.

The model runs one call at a time. Were requests served whole and in arrival order, a short
sentence sent while a 100,000-character article is being labelled would wait for all of it.
Instead each text is cut into chunks of at most `chunk_chars` characters (after a sentence end
or a line break where there is one, else at a space), and the worker labels one chunk of the
first waiting request, then puts that request at the back of the line: a small request waits
for at most one chunk of each request ahead of it.

A text no longer than one chunk is labelled whole, exactly as `python -m apps.predict` labels
it; a longer one is labelled chunk by chunk (its entities' offsets shifted into the whole text),
so an entity is never split unless a chunk had to be cut inside a sentence.
"""
from __future__ import annotations

import re
import threading
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from preprocess.text import Entity

DEFAULT_CHUNK_CHARS = 2000
# Where a chunk may end: after a sentence end (and the spaces after it), or after line breaks.
_BOUNDARY = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_SPACE = re.compile(r"\s+")


def chunk_spans(text: str, limit: int) -> list[tuple[int, int]]:
    """`[start, end)` pieces that cover `text` in order, each at most `limit` characters long."""
    if limit < 1:
        raise ValueError(f"chunk limit {limit}: must be at least 1")
    out, at = [], 0
    while len(text) - at > limit:
        window = text[at:at + limit]
        cut = _last_cut(_BOUNDARY, window) or _last_cut(_SPACE, window) or limit
        out.append((at, at + cut))
        at += cut
    if at < len(text) or not out:
        out.append((at, len(text)))
    return out


def _last_cut(pattern: re.Pattern, window: str) -> int:
    """The end of the last match of `pattern` inside `window` (0 when there is none)."""
    ends = [m.end() for m in pattern.finditer(window) if 0 < m.end() < len(window)]
    return ends[-1] if ends else 0


@dataclass
class _Job:
    text: str
    chunks: list[tuple[int, int]]
    future: Future = field(default_factory=Future)
    done_chunks: int = 0
    found: list[Entity] = field(default_factory=list)


class FairScheduler:
    """`submit(text)` -> a Future of the text's entities; one worker thread runs `label_chunk`."""

    def __init__(self, label_chunk: Callable[[str], Sequence[Entity]], chunk_chars: int = DEFAULT_CHUNK_CHARS):
        self._label_chunk = label_chunk
        self.chunk_chars = chunk_chars
        self._waiting: deque[_Job] = deque()
        self._wakeup = threading.Condition()
        self._closed = False
        self._busy = False  # a job is out of the line, being labelled
        self._worker = threading.Thread(target=self._work, name="ner-model", daemon=True)
        self._worker.start()

    def submit(self, text: str) -> Future:
        job = _Job(text, chunk_spans(text, self.chunk_chars))
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._waiting.append(job)
            self._wakeup.notify()
        return job.future

    def pending(self) -> int:
        """Requests submitted and not finished yet (the one being worked on included)."""
        with self._wakeup:
            return len(self._waiting) + (1 if self._busy else 0)

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._worker.join(timeout=60)

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._waiting and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    for job in self._waiting:
                        job.future.cancel()
                    self._waiting.clear()
                    return
                job = self._waiting.popleft()
                self._busy = True
            try:
                finished = self._step(job)
            finally:
                with self._wakeup:
                    self._busy = False
                    if not finished:
                        self._waiting.append(job)

    def _step(self, job: _Job) -> bool:
        """Label the job's next chunk; True when the job is over (done, failed or given up)."""
        if job.future.cancelled():  # its client went away
            return True
        start, end = job.chunks[job.done_chunks]
        try:
            found = self._label_chunk(job.text[start:end])
        except Exception as err:  # noqa: BLE001 - handed to the request that caused it
            _settle(job.future.set_exception, err)
            return True
        job.found.extend(replace(e, start=e.start + start, end=e.end + start) for e in found)
        job.done_chunks += 1
        if job.done_chunks < len(job.chunks):
            return False
        _settle(job.future.set_result, tuple(job.found))
        return True


def _settle(setter, value) -> None:
    try:
        setter(value)
    except InvalidStateError:  # cancelled meanwhile: nobody is waiting for it
        pass
