"""Finding and reading the inference outputs (the logits) of a result folder.

Layouts read (what ais_bench and `python -m infer` write):
- `OUT/<ts>/<input>_<i>_0.npy` (or `.bin`): one file per sample, the plain layout;
- `OUT/<ts>/device<N>_<...>/<input>_<i>_0.npy`: a multi-device ais_bench run spreads the samples
  over one subfolder per device; they are gathered, each sample exactly once.

`.npy` files carry their dtype and shape; the header is checked against the expected
`(1, length, labels)` before any data is read, so a corrupt header cannot allocate gigabytes.
`.bin` files are raw: float32, or float16 when the OM's outputs are fp16. The dtype comes from
`--output_dtype`, or from the file size when it is exactly the float32 or the float16 size of the
sample; any other size, or a run that mixes the two, is an error rather than a guess.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from common.npy import read_npy
from common.errors import InputFileError

from .decode import Index, SampleRecord, expected_shape

# ais_bench names an output after the sample's first input file plus `_0` (the output number):
# input_ids_12_12_0.npy -> sample 12. Other output numbers (`_1`, ...) are not logits.
OUTPUT_NAME = re.compile(r"_(\d+)_0\.(npy|bin)$")
# A multi-device ais_bench run (`--device 0,1`) writes one subfolder per device: device0_<...>.
DEVICE_FOLDER = re.compile(r"^device(\d+)_")
BIN_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
# Kept for callers that read float32 .bin files directly.
BIN_DTYPE = BIN_DTYPES["float32"]


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir(), key=lambda path: path.name)  # one folder: by name is by path, and faster
    except OSError as err:
        raise InputFileError(folder, f"cannot list the folder ({err.strerror})") from None


def _device_folders(result_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), d) for d in _listing(result_dir)
             if (m := DEVICE_FOLDER.match(d.name)) and d.is_dir()]
    return [d for _, d in sorted(found, key=lambda pair: (pair[0], pair[1].name))]


def find_outputs(result_dir) -> dict[int, Path]:
    """Sample id -> output file (`*_<i>_0.npy` or `.bin`) in a result folder and its `device<N>_*` subfolders."""
    result_dir = Path(result_dir)
    if not result_dir.exists():
        raise InputFileError(result_dir, "result folder does not exist")
    if not result_dir.is_dir():
        raise InputFileError(result_dir, "is not a folder (expected the inference output folder OUT/<timestamp>)")
    found: dict[int, Path] = {}
    for folder in [result_dir, *_device_folders(result_dir)]:
        for path in _listing(folder):
            match = OUTPUT_NAME.search(path.name)
            if not match or not path.is_file():
                continue
            sample = int(match.group(1))
            if sample in found:
                first, second = (p.relative_to(result_dir) for p in (found[sample], path))
                raise InputFileError(result_dir, f"two outputs for sample {sample}: {first} and {second}"
                                                 " (each sample must be scored once)")
            found[sample] = path
    if not found:
        hint = ""
        # A common slip: passing OUT instead of OUT/<timestamp>.
        subdirs = [d for d in _listing(result_dir) if d.is_dir() and any(
            OUTPUT_NAME.search(f.name) for folder in [d, *_device_folders(d)] for f in _listing(folder))]
        if subdirs:
            hint = f"; did you mean {subdirs[-1]}?"
        raise InputFileError(result_dir, f"holds no outputs named <input>_<i>_0.npy or .bin{hint}")
    return found


def _shape_text(record: SampleRecord, num_labels: int) -> str:
    return f"(1, {record.length}, {num_labels}): sample {record.sample} has length {record.length} in the index, " \
           f"{num_labels} labels"


def bin_dtype(paths: Mapping[int, Path], index: Index, output_dtype: str | None = None) -> np.dtype | None:
    """The dtype of the run's `.bin` outputs (None when it has none), checked against every file's size.

    `output_dtype` ("float32" or "float16") says it; without it each file's size must be exactly
    the float32 or the float16 size of its sample, and all files must agree.
    """
    records = {rec.sample: rec for rec in index.samples}
    num_labels = index.header.num_labels
    chosen = BIN_DTYPES[output_dtype] if output_dtype else None
    first: Path | None = None
    for sample, path in sorted(paths.items()):
        if path.suffix != ".bin" or sample not in records:
            continue
        record = records[sample]
        values = record.length * num_labels
        size = path.stat().st_size
        fits = [name for name, dtype in BIN_DTYPES.items() if size == dtype.itemsize * values]
        if output_dtype:
            if size != chosen.itemsize * values:
                other = f"; it is the {fits[0]} size: --output_dtype {fits[0]}?" if fits else ""
                raise InputFileError(path, f"{size} bytes, expected {chosen.itemsize * values} "
                                           f"({output_dtype} {_shape_text(record, num_labels)}){other}")
            continue
        if not fits:
            raise InputFileError(path, f"{size} bytes, expected {4 * values} (float32) or {2 * values} (float16) "
                                       f"for {_shape_text(record, num_labels)}")
        if chosen is None:
            chosen, first = BIN_DTYPES[fits[0]], path
        elif BIN_DTYPES[fits[0]] != chosen:
            raise InputFileError(path, f"{size} bytes is a {fits[0]} output, but {first.name} is "
                                       f"{chosen.name}: pass --output_dtype float32|float16 to say which")
    return chosen


def _check_npy_header(path: Path, header, record: SampleRecord, num_labels: int) -> None:
    """Refuse a `.npy` whose header is not real numbers of the expected shape, before reading its data."""
    shape, dtype, _ = header
    if dtype.hasobject or not np.issubdtype(dtype, np.number):
        raise InputFileError(path, f"holds {dtype} values, expected float logits")
    if np.issubdtype(dtype, np.complexfloating):
        raise InputFileError(path, f"holds complex logits ({dtype}), expected real float logits")
    wanted = expected_shape(record, num_labels)
    if tuple(shape) != wanted:
        raise InputFileError(path, f"output shape {tuple(shape)}, expected {wanted} "
                                   f"(sample {record.sample}: length {record.length} in the index, "
                                   f"{num_labels} labels in its id2label)")


def load_output(path: Path, record: SampleRecord, num_labels: int, dtype: np.dtype | None = None) -> np.ndarray:
    """One sample's logits: `.npy` as saved, `.bin` raw `dtype` (default float32) shaped `(1, length, num_labels)`."""
    path = Path(path)
    if path.suffix == ".bin":
        dtype = BIN_DTYPE if dtype is None else np.dtype(dtype)
        expected = dtype.itemsize * record.length * num_labels
        size = path.stat().st_size
        if size != expected:
            raise InputFileError(path, f"{size} bytes, expected {expected} ({dtype.name} "
                                       f"{_shape_text(record, num_labels)})")
        try:
            return np.fromfile(path, dtype=dtype).reshape(1, record.length, num_labels)
        except OSError as err:
            raise InputFileError(path, f"cannot read ({err})") from None
    try:  # opened once: the header is checked before any data is read
        return read_npy(path, lambda header: _check_npy_header(path, header, record, num_labels))
    except (ValueError, OSError, EOFError) as err:
        raise InputFileError(path, f"not a readable .npy file ({err})") from None


class Outputs(Mapping):
    """Sample id -> logits, loaded one file at a time when decode asks (a run can be large)."""

    def __init__(self, paths: Mapping[int, Path], index: Index, dtype_of_bins: np.dtype | None = None):
        self._paths = dict(paths)
        self._records = {rec.sample: rec for rec in index.samples}
        self._num_labels = index.header.num_labels
        self._dtype_of_bins = dtype_of_bins

    def __getitem__(self, sample: int) -> np.ndarray:
        return load_output(self._paths[sample], self._records[sample], self._num_labels, self._dtype_of_bins)

    def __iter__(self) -> Iterator[int]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, sample) -> bool:
        return sample in self._paths

    def names(self) -> dict[int, str]:
        return {sample: str(path) for sample, path in self._paths.items()}
