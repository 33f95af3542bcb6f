"""ONNX Runtime runner: CPU by default, CUDA when this onnxruntime build has it.

The session is built by a lazy loader (`SessionFromOnnx`), called only in `activate()`,
so constructing a runner is free and importing this module loads no model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from common.errors import InputFileError, ValidationError

from .base import BaseRunner, TensorMeta

# ORT type strings -> numpy dtypes for the tensor types a token classifier can take or give.
_ORT_DTYPES = {
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_, "tensor(float)": np.float32,
    "tensor(float16)": np.float16, "tensor(double)": np.float64,
}


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's FPUs, so count cores).

    Reads the Linux CPU topology for the CPUs in our affinity mask; falls back to the
    logical count elsewhere.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


# ORT's graph optimisation levels by the names the CLIs take. "disable" runs the graph as written:
# what the conversion checks compare (a rewrite by ORT could hide, or cause, a difference).
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def providers_for_device(device: int = 0, available: Optional[Sequence[str]] = None) -> list:
    """ais_bench's `--device N` as ORT providers: CUDA device N when this build has CUDA, else CPU."""
    if available is None:
        import onnxruntime as ort  # heavy (a second to import): only when a session is really built

        available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": int(device)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class SessionFromOnnx:
    """Lazy loader: calling it builds an `onnxruntime.InferenceSession` for `model_path`."""

    def __init__(self, model_path, providers: Optional[Sequence] = None, intra_op_threads: Optional[int] = None,
                 config: Optional[Mapping[str, str]] = None, graph_optimization: str = "all",
                 log_severity_level: Optional[int] = None):
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(f"graph_optimization {graph_optimization!r}: use one of {GRAPH_OPTIMIZATION_LEVELS}")
        self.model_path = Path(model_path)
        self.graph_optimization = graph_optimization
        # 3 (errors only) keeps ORT's load-time notes off a command's stderr; None leaves ORT's default
        self.log_severity_level = log_severity_level
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.intra_op_threads = intra_op_threads
        # extra session config entries (`SessionOptions.add_session_config_entry`), e.g.
        # {"session.intra_op.allow_spinning": "0"} when the cores are shared with other work
        self.config = dict(config or {})

    def session_options(self):
        import onnxruntime as ort  # heavy (a second to import): only when a session is really built

        options = ort.SessionOptions()
        # One thread per physical core: hyper-threads only fight over the same FMA units in GEMMs.
        options.intra_op_num_threads = self.intra_op_threads or physical_cores()
        # A BERT graph is one chain of ops; parallel (inter-op) execution only adds scheduling cost.
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        if self.log_severity_level is not None:
            options.log_severity_level = self.log_severity_level
        # The CPU arena keeps freed blocks for the next run: with length-bucketed (dynamic) shapes each
        # batch then reuses the previous batch's buffers instead of asking malloc again. It is ORT's
        # default; said here because the throughput depends on it.
        options.enable_cpu_mem_arena = True
        # Denormal floats (e.g. exp() of large negative attention scores) take a slow path on x86;
        # flushing them to zero changes nothing a logit can show and gave ~3% on the benchmark.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        for key, value in self.config.items():
            options.add_session_config_entry(key, str(value))
        return options

    def __call__(self):
        import onnxruntime as ort  # heavy (a second to import): only when a session is really built

        if not self.model_path.is_file():
            raise InputFileError(self.model_path, "model file does not exist")
        try:
            return ort.InferenceSession(str(self.model_path), sess_options=self.session_options(),
                                        providers=self.providers)
        except Exception as err:  # ORT raises its own exception types for a corrupt/unsupported graph
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputFileError(self.model_path, f"ONNX Runtime cannot load it ({first_line})") from None


def _metas(args) -> list[TensorMeta]:
    out = []
    for arg in args:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise ValidationError(f"model tensor {arg.name!r} has type {arg.type}, which this runner does not support")
        shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
        out.append(TensorMeta(arg.name, np.dtype(dtype), shape))
    return out


class OrtRunner(BaseRunner):
    """Runs an ONNX model with ONNX Runtime; `session` is a lazy loader or a ready session."""

    def __init__(self, session, name: Optional[str] = None, io_binding: bool = False):
        super().__init__(name or "onnxrt-runner")
        self._session_arg = session
        self.session = None
        # IO binding hands ORT the numpy buffers directly and returns its own output buffers; on the
        # CPU provider plain `run` already wraps contiguous numpy inputs without copying, so this
        # mainly matters for device providers (CUDA), where inputs otherwise cross per call.
        self.io_binding = io_binding

    @classmethod
    def from_path(cls, model_path, *, device: int = 0, providers: Optional[Sequence] = None,
                  intra_op_threads: Optional[int] = None, io_binding: bool = False,
                  config: Optional[Mapping[str, str]] = None, graph_optimization: str = "all",
                  log_severity_level: Optional[int] = None) -> "OrtRunner":
        """A runner for the graph at `model_path`; `graph_optimization` is one of GRAPH_OPTIMIZATION_LEVELS."""
        providers = providers or providers_for_device(device)
        loader = SessionFromOnnx(model_path, providers=providers, intra_op_threads=intra_op_threads, config=config,
                                 graph_optimization=graph_optimization, log_severity_level=log_severity_level)
        return cls(loader, name=f"onnxrt[{Path(model_path).name}]", io_binding=io_binding)

    def activate_impl(self) -> None:
        self.session = self._session_arg() if callable(self._session_arg) else self._session_arg
        self._output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers()) if self.session is not None else []

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return _metas(self.session.get_inputs())

    def get_output_metadata_impl(self) -> list[TensorMeta]:
        return _metas(self.session.get_outputs())

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names
        if self.io_binding:
            binding = self.session.io_binding()
            for name, array in feed_dict.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            for name in names:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            return dict(zip(names, binding.copy_outputs_to_cpu()))
        return dict(zip(names, self.session.run(names, dict(feed_dict))))

    def deactivate_impl(self) -> None:
        self.session = None
