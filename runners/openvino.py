"""OpenVINO runner (CPU): an ONNX file or an OpenVINO IR (.xml + .bin), f32 or bf16, dynamic shapes.

Precision: OpenVINO runs f32 graphs in bf16 by itself on a CPU with native BF16, so the precision is
always asked for explicitly (`INFERENCE_PRECISION_HINT`): `f32` really is f32, `bf16` is refused on a
CPU without it (`common.cpu`), `auto` is bf16 where the CPU has it and f32 with a note elsewhere. An
INT8 IR (NNCF) keeps its int8 layers; the hint then decides the precision of the layers left float.

Shapes: the model's own, dynamic for our exports. A trial here found dynamic shapes faster than static
or length-bucketed ones (static took 0.76-0.79x the throughput), so nothing is reshaped.

Streams: by default one synchronous infer request with the LATENCY hint (one stream, all threads on
one batch): the lowest latency for one batch. `streams=N` (N > 1) compiles N streams that share the
threads (THROUGHPUT hint) and `infer_many` keeps N requests in flight: no thread waits for another
inside a small op, and the caller decodes one batch while the next runs. Measured here (2 cores, NNCF
INT8 model, 500 CoNLL sentences): 2 streams ran 1225 sentences/s against 1113 for one stream (model
calls only); f32 gained nothing (425 vs 413). The model is read and compiled in `activate()`.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import numpy as np

from common.cpu import CpuCapabilities, detect, resolve_precision
from common.errors import InputFileError, ToolMissingError, UserError
from runners.base import BaseRunner, TensorMeta
from runners.onnxrt import physical_cores

OPENVINO_REQUIREMENT = "openvino==2026.4.1"
MODEL_SUFFIXES = (".onnx", ".xml")


def import_openvino():
    """The openvino module, or a one-line ToolMissingError saying what to install."""
    try:
        # imported on demand: OpenVINO takes ~1 s to import and only this backend needs it
        import openvino
    except ImportError:
        raise ToolMissingError(f"the OpenVINO backend needs the openvino package: pip install {OPENVINO_REQUIREMENT}") \
            from None
    return openvino


def _first_reason(err: Exception) -> str:
    """OpenVINO's messages are 'Exception from <file>:<line>' / 'Check ... failed at ...' lines, then the reason."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Exception from", "Check '", "FrontEnd API failed"))]
    return (reasons or lines or [type(err).__name__])[-1]


def _check_ir_files(xml_path: Path) -> None:
    """An IR is an XML `<net>` document plus its weights beside it; say which part is wrong before OpenVINO does."""
    bin_path = xml_path.with_suffix(".bin")
    if not bin_path.is_file():
        raise InputFileError(bin_path, f"missing: the IR {xml_path.name} needs its weights file beside it")
    try:
        root_tag = next(ElementTree.iterparse(xml_path, events=("start",)))[1].tag
    except (ElementTree.ParseError, StopIteration) as err:
        raise InputFileError(xml_path, f"not an OpenVINO IR (not valid XML: {err})") from None
    if root_tag != "net":
        raise InputFileError(xml_path, f"not an OpenVINO IR (the XML root is <{root_tag}>, not <net>)")


def read_model(model_path):
    """An `openvino.Model` from a .onnx file or an IR .xml (+ .bin); InputFileError naming the file if it is bad."""
    ov = import_openvino()
    # deferred with openvino itself. The explicit frontend: `Core.read_model` tries every frontend on a
    # bad file, and TensorFlow's then prints parse errors straight to stderr
    from openvino.frontend import FrontEndManager

    path = Path(model_path)
    if path.suffix not in MODEL_SUFFIXES:
        raise InputFileError(path, f"not a model OpenVINO reads here (use {' or '.join(MODEL_SUFFIXES)})")
    if not path.is_file():
        raise InputFileError(path, "model file does not exist")
    if path.suffix == ".xml":
        _check_ir_files(path)
    frontend = FrontEndManager().load_by_framework("onnx" if path.suffix == ".onnx" else "ir")
    try:
        model = frontend.convert(frontend.load(str(path)))
    except Exception as err:  # OpenVINO raises RuntimeError / GeneralFailure for a corrupt file
        what = path.with_suffix(".bin") if "bin file" in str(err) else path
        raise InputFileError(what, f"OpenVINO cannot read it ({_first_reason(err)})") from None
    assert isinstance(model, ov.Model)
    return model


class CompiledModelFromPath:
    """Lazy loader: calling it reads `model_path` and compiles it for the CPU at the resolved precision.

    `precision`: auto / f32 / bf16 (see the module docstring); `threads`: inference threads (default:
    one per physical core); `capabilities`: the CPU's (default: detected, with OpenVINO's own), injectable
    so a test can play a CPU without BF16; `config`: extra compile properties."""

    def __init__(self, model_path, precision: str = "auto", threads: Optional[int] = None,
                 capabilities: Optional[CpuCapabilities] = None, config: Optional[Mapping[str, str]] = None,
                 streams: int = 1):
        if streams < 1:
            raise UserError(f"--streams {streams}: give at least 1")
        self.model_path = Path(model_path)
        self.streams = streams
        self.requested_precision = precision
        self.threads = threads
        self.capabilities = capabilities
        self.config = dict(config or {})
        self.precision: Optional[str] = None  # what was compiled
        # the model's own output names, read before compiling: the compiled ports may carry the merged
        # names of fused tensors (e.g. {'logits', '/classifier/MatMul_output_0'}, NNCF's INT8 IR of a
        # small model), and `get_any_name()` then returns any one of them
        self.output_names: Optional[list[str]] = None
        self.note: Optional[str] = None  # one line when `auto` fell back to f32

    def __call__(self):
        ov = import_openvino()
        core = ov.Core()
        capabilities = self.capabilities or detect(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self.precision, self.note = resolve_precision(self.requested_precision, capabilities)
        model = read_model(self.model_path)
        self.output_names = [port.get_any_name() for port in model.outputs]
        properties = {
            "INFERENCE_PRECISION_HINT": self.precision,
            # one stream: every thread works on the one batch in flight; more: requests in flight share them
            "PERFORMANCE_HINT": "LATENCY" if self.streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": str(self.streams),
            # one thread per physical core: hyper-threads only fight over the same FMA units in GEMMs
            "INFERENCE_NUM_THREADS": str(self.threads or physical_cores()),
            **self.config,
        }
        try:
            return core.compile_model(model, "CPU", properties)
        except Exception as err:  # a graph the CPU plugin cannot compile, or a bad property in `config`
            raise InputFileError(self.model_path, f"OpenVINO cannot compile it ({_first_reason(err)})") from None


def _meta(port, name: Optional[str] = None) -> TensorMeta:
    try:
        dtype = np.dtype(port.get_element_type().to_dtype())
    except Exception:  # an element type numpy has no name for (e.g. bf16 model outputs)
        raise UserError(f"model tensor {port.get_any_name()!r} has type {port.get_element_type()}, "
                        "which this runner does not support") from None
    shape = tuple(dim.get_length() if dim.is_static else None for dim in port.get_partial_shape())
    return TensorMeta(name or port.get_any_name(), dtype, shape)


class OpenVinoRunner(BaseRunner):
    """Runs a model with OpenVINO on the CPU; `compiled` is a lazy loader or a ready `CompiledModel`."""

    def __init__(self, compiled, name: Optional[str] = None):
        super().__init__(name or "openvino-runner")
        self._compiled_arg = compiled
        self.compiled = None
        self.request = None

    @classmethod
    def from_path(cls, model_path, *, precision: str = "auto", threads: Optional[int] = None,
                  capabilities: Optional[CpuCapabilities] = None,
                  config: Optional[Mapping[str, str]] = None, streams: int = 1) -> "OpenVinoRunner":
        loader = CompiledModelFromPath(model_path, precision=precision, threads=threads,
                                       capabilities=capabilities, config=config, streams=streams)
        return cls(loader, name=f"openvino[{Path(model_path).name}]")

    def activate_impl(self) -> None:
        self.compiled = self._compiled_arg() if callable(self._compiled_arg) else self._compiled_arg
        self.request = self.compiled.create_infer_request()
        ports = list(self.compiled.outputs)
        declared = getattr(self._compiled_arg, "output_names", None)  # the loader's; a ready model has none
        names = declared if declared and len(declared) == len(ports) else [port.get_any_name() for port in ports]
        self._outputs = list(zip(names, ports))

    @property
    def precision(self) -> Optional[str]:
        """The inference precision OpenVINO compiled with (f32 / bf16), read back from the compiled model."""
        if self.compiled is None:
            return None
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    @property
    def note(self) -> Optional[str]:
        """The loader's one-line note (e.g. no BF16 here, so f32), else None."""
        return getattr(self._compiled_arg, "note", None)

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return [_meta(port) for port in self.compiled.inputs]

    def get_output_metadata_impl(self) -> list[TensorMeta]:
        return [_meta(port, name) for name, port in self._outputs]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_inputs: OpenVINO reads the numpy buffers in place; outputs are copied (the request is reused)
        results = self.request.infer(dict(feed_dict), share_inputs=True)
        return self._copy_outputs(lambda port: results[port], copy=False)  # `infer` returned copies

    def _copy_outputs(self, tensor_of, copy: bool = True) -> dict[str, np.ndarray]:
        outputs = {}
        for name, port in self._outputs:
            array = np.array(tensor_of(port), copy=copy)
            # float outputs as float32 whatever the inference precision (the logits are scored in f32)
            outputs[name] = array.astype(np.float32, copy=False) if np.issubdtype(array.dtype, np.floating) else array
        return outputs

    @property
    def streams(self) -> int:
        return getattr(self._compiled_arg, "streams", 1)

    def infer_many(self, feeds: Iterable[Mapping[str, np.ndarray]],
                   check_inputs: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """With streams, up to `streams` requests in flight; outputs still come in the feeds' order.

        Requests are waited on and read in this thread, in the order they were started: no Python
        callback runs on OpenVINO's threads (a garbage collection there may free another OpenVINO
        object from inside OpenVINO's own executor, which aborts the process). Runs overlap, so no
        per-call time goes to `inference_times`."""
        if self.streams == 1:
            yield from super().infer_many(feeds, check_inputs=check_inputs)
            return
        self._require_active("infer_many()")
        requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        in_flight: deque = deque()  # (request, feed): a feed is kept alive while OpenVINO reads it in place
        try:
            for index, feed in enumerate(feeds):
                if check_inputs:
                    self.check_feed(feed)
                if len(in_flight) == len(requests):  # the oldest request is the one to reuse
                    yield self._wait_for(in_flight.popleft()[0])
                request = requests[index % len(requests)]
                feed = dict(feed)
                request.start_async(feed, share_inputs=True)
                in_flight.append((request, feed))
            while in_flight:
                yield self._wait_for(in_flight.popleft()[0])
        finally:
            for request, _ in in_flight:  # a caller that stops early: no request may still read a freed feed
                request.wait()

    def _wait_for(self, request) -> dict[str, np.ndarray]:
        request.wait()
        return self._copy_outputs(lambda port: request.get_tensor(port).data)

    def deactivate_impl(self) -> None:
        self.request = None
        self.compiled = None
