"""This machine's fp32 MatMul peak as ONNX Runtime reaches it: the yardstick of `python -m bench`.

One ORT graph per shape, `Y = X @ W` with W a constant initializer (as model weights are, so
ORT pre-packs it the same way), run with the session options the runners use. Each shape is
timed `repeats` times after a warm-up, and its median gives GFLOP/s = 2·M·K·N / seconds. The
peak is the best shape. The shapes are the model's own GEMMs at a few thousand tokens
(hidden 384: QKV 384->1152, FFN 384->1536 and 1536->384) plus square ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from runners.onnxrt import SessionFromOnnx

DEFAULT_SHAPES = ((2048, 384, 1152), (2048, 384, 1536), (2048, 1536, 384), (1024, 1024, 1024), (2048, 2048, 2048))


@dataclass(frozen=True)
class MatMulTiming:
    m: int
    k: int
    n: int
    median_ms: float

    @property
    def gflops(self) -> float:
        return 2.0 * self.m * self.k * self.n / (self.median_ms / 1000.0) / 1e9


def matmul_model(k: int, n: int, seed: int = 0):
    # onnx and onnxruntime load in seconds: imported where used, so `--help` stays instant
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32) * 0.05
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul_peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def time_matmul(m: int, k: int, n: int, *, threads: Optional[int] = None, repeats: int = 15,
                min_seconds: float = 0.3) -> MatMulTiming:
    import onnxruntime as ort  # heavy: see matmul_model

    options = SessionFromOnnx("matmul.onnx", intra_op_threads=threads).session_options()
    session = ort.InferenceSession(matmul_model(k, n).SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    for _ in range(3):
        session.run(["y"], {"x": x})
    times = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        session.run(["y"], {"x": x})
        times.append(time.perf_counter() - t)
    return MatMulTiming(m, k, n, float(np.median(times)) * 1000.0)


def matmul_peak(shapes: Sequence[tuple[int, int, int]] = DEFAULT_SHAPES, *, threads: Optional[int] = None,
                repeats: int = 15) -> tuple[float, list[MatMulTiming]]:
    """(best GFLOP/s, every shape's timing)."""
    timings = [time_matmul(m, k, n, threads=threads, repeats=repeats) for m, k, n in shapes]
    return max(t.gflops for t in timings), timings
