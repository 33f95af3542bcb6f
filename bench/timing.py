"""Timed passes, interleaved across paths so that all of them meet the same drift of the machine's speed."""
from __future__ import annotations

import time
from typing import Callable

LONG_PASS_S = 60.0


def time_pass(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(jobs: list, rounds: int) -> None:
    """`rounds` more timed passes of every job, round-robin: job after job, then again.

    This machine (a VM) drifts between speed regimes ~20% apart that last tens of seconds;
    passes of all paths spread over the same window meet the same mix of regimes, so their
    ratios hold even when the absolute figures move. A job is (function, list of its pass times);
    a job whose first pass took over LONG_PASS_S is not repeated."""
    for _ in range(rounds):
        for fn, times in jobs:
            if times[0] <= LONG_PASS_S:
                times.append(time_pass(fn))
