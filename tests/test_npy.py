"""common.npy: one open per output, numpy's header layout by pattern, every other valid spelling by
numpy's parser, and the refusals (truncated data, objects, a failing check reads no data)."""
from __future__ import annotations

import numpy as np
import pytest

from common.npy import read_npy, read_npy_header


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(1, 4, 3), np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    np.arange(5, dtype=">i8"), np.float16(2.5) * np.ones((), dtype=np.float16), np.zeros((0, 9), dtype=np.float32)])
def test_round_trip_equals_numpy(tmp_path, array):
    path = tmp_path / "a.npy"
    np.save(path, array)
    shape, dtype, offset = read_npy_header(path)
    assert shape == array.shape and dtype == array.dtype and offset == path.stat().st_size - array.nbytes
    loaded = read_npy(path)
    assert loaded.dtype == array.dtype and np.array_equal(loaded, np.load(path))


def _write_with_header(path, header_text: str, data: bytes) -> None:
    header = header_text.encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


def test_a_header_spelled_otherwise_goes_to_numpys_parser(tmp_path):
    path = tmp_path / "other.npy"
    values = np.arange(6, dtype="<f4")
    _write_with_header(path, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", values.tobytes())
    assert read_npy_header(path).shape == (2, 3)
    assert np.array_equal(read_npy(path), values.reshape(2, 3))


def test_refusals(tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.ones((4, 9), dtype=np.float32))
    short.write_bytes(short.read_bytes()[:-8])
    with pytest.raises(EOFError, match="the header says 144"):
        read_npy(short)

    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        read_npy(objects)

    seen = []

    def refuse(header):
        seen.append(header.shape)
        raise LookupError("no")

    with pytest.raises(LookupError):
        read_npy(short, refuse)
    assert seen == [(4, 9)]

    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x03\x00" + b"\x00" * 20)
    with pytest.raises(ValueError, match="format version 3.0"):
        read_npy_header(bad)
