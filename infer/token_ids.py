"""Token ids checked against the model before anything runs: ids past the vocabulary, negative ids,
and inputs written as int32 for a graph that takes int64.

Unchecked, ONNX Runtime's embedding Gather fails on an id past its table with an `InvalidArgument`
that names a graph node, not the file, and silently wraps a negative id around to the table's end.
Int32 files fed as int64 pair two ids into one huge id. The table sizes come from the graph itself:
the initializer that each model input's Gather reads from.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import onnx

from common.errors import InputFileError

from runners.base import TensorMeta

# Ops that hand an input's values on unchanged between the graph input and its embedding Gather.
_PASS_THROUGH = {"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten"}
# Ops between a stored table and the Gather's data input (a quantized table is dequantized first).
_TABLE_PRODUCERS = {"DequantizeLinear", "Cast", "Identity"}
# No token input of any model holds an id this large; an int64 value past it is two int32s side by side.
_ID_LIMIT = 2 ** 31


def embedding_table_rows(model_path) -> dict[str, int]:
    """Model input name -> rows of the embedding table its Gather indexes (inputs with no table: absent)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # ONNX Runtime has loaded it already; a graph onnx cannot read is just not checked
        return {}
    graph = model.graph
    tables = {init.name: int(init.dims[0]) for init in graph.initializer if len(init.dims) == 2}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and len(attr.t.dims) == 2:
                    tables[node.output[0]] = int(attr.t.dims[0])
    producers = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers[name].append((node, position))

    def table_rows(name: str) -> Optional[int]:
        for _ in range(4):
            if name in tables or name not in producers or producers[name].op_type not in _TABLE_PRODUCERS:
                break
            name = producers[name].input[0]
        return tables.get(name)

    rows: dict[str, int] = {}
    for graph_input in graph.input:
        if graph_input.name in tables:
            continue  # an initializer listed among the inputs (old IR versions)
        frontier, seen = [graph_input.name], set()
        while frontier:
            name = frontier.pop()
            seen.add(name)
            for node, position in consumers[name]:
                if node.op_type == "Gather" and position == 1:
                    size = table_rows(node.input[0])
                    if size:
                        rows[graph_input.name] = min(size, rows.get(graph_input.name, size))
                elif node.op_type in _PASS_THROUGH and position == 0 and node.output[0] not in seen:
                    frontier.append(node.output[0])
    return rows


def written_as_int32(path: Path, meta: TensorMeta, table_rows: Optional[int] = None) -> bool:
    """Whether a file for an int64 model input was written as int32: it does not read as int64 ids
    (a size that is no multiple of 8, or values outside the table) but reads as int32 ids that are."""
    if np.dtype(meta.dtype) != np.int64:
        return False
    raw = Path(path).read_bytes()
    if not raw or len(raw) % 4:
        return False
    limit = table_rows or _ID_LIMIT
    if len(raw) % 8 == 0:
        as_int64 = np.frombuffer(raw, dtype="<i8")
        if as_int64.min() >= 0 and as_int64.max() < limit:
            return False  # plausible int64 ids (e.g. a sequence half as long): not ours to second-guess
    as_int32 = np.frombuffer(raw, dtype="<i4")
    return bool(as_int32.min() >= 0 and as_int32.max() < limit)


def int32_error(path: Path, meta: TensorMeta) -> InputFileError:
    return InputFileError(path, f"holds int32 values (4 bytes per token) but model input {meta.name!r} takes "
                                "int64 (8 bytes per token); write the input files as int64")


def check_token_ids(samples: Sequence, metas: Sequence[TensorMeta], table_rows: Mapping[str, int]) -> None:
    """Every integer input of every sample: no negative id, none past its embedding table, not int32."""
    for sample in samples:
        for path, meta in zip(sample.files, metas):
            if np.dtype(meta.dtype).kind not in "iu":
                continue
            values = np.fromfile(path, dtype=meta.dtype)
            rows = table_rows.get(meta.name)
            bad = (values < 0) | (values >= (rows or _ID_LIMIT))
            if not bad.any():
                continue
            if written_as_int32(path, meta, rows):
                raise int32_error(path, meta)
            position = int(np.argmax(bad))
            value = int(values[position])
            if rows is None:
                raise InputFileError(path, f"token {position} is {value}, not an id model input {meta.name!r} "
                                           f"can take (0..{_ID_LIMIT - 1})")
            raise InputFileError(path, f"token {position} is id {value}, outside model input {meta.name!r}'s "
                                       f"embedding table of {rows} rows (ids 0..{rows - 1})")
