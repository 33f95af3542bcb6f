"""The one reader of `.npy` files: the header (shape and dtype, without loading the data), and the
array after its header was checked.

infer (is a kept output whole?) and postprocess (is an output what the index expects?) both
check a header before trusting a file; a header can claim any shape, so nothing is allocated
until the caller has checked it. Scoring reads thousands of small outputs: each is opened once,
and numpy's own header layout is parsed by a pattern (numpy's parser, `ast.literal_eval`, costs
more than reading the data); any other spelling of a valid header goes to numpy's parser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# what numpy's writer produces, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (1, 512, 9), }
_NUMPY_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), 'shape': \(((?:\d+, )*\d*,?)\), \}\s*")


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    fortran_order: bool = False

    def __iter__(self):  # (shape, dtype, data offset), as callers unpack it
        return iter((self.shape, self.dtype, self.data_offset))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _read_header(handle: BinaryIO) -> NpyHeader:
    version = np.lib.format.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    start = handle.tell()
    size_bytes = 2 if version == (1, 0) else 4
    raw = handle.read(size_bytes)
    if len(raw) != size_bytes:
        raise EOFError("the header length is cut off")
    text = handle.read(int.from_bytes(raw, "little")).decode("latin1")
    found = _NUMPY_HEADER.fullmatch(text)
    if found:
        shape = tuple(int(n) for n in found.group(3).replace(",", " ").split())
        return NpyHeader(shape, np.dtype(found.group(1)), handle.tell(), found.group(2) == "True")
    handle.seek(start)  # any other valid spelling: numpy's own parser decides
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(handle)
    return NpyHeader(tuple(shape), np.dtype(dtype), handle.tell(), bool(fortran_order))


def read_npy_header(path) -> NpyHeader:
    """The header of a `.npy` file (format 1.0 or 2.0); unpacks as `(shape, dtype, data offset)`.

    Raises ValueError for another format version or a malformed header, OSError/EOFError when
    the file cannot be read."""
    with Path(path).open("rb") as handle:
        return _read_header(handle)


def read_npy(path, check=None) -> np.ndarray:
    """The array of a `.npy` file, opened once: `check(header)` runs before any data is read (it
    raises to refuse the file). Object arrays are refused (ValueError), as `np.load(allow_pickle=False)`
    does; a file shorter than its header says is an EOFError."""
    with Path(path).open("rb") as handle:
        header = _read_header(handle)
        if check is not None:
            check(header)
        if header.dtype.hasobject:
            raise ValueError("holds Python objects (pickled), which are not read")
        data = handle.read(header.nbytes)
    if len(data) != header.nbytes:
        raise EOFError(f"{len(data)} bytes of data, the header says {header.nbytes}")
    return np.frombuffer(data, dtype=header.dtype).reshape(header.shape, order="F" if header.fortran_order else "C")
