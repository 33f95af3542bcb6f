"""This machine's MatMul peaks as the runtimes reach them: the yardsticks of `python -m bench`.

One graph per shape, `Y = X @ W` with W a constant (as model weights are, so the runtime pre-packs
it the same way), built and run with the options the runners use. Each timing is the median of
`repeats` calls (and at least `min_seconds` of them) after a warm-up; GFLOP/s = 2·M·K·N / seconds
(for int8: integer multiply-adds, counted the same way). Here: ONNX Runtime fp32 (`MatMul`) and int8
(`MatMulInteger`, uint8 x int8 -> int32, the kernel of the dynamic-INT8 graphs); OpenVINO's f32,
bf16 and int8 kernels are in `bench.peak_ov`, and `bench.peaks` takes the best over them all.

The default shapes are the model's own feed-forward GEMMs at 2048 tokens (hidden 384:
384 -> 1536 and 1536 -> 384) and a square one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from runners.onnxrt import SessionFromOnnx

DEFAULT_SHAPES = ((2048, 384, 1536), (2048, 1536, 384), (1024, 1024, 1024))
MIN_SECONDS = 0.3


@dataclass(frozen=True)
class MatMulTiming:
    m: int
    k: int
    n: int
    median_ms: float
    backend: str = "onnxruntime"
    precision: str = "fp32"

    @property
    def gflops(self) -> float:
        return 2.0 * self.m * self.k * self.n / (self.median_ms / 1000.0) / 1e9


def median_call_ms(call: Callable[[], object], *, repeats: int = 15, min_seconds: Optional[float] = None) -> float:
    """Median wall time of `call` in ms: 3 warm-up calls, then `repeats` timed ones, and more until
    `min_seconds` have passed (so a fast shape still spans several scheduler ticks)."""
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    for _ in range(3):
        call()
    times = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000.0


def _onnx_model(op: str, x_type, y_type, weight: np.ndarray, extra_inits: Sequence = ()):
    # onnx and onnxruntime load in seconds: imported where used, so `--help` stays instant
    import onnx
    from onnx import helper, numpy_helper

    k, n = weight.shape
    inits = [numpy_helper.from_array(weight, "w"), *(numpy_helper.from_array(a, name) for name, a in extra_inits)]
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w", *(name for name, _ in extra_inits)], ["y"])], "matmul_peak",
        [helper.make_tensor_value_info("x", x_type, ["m", k])],
        [helper.make_tensor_value_info("y", y_type, ["m", n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def matmul_model(k: int, n: int, seed: int = 0):
    """fp32 `MatMul` with a constant [k, n] weight."""
    from onnx import TensorProto

    weight = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32) * 0.05
    return _onnx_model("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, weight)


def matmul_int8_model(k: int, n: int, seed: int = 0):
    """`MatMulInteger`: uint8 activations (zero point 128) x a constant int8 [k, n] weight -> int32."""
    from onnx import TensorProto

    weight = np.random.default_rng(seed).integers(-127, 128, size=(k, n), dtype=np.int8)
    zero_points = (("x_zero_point", np.array(128, np.uint8)), ("w_zero_point", np.array(0, np.int8)))
    return _onnx_model("MatMulInteger", TensorProto.UINT8, TensorProto.INT32, weight, zero_points)


def _time_ort(model, x: np.ndarray, threads: Optional[int], repeats: int, min_seconds: Optional[float]) -> float:
    import onnxruntime as ort  # heavy: see _onnx_model

    options = SessionFromOnnx("matmul.onnx", intra_op_threads=threads).session_options()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return median_call_ms(lambda: session.run(["y"], {"x": x}), repeats=repeats, min_seconds=min_seconds)


def time_matmul(m: int, k: int, n: int, *, threads: Optional[int] = None, repeats: int = 15,
                min_seconds: Optional[float] = None) -> MatMulTiming:
    """ONNX Runtime fp32."""
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    return MatMulTiming(m, k, n, _time_ort(matmul_model(k, n), x, threads, repeats, min_seconds))


def time_matmul_int8(m: int, k: int, n: int, *, threads: Optional[int] = None, repeats: int = 15,
                     min_seconds: Optional[float] = None) -> MatMulTiming:
    """ONNX Runtime int8 (`MatMulInteger`, on the VNNI dot-product units where the CPU has them)."""
    x = np.random.default_rng(1).integers(0, 256, size=(m, k), dtype=np.uint8)
    return MatMulTiming(m, k, n, _time_ort(matmul_int8_model(k, n), x, threads, repeats, min_seconds),
                        precision="int8")


def matmul_peak(shapes: Sequence[tuple[int, int, int]] = DEFAULT_SHAPES, *, threads: Optional[int] = None,
                repeats: int = 15) -> tuple[float, list[MatMulTiming]]:
    """ONNX Runtime fp32 only, one round: (best GFLOP/s, every shape's timing)."""
    timings = [time_matmul(m, k, n, threads=threads, repeats=repeats) for m, k, n in shapes]
    return max(t.gflops for t in timings), timings
