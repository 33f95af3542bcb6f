"""The MatMul peaks of one benchmark run, one per precision, and the rule that no path may exceed its peak.

A peak is the best timing over every kernel that runs that precision (fp32: ONNX Runtime and
OpenVINO; bf16: OpenVINO; int8: ONNX Runtime `MatMulInteger` and OpenVINO's int8 FullyConnected),
every shape, and every round: the first round runs before the paths, one more in each of the
interleaved rounds, so the peak meets the same speed regimes of the machine as the paths do. A
median or a single timing on a loaded machine is not a peak: a path measured at 167% of such a
figure once passed the "share of peak" check. Now a path whose GFLOP/s exceed its precision's peak
makes the run invalid (`peak_violations`): the yardstick was wrong, and no share of it means anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from common.cpu import CpuCapabilities

from . import peak as peak_mod
from . import peak_ov

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Kernel:
    """One runtime's MatMul at one precision."""

    backend: str  # onnxruntime / openvino
    precision: str  # fp32 / bf16 / int8

    def time(self, m: int, k: int, n: int, *, threads: int, capabilities: Optional[CpuCapabilities]):
        # looked up at call time, so a test can replace the timers
        if self.backend == "openvino":
            return peak_ov.time_matmul_ov(m, k, n, self.precision, threads=threads, capabilities=capabilities)
        timer = peak_mod.time_matmul if self.precision == "fp32" else peak_mod.time_matmul_int8
        return timer(m, k, n, threads=threads)


def kernels_for(precisions: Iterable[str], *, openvino: bool) -> list[Kernel]:
    """The kernels that measure `precisions`; OpenVINO's only where it is installed (bf16 needs it)."""
    wanted = set(precisions)
    kernels = []
    for precision in PRECISIONS:
        if precision not in wanted:
            continue
        if precision != "bf16":
            kernels.append(Kernel("onnxruntime", precision))
        if openvino:
            kernels.append(Kernel("openvino", precision))
    return kernels


class PeakSet:
    """Every MatMul timing of a run; `measure_round()` times every kernel on every shape once more."""

    def __init__(self, shapes: Sequence[tuple[int, int, int]], kernels: Sequence[Kernel], *, threads: int,
                 capabilities: Optional[CpuCapabilities] = None):
        self.shapes, self.kernels, self.threads = [tuple(s) for s in shapes], list(kernels), threads
        self.capabilities = capabilities
        self.timings: list[tuple[int, peak_mod.MatMulTiming]] = []  # (round, timing)
        self.rounds = 0

    def measure_round(self) -> None:
        for kernel in self.kernels:
            for m, k, n in self.shapes:
                timing = kernel.time(m, k, n, threads=self.threads, capabilities=self.capabilities)
                self.timings.append((self.rounds, timing))
        self.rounds += 1

    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if any(k.precision == p for k in self.kernels)]

    def best(self, precision: str) -> Optional[tuple[int, peak_mod.MatMulTiming]]:
        mine = [(r, t) for r, t in self.timings if t.precision == precision]
        return max(mine, key=lambda rt: rt[1].gflops) if mine else None

    def peak(self, precision: str) -> Optional[float]:
        best = self.best(precision)
        return best[1].gflops if best else None

    def peaks(self) -> dict[str, float]:
        return {p: self.peak(p) for p in self.precisions() if self.peak(p) is not None}

    def samples(self, precision: str) -> list[float]:
        return [t.gflops for _, t in self.timings if t.precision == precision]

    def describe(self) -> dict:
        """Per precision: the peak, where it came from, and the best of each backend (JSON-ready)."""
        out = {}
        for precision in self.precisions():
            best = self.best(precision)
            if best is None:
                continue
            rnd, timing = best
            by_backend = {}
            for _, t in self.timings:
                if t.precision == precision and t.gflops > by_backend.get(t.backend, 0.0):
                    by_backend[t.backend] = t.gflops
            out[precision] = {"gflops": timing.gflops, "backend": timing.backend,
                              "shape": f"{timing.m}x{timing.k}x{timing.n}", "round": rnd,
                              "timings": len(self.samples(precision)), "rounds": self.rounds,
                              "best_by_backend": by_backend}
        return out

    def timings_json(self) -> list[dict]:
        return [{"m": t.m, "k": t.k, "n": t.n, "ms": t.median_ms, "gflops": t.gflops, "backend": t.backend,
                 "precision": t.precision, "round": r} for r, t in self.timings]


def peak_violations(runs: Sequence[dict], peaks: dict[str, float], precision_of: dict[str, str]) -> list[str]:
    """Give every run its `peak_precision` and `fraction_of_peak`; one line per run above its peak."""
    problems = []
    for run in runs:
        precision = precision_of.get(run["name"], "fp32")
        peak = peaks.get(precision)
        run["peak_precision"] = precision
        run["fraction_of_peak"] = run["gflops"] / peak if peak else None
        if peak and run["gflops"] > peak:
            problems.append(f"{run['name']} runs at {run['gflops']:.1f} GFLOP/s, {100 * run['gflops'] / peak:.0f}% "
                            f"of the measured {precision} MatMul peak ({peak:.1f} GFLOP/s): the peak is not a peak")
    return problems
