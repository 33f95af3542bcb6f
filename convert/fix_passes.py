"""Named graph passes that make an ONNX BERT safe for fp16 compilers (ATC), in the ORT fusion_base habit.

Each pass finds its pattern and returns the changes it would make (nothing is touched while
searching); `run_passes` applies them in one go per pass and reports how many it changed.
Patterns are structural (op types, constant values, data flow), never node names, so they
hold for any number of layers and for graphs from any exporter or after onnxsim.

Why: ATC with `--precision_mode=allow_fp32_to_fp16` (or force_fp16) stores constants as fp16.
The attention-mask fill value of current exporters is float32's minimum (-3.4028e38), or -inf
with SDPA; in fp16 that is -inf, and `(1 - mask) * -inf` gives NaN (0 * inf) on unmasked
positions, while `scores + -inf` can turn a row into NaN inside a fused softmax.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.errors import UserError

FP16_MAX = 65504.0
# BERT's own original fill value. exp(-10000) is exactly 0 in fp32 and fp16, so logits do not
# change; and unlike -65504 it leaves headroom, so `score + fill` cannot round to -inf in fp16.
DEFAULT_MASK_VALUE = -10000.0

FLOAT_TYPES = {1: np.float32, 11: np.float64}  # TensorProto.FLOAT, DOUBLE


# ---------------------------------------------------------------- graph index

class GraphIndex:
    """Who produces and who consumes each tensor, and where constant values live."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.initializers = {init.name: init for init in self.graph.initializer}
        self.producers = {}
        self.consumers: dict[str, list[tuple[object, int]]] = {}
        for node in self.graph.node:
            for out in node.output:
                self.producers[out] = node
            for i, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, i))
        self.graph_outputs = {value.name for value in self.graph.output}

    def constant_sources(self):
        """Every float constant in the graph: (tensor name, kind) with kind initializer/Constant/ConstantOfShape."""
        for name, init in self.initializers.items():
            if init.data_type in FLOAT_TYPES:
                yield name, "initializer"
        for node in self.graph.node:
            if node.op_type == "Constant" and _constant_attr(node) is not None:
                yield node.output[0], "Constant"
            elif node.op_type == "ConstantOfShape" and _attr(node, "value") is not None:
                if _attr(node, "value").t.data_type in FLOAT_TYPES:
                    yield node.output[0], "ConstantOfShape"

    def value(self, name) -> np.ndarray | None:
        """The float value of a constant tensor (for ConstantOfShape: its fill value), else None."""
        from onnx import numpy_helper

        if name in self.initializers:
            init = self.initializers[name]
            return numpy_helper.to_array(init) if init.data_type in FLOAT_TYPES else None
        node = self.producers.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            attr = _constant_attr(node)
            if attr is None:
                return None
            if attr.name == "value":
                return numpy_helper.to_array(attr.t) if attr.t.data_type in FLOAT_TYPES else None
            if attr.name == "value_float":
                return np.array(attr.f, dtype=np.float32)
            return np.array(list(attr.floats), dtype=np.float32)
        if node.op_type == "ConstantOfShape":
            attr = _attr(node, "value")
            if attr is not None and attr.t.data_type in FLOAT_TYPES:
                return numpy_helper.to_array(attr.t)
        return None


def _attr(node, name):
    for attr in node.attribute:
        if attr.name == name:
            return attr
    return None


def _constant_attr(node):
    """The Constant node's float payload attribute (value / value_float / value_floats), if any."""
    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type in FLOAT_TYPES:
            return attr
        if attr.name in ("value_float", "value_floats"):
            return attr
    return None


# ---------------------------------------------------------------- changes

@dataclass
class Change:
    """Give constant `tensor` the value `new` - for the listed consumers only, or everywhere (None)."""

    tensor: str
    kind: str
    old: np.ndarray
    new: np.ndarray
    consumers: list[tuple[object, int]] | None = None

    def describe(self) -> str:
        changed = self.old != self.new
        olds = np.unique(self.old[changed]) if changed.any() else np.unique(self.old)
        news = np.unique(self.new[changed]) if changed.any() else np.unique(self.new)
        return (f"{self.kind} {self.tensor!r} {list(self.old.shape) or 'scalar'}: "
                f"{_fmt(olds)} -> {_fmt(news)}")


def _fmt(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:.6g}" for v in values[:3])
    return shown + (", ..." if len(values) > 3 else "")


def apply_changes(index: GraphIndex, changes: list[Change]) -> None:
    """Apply changes: in place when every consumer should see the new value, else via a copy."""
    from onnx import helper, numpy_helper

    for change in changes:
        consumers = index.consumers.get(change.tensor, [])
        everywhere = (change.consumers is None or len(change.consumers) >= len(consumers)) \
            and change.tensor not in index.graph_outputs
        if everywhere:
            _set_value(index, change.tensor, change.new)
            continue
        copy_name = _unique_name(index, f"{change.tensor}_fp16safe")
        if change.kind == "ConstantOfShape":
            node = index.producers[change.tensor]
            clone = helper.make_node("ConstantOfShape", list(node.input), [copy_name],
                                     name=_unique_name(index, f"{node.name}_fp16safe"),
                                     value=numpy_helper.from_array(change.new.reshape(1)))
            position = list(index.graph.node).index(node) + 1
            index.graph.node.insert(position, clone)
            index.producers[copy_name] = clone
        else:
            index.graph.initializer.append(numpy_helper.from_array(change.new, copy_name))
            index.initializers[copy_name] = index.graph.initializer[-1]
        for node, i in change.consumers:
            node.input[i] = copy_name


def _set_value(index: GraphIndex, name: str, new: np.ndarray) -> None:
    from onnx import numpy_helper

    if name in index.initializers:
        index.initializers[name].CopyFrom(numpy_helper.from_array(new, name))
        return
    node = index.producers[name]
    if node.op_type == "ConstantOfShape":
        _attr(node, "value").t.CopyFrom(numpy_helper.from_array(new.reshape(1)))
        return
    attr = _constant_attr(node)
    if attr.name == "value":
        attr.t.CopyFrom(numpy_helper.from_array(new))
    elif attr.name == "value_float":
        attr.f = float(new)
    else:
        del attr.floats[:]
        attr.floats.extend(float(v) for v in new.ravel())


def _unique_name(index: GraphIndex, base: str) -> str:
    taken = set(index.initializers) | set(index.producers) | set(index.consumers) | {n.name for n in index.graph.node}
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def outside_fp16(values: np.ndarray) -> np.ndarray:
    """Mask of entries fp16 cannot hold (|v| > 65504, including inf); NaN is left alone."""
    with np.errstate(invalid="ignore"):
        return np.abs(values.astype(np.float64)) > FP16_MAX


# ---------------------------------------------------------------- passes

@dataclass
class PassReport:
    name: str
    changed: int
    lines: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class GraphPass:
    """Base: `find` returns changes without touching the graph; `summarize` describes them."""

    name = ""
    description = ""

    def find(self, index: GraphIndex, options: dict) -> tuple[list[Change], dict]:
        raise NotImplementedError

    def summarize(self, changes: list[Change], stats: dict) -> list[str]:
        return [change.describe() for change in changes]


class AttentionMaskFill(GraphPass):
    """The fill constant of the additive attention mask -> a value fp16 can hold.

    Pattern: from every Softmax, walk back along its input through elementwise and shape ops
    (the additive mask is built from the attention_mask input by Cast/Sub/Mul/Where/Expand...;
    the walk stops at MatMul, so it never reaches the scores or the weights). A constant met on
    that walk with entries outside fp16's range is the mask fill: those entries become
    `mask_value` with their sign. One shared mask (eager attention) is one change that covers
    every layer; a per-layer mask (SDPA) is one change per layer.
    """

    name = "attention_mask"
    description = "attention-mask fill constant (float32 min / -inf) -> fp16-safe value"

    WALK_THROUGH = {
        "Add", "Sub", "Mul", "Div", "Neg", "Where", "Cast", "Expand", "Unsqueeze", "Squeeze", "Reshape",
        "Slice", "Identity", "Concat", "Tile", "Transpose", "Flatten", "Min", "Max", "Clip",
        "Not", "And", "Or", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    }
    MAX_NODES_PER_SOFTMAX = 200

    def find(self, index, options):
        mask_value = float(options.get("mask_value", DEFAULT_MASK_VALUE))
        sources = dict(index.constant_sources())
        found: dict[str, list[tuple[object, int]]] = {}
        softmaxes = [node for node in index.graph.node if node.op_type == "Softmax"]
        covered = 0
        for softmax in softmaxes:
            hits = self._walk(index, softmax, sources)
            covered += bool(hits)
            for tensor, edge in hits:
                found.setdefault(tensor, [])
                if edge not in found[tensor]:
                    found[tensor].append(edge)
        changes = []
        for tensor, edges in found.items():
            old = index.value(tensor)
            new = old.copy()
            bad = outside_fp16(old)
            new[bad] = np.sign(old[bad]) * abs(mask_value)
            changes.append(Change(tensor, sources[tensor], old, new.astype(old.dtype), consumers=edges))
        return changes, {"softmax": len(softmaxes), "softmax_masked": covered}

    def _walk(self, index, softmax, sources):
        hits, seen, stack, steps = [], set(), [(softmax.input[0], (softmax, 0))], 0
        while stack and steps < self.MAX_NODES_PER_SOFTMAX:
            tensor, edge = stack.pop()
            if tensor in sources:
                value = index.value(tensor)
                if value is not None and outside_fp16(value).any():
                    hits.append((tensor, edge))
                continue
            node = index.producers.get(tensor)
            if node is None or id(node) in seen or node.op_type not in self.WALK_THROUGH:
                continue
            seen.add(id(node))
            steps += 1
            stack.extend((name, (node, i)) for i, name in enumerate(node.input) if name)
        return hits

    def summarize(self, changes, stats):
        lines = [change.describe() for change in changes]
        lines.append(f"{stats['softmax_masked']} of {stats['softmax']} Softmax nodes (attention layers) had "
                     "such a constant on their mask path")
        return lines


class ClampFp16Range(GraphPass):
    """Any other float constant outside fp16's range -> clamped to +-65504.

    ATC would store such a value as +-inf in fp16; the nearest finite value is what the fp16
    graph can mean. Run after `attention_mask`, so the mask keeps its own value. The equivalence
    check after the passes tells if a clamp changed the logits (it would for a real weight).
    """

    name = "clamp_fp16"
    description = "other float constants outside fp16 range -> clamped to +-65504"

    def find(self, index, options):
        changes = []
        for tensor, kind in index.constant_sources():
            value = index.value(tensor)
            if value is None or not outside_fp16(value).any():
                continue
            new = np.clip(value, -FP16_MAX, FP16_MAX).astype(value.dtype)
            changes.append(Change(tensor, kind, value, new))
        return changes, {}


# The order they run in: the mask first, so that the clamp never decides the mask's value.
PASSES: dict[str, GraphPass] = {p.name: p for p in (AttentionMaskFill(), ClampFp16Range())}


def resolve_passes(names) -> list[GraphPass]:
    """Pass objects for `names` (None: all), in registry order; an unknown name is an error."""
    if names is None:
        return list(PASSES.values())
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise UserError(f"unknown pass {', '.join(map(repr, unknown))}; known passes: {', '.join(PASSES)}")
    if not names:
        raise UserError(f"no passes given; known passes: {', '.join(PASSES)}")
    return [p for name, p in PASSES.items() if name in names]


def run_passes(model, names=None, *, mask_value: float = DEFAULT_MASK_VALUE) -> list[PassReport]:
    """Run the named passes on `model` in place; one report per pass."""
    if not (-FP16_MAX <= mask_value < 0) or not np.isfinite(mask_value):
        raise UserError(f"mask value {mask_value} must be negative and >= -65504 (fp16's range)")
    options = {"mask_value": mask_value}
    reports = []
    for graph_pass in resolve_passes(names):
        index = GraphIndex(model)  # fresh: the previous pass may have changed the graph
        changes, stats = graph_pass.find(index, options)
        apply_changes(index, changes)
        reports.append(PassReport(graph_pass.name, len(changes), graph_pass.summarize(changes, stats), stats))
    return reports


def out_of_fp16_constants(model) -> list[str]:
    """Names of float constants that fp16 cannot hold (for checks and tests)."""
    index = GraphIndex(model)
    return [name for name, _ in index.constant_sources()
            if (value := index.value(name)) is not None and outside_fp16(value).any()]
