"""OpenVINO's MatMul peaks (CPU plugin): f32 and bf16 (`INFERENCE_PRECISION_HINT`), and int8.

The graph is saved as an IR and compiled by the runner's own loader (`runners.openvino.
CompiledModelFromPath`), so the peak is measured with exactly the properties the ov_* paths run with.
The int8 graph is the pattern NNCF writes: FakeQuantize on the activations, int8 weights with a
per-channel scale; the CPU plugin runs it as one u8 x i8 FullyConnected (VNNI / AMX where present).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from common.cpu import CpuCapabilities
from runners.openvino import CompiledModelFromPath, import_openvino

from .peak import MatMulTiming, median_call_ms

# OpenVINO's names of the precisions the benchmark reports
HINT_OF = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def matmul_ir(k: int, n: int, precision: str, seed: int = 0):
    """An `openvino.Model`: x [?, k] f32 -> x @ W, W [k, n] stored as [n, k] (transpose_b, the
    FullyConnected layout); for int8, fake-quantized activations and int8 weights times a scale."""
    ov = import_openvino()
    import openvino.opset13 as ops  # with openvino itself (imported on demand)

    rng = np.random.default_rng(seed)
    x = ops.parameter([-1, k], ov.Type.f32, name="x")
    if precision == "int8":
        low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        activations = ops.fake_quantize(x, low, high, low, high, 256)
        weights_i8 = ops.constant(rng.integers(-127, 128, size=(n, k), dtype=np.int8))
        weights = ops.multiply(ops.convert(weights_i8, ov.Type.f32),
                               ops.constant(np.full((n, 1), 0.01, dtype=np.float32)))
    else:
        activations = x
        weights = ops.constant((rng.standard_normal((n, k)) * 0.05).astype(np.float32))
    return ov.Model([ops.matmul(activations, weights, False, True)], [x], "matmul_peak")


def time_matmul_ov(m: int, k: int, n: int, precision: str, *, threads: Optional[int] = None,
                   capabilities: Optional[CpuCapabilities] = None, repeats: int = 15,
                   min_seconds: Optional[float] = None) -> MatMulTiming:
    """OpenVINO at `precision` (fp32 / bf16 / int8); bf16 needs a CPU with it (else `resolve_precision`'s
    UserError: the caller asks only where `capabilities.bf16`)."""
    ov = import_openvino()
    with tempfile.TemporaryDirectory(prefix="matmul_peak_") as folder:
        path = Path(folder) / "matmul.xml"
        ov.save_model(matmul_ir(k, n, precision), str(path), compress_to_fp16=False)
        compiled = CompiledModelFromPath(path, precision=HINT_OF[precision], threads=threads,
                                         capabilities=capabilities)()
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    ms = median_call_ms(lambda: request.infer({0: x}, share_inputs=True), repeats=repeats, min_seconds=min_seconds)
    return MatMulTiming(m, k, n, ms, backend="openvino", precision=precision)
