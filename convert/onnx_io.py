"""Reading and writing ONNX files: atomic staging, external data for >2 GB models, graph facts.

Every command in this package writes its model through `staged_output`: the model (and its
external-data file, if any) is written and checked in a temporary folder beside the target,
and only moved onto the final name once the check has passed. A failed check, an error or
Ctrl-C leaves nothing under the final name.
"""
from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from common.atomic import staging_dir
from common.errors import InputFileError, ValidationError

# protobuf cannot serialise a message over 2 GiB; stay well below it before switching to
# external data (the graph itself and tensor headers add to the raw weight bytes).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def require_file(path, what: str = "ONNX model") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, f"{what} does not exist")
    if not path.is_file():
        raise InputFileError(path, f"{what} is not a file")
    return path


def load(path, load_external_data: bool = True):
    """Load an ONNX model; a file that is not ONNX is an InputFileError, not a protobuf traceback."""
    import onnx

    path = require_file(path)
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as err:  # protobuf DecodeError, missing external data, ...
        raise InputFileError(path, f"cannot be read as an ONNX model ({type(err).__name__}: {err})") from None
    # protobuf parses many non-ONNX byte strings into an empty message instead of failing
    if not model.graph.node:
        raise InputFileError(path, "holds no graph (no nodes): not an ONNX model")
    return model


def check_model(path) -> None:
    """onnx.checker on a file (path-based, so models with external data work); failures are typed."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        raise ValidationError(f"{Path(path).name} fails the ONNX checker: {first_line(err)}") from None


def first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def tensor_bytes(model) -> int:
    """Bytes held by initializers and Constant nodes (what decides the 2 GiB protobuf limit)."""
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) or _typed_bytes(init)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                total += len(attr.t.raw_data) or _typed_bytes(attr.t)
    return total


def _typed_bytes(tensor) -> int:
    return 4 * (len(tensor.float_data) + len(tensor.int32_data)) + 8 * (len(tensor.int64_data) + len(tensor.double_data))


def save(model, path) -> list[Path]:
    """Write `model` to `path`, as one file when it fits protobuf, else with `<name>.data` beside it.

    Returns every file written (the model first).
    """
    import onnx

    path = Path(path)
    if tensor_bytes(model) < EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, str(path))
        return [path]
    data_name = path.name + ".data"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    return [path, path.parent / data_name]


@contextmanager
def staged_output(final_path):
    """Yield a staging path in a temporary folder beside `final_path`; on success move it in place.

    External-data files written next to the staged model move with it (their names are
    relative to the model's folder, so the references stay valid). The data file moves first,
    so the model file never appears before its weights.
    """
    final_path = Path(final_path)
    with staging_dir(final_path) as stage:
        staged = stage / final_path.name
        yield staged
        if not staged.is_file():
            raise RuntimeError(f"nothing was written to {staged}")
        extras = sorted(p for p in stage.iterdir() if p != staged)
        for extra in extras:
            os.replace(extra, final_path.parent / extra.name)
        os.replace(staged, final_path)


def op_counts(model) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


def graph_inputs(model) -> list[tuple[str, list]]:
    """(name, dims) of the real inputs (not initializers); a dim is an int or a symbolic name."""
    initializers = {init.name for init in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            else:
                dims.append(dim.dim_param or "?")
        out.append((value.name, dims))
    return out


def graph_outputs(model) -> list[tuple[str, list]]:
    out = []
    for value in model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in value.type.tensor_type.shape.dim]
        out.append((value.name, dims))
    return out


def metadata(model) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def set_metadata(model, values: dict[str, str]) -> None:
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value


def format_op_table(before: Counter, after: Counter) -> str:
    """A before/after op-count table, as onnxsim prints it."""
    ops = sorted(set(before) | set(after))
    width = max([len(op) for op in ops] + [8])
    lines = [f"{'op':<{width}}  {'before':>7}  {'after':>7}"]
    for op in ops:
        mark = "" if before[op] == after[op] else "  *"
        lines.append(f"{op:<{width}}  {before[op]:>7}  {after[op]:>7}{mark}")
    lines.append(f"{'total':<{width}}  {sum(before.values()):>7}  {sum(after.values()):>7}")
    return "\n".join(lines)
