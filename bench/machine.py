"""Facts about this machine and process that the benchmark records: CPU, load, library versions, memory."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
from typing import Optional


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    return []


def logical_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> Optional[list[float]]:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def version_of(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


# ---------------------------------------------------------------- memory

def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def trim_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next baseline is honest."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RssMeter:
    """Peak RSS growth of a block, in MB: VmHWM (reset via /proc/self/clear_refs) minus VmRSS before.

    Linux only; elsewhere `growth_mb` stays None. The peak covers everything the block allocates
    (model, session arenas, tokenizer, buffers) on top of what the process held before it."""

    def __init__(self):
        self.base_mb: Optional[float] = None
        self.peak_mb: Optional[float] = None

    def __enter__(self):
        trim_memory()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.base_mb = _status_kb("VmRSS") / 1024
        except OSError:
            self.base_mb = None
        return self

    def __exit__(self, *exc):
        if self.base_mb is not None:
            self.peak_mb = _status_kb("VmHWM") / 1024

    @property
    def growth_mb(self) -> Optional[float]:
        if self.base_mb is None or self.peak_mb is None:
            return None
        return self.peak_mb - self.base_mb
