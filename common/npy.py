"""The one reader of `.npy` headers: shape and dtype of a saved array without loading its data.

infer (is a kept output whole?) and postprocess (is an output what the index expects?) both
check a header before trusting a file; a header can claim any shape, so nothing is allocated here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_npy_header(path) -> tuple[tuple[int, ...], np.dtype, int]:
    """`(shape, dtype, data offset)` of a `.npy` file (format 1.0 or 2.0).

    Raises ValueError for another format version or a malformed header, OSError/EOFError when
    the file cannot be read."""
    with Path(path).open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
        return tuple(shape), np.dtype(dtype), handle.tell()
