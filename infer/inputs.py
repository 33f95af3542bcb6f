"""Reading ais_bench-style input folders: pairing files into samples, checking them, batching.

`--input "d/input_ids,d/attention_mask,d/token_type_ids"` names one folder per model input,
in the model's input order. Each folder holds one raw `.bin` per sample, shape (1, L), in the
model input's dtype (int64 for our exports). Files pair up across folders by sample id: the
trailing `_<digits>` groups of the file name (`input_ids_7_7.bin` -> `7_7`), which is what
pairing "by sorted position" means when every folder holds the same ids -- and we check that
they do, instead of silently pairing sample 7's ids with sample 8's mask.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from common.errors import InputFileError, UserError, ValidationError

from runners.base import TensorMeta
from .token_ids import _ID_LIMIT, check_token_ids, int32_error, written_as_int32

INPUT_SUFFIX = ".bin"
_TRAILING_ID = re.compile(r"(?:^|_)(\d+(?:_\d+)*)$")
# Input batches read during validation are kept for the run up to this many bytes (then read again).
PRELOAD_BYTES = 512 * 2 ** 20


def natural_key(text: str):
    """Sort key that orders `x_2` before `x_10` (ais_bench sorts input files the same way)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def sample_id_of(path: Path) -> str:
    """`input_ids_7_7.bin` -> `7_7`; a name without trailing digits is its own id."""
    stem = path.name[: -len(INPUT_SUFFIX)]
    match = _TRAILING_ID.search(stem)
    return match.group(1) if match else stem


def output_stem(path: Path) -> str:
    """ais_bench names outputs after the first input's file name up to its first dot."""
    return path.name.split(".")[0]


@dataclass(frozen=True)
class SampleFiles:
    """One sample: its id and its file in each input folder (model input order)."""

    index: int
    sample_id: str
    files: tuple[Path, ...]

    @property
    def stem(self) -> str:
        return output_stem(self.files[0])


@dataclass(frozen=True)
class Batch:
    """Samples run together at one length; `rows` >= len(samples), the rest is padding.

    `file_lengths`, `real_lengths`: set when the samples were regrouped by their real lengths
    (`infer.repack`): each sample's length on disk, which its output file keeps, and where its attention
    mask ends (`length` is then the batch's longest real length, shorter than some files)."""

    length: int
    samples: tuple[SampleFiles, ...]
    rows: int
    file_lengths: Optional[tuple[int, ...]] = None
    real_lengths: Optional[tuple[int, ...]] = None


def parse_input_arg(input_arg: str) -> list[Path]:
    """Split ais_bench's comma-separated `--input` into folders (blank entries are ignored)."""
    folders = [Path(p.strip()) for p in input_arg.split(",") if p.strip()]
    if not folders:
        raise UserError("--input names no folder")
    return folders


def list_bin_files(folder: Path) -> list[Path]:
    """The `.bin` files of one input folder in natural order; other files (temp files) are ignored."""
    if not folder.exists():
        raise InputFileError(folder, "input folder does not exist")
    if not folder.is_dir():
        raise InputFileError(folder, "is not a folder (--input takes one folder per model input)")
    # scandir: the entry types come with the listing, no stat per file (a folder holds one file per sample)
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if e.name.endswith(INPUT_SUFFIX) and not e.name.startswith(".") and e.is_file()]
    if not names:
        raise InputFileError(folder, f"input folder holds no {INPUT_SUFFIX} files")
    return [folder / name for name in sorted(names, key=natural_key)]


def pair_samples(folders: Sequence[Path]) -> list[SampleFiles]:
    """Pair the files of all folders into samples; every folder must hold the same sample ids."""
    by_folder: list[OrderedDict[str, Path]] = []
    for folder in folders:
        ids: OrderedDict[str, Path] = OrderedDict()
        for path in list_bin_files(folder):
            sid = sample_id_of(path)
            if sid in ids:
                raise InputFileError(path, f"sample id {sid!r} also used by {ids[sid].name} in the same folder")
            ids[sid] = path
        by_folder.append(ids)

    first, first_ids = folders[0], by_folder[0]
    for folder, ids in zip(folders[1:], by_folder[1:]):
        if ids.keys() == first_ids.keys():
            continue
        lacking = [s for s in first_ids if s not in ids]
        extra = [s for s in ids if s not in first_ids]
        if lacking:
            example = f"{folder} lacks sample id {lacking[0]!r} ({first_ids[lacking[0]].name}) that {first} has"
        else:
            example = f"{folder} has sample id {extra[0]!r} ({ids[extra[0]].name}) that {first} lacks"
        raise InputFileError(
            folder, f"input folders hold different sample ids ({len(first_ids)} in {first}, {len(ids)} here; "
                    f"{len(lacking) + len(extra)} differ): {example}")

    samples = [SampleFiles(i, sid, tuple(ids[sid] for ids in by_folder)) for i, sid in enumerate(first_ids)]
    _check_output_names(samples)
    return samples


def _check_output_names(samples: Sequence[SampleFiles]) -> None:
    seen: dict[str, Path] = {}
    for sample in samples:
        if sample.stem in seen:
            raise InputFileError(sample.files[0], f"gives the same output name {sample.stem!r} as "
                                                  f"{seen[sample.stem].name} (names are cut at the first dot)")
        seen[sample.stem] = sample.files[0]


def check_folders_match_model(folders: Sequence[Path], metas: Sequence[TensorMeta]) -> None:
    """One folder per model input, in the model's order (catches a swapped ids/mask pair by name)."""
    names = [m.name for m in metas]
    if len(folders) != len(metas):
        raise UserError(f"--input names {len(folders)} folder(s) but the model takes {len(metas)} inputs "
                        f"({', '.join(names)}); give one folder per input, in that order")
    for position, (folder, name) in enumerate(zip(folders, names)):
        # Folders are matched by position (as ais_bench does); a folder named after a *different*
        # input is almost surely a mistake that would feed e.g. the mask as token ids.
        if folder.name in names and folder.name != name:
            raise UserError(f"--input folder {position + 1} is {folder} but model input {position + 1} is "
                            f"{name!r}; list the folders in the model's input order: {', '.join(names)}")


def sample_lengths(samples: Sequence[SampleFiles], metas: Sequence[TensorMeta]) -> list[int]:
    """Each sample's sequence length L from its file sizes; any size that is not (1, L) is an error.

    Static graphs need L equal to the fixed sequence dim; dynamic ones any L >= 1, but the
    same L in every input of a sample.
    """
    lengths = []
    facts = [(meta, np.dtype(meta.dtype).itemsize, meta.fixed_dim(1), np.dtype(meta.dtype).name) for meta in metas]
    for sample in samples:
        length: Optional[int] = None
        for path, (meta, itemsize, fixed, dtype) in zip(sample.files, facts):
            size = os.stat(path).st_size
            if fixed is not None and size != fixed * itemsize:
                if written_as_int32(path, meta):
                    raise int32_error(path, meta)
                raise InputFileError(path, f"{size} bytes is not a (1, {fixed}) {dtype} tensor "
                                           f"({fixed * itemsize} bytes) as model input {meta.name!r} needs")
            if size == 0 or size % itemsize:
                if written_as_int32(path, meta):
                    raise int32_error(path, meta)
                raise InputFileError(path, f"{size} bytes is not a whole (1, L) {dtype} tensor "
                                           f"(a multiple of {itemsize} bytes) for model input {meta.name!r}")
            this = size // itemsize
            if length is None:
                length = this
            elif this != length:
                raise InputFileError(path, f"holds {this} tokens but {sample.files[0]} of the same sample "
                                           f"holds {length}")
        lengths.append(int(length))
    return lengths


def plan_batches(samples: Sequence[SampleFiles], lengths: Sequence[int], batchsize: int,
                 pad: bool = False) -> list[Batch]:
    """Group samples by length (length buckets give several), then cut each group into batches.

    With `pad` (a graph that fixes the batch) every batch has exactly `batchsize` rows and a
    group's short last batch is padded (rows beyond `len(samples)`). Without it a batch has only
    its real rows: memory follows the samples present, not `--batchsize`.
    """
    groups: OrderedDict[int, list[SampleFiles]] = OrderedDict()
    for sample, length in sorted(zip(samples, lengths), key=lambda pair: pair[1]):
        groups.setdefault(length, []).append(sample)
    batches = []
    for length, group in groups.items():
        for start in range(0, len(group), batchsize):
            chunk = tuple(group[start:start + batchsize])
            batches.append(Batch(length, chunk, batchsize if pad else len(chunk)))
    return batches


def _read_exactly(path: Path, buffer: memoryview) -> None:
    """Fill `buffer` with the file's bytes: one open, one readv (more only on a short read), one close."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            done = 0
            while done < len(buffer):
                got = os.readv(fd, [buffer[done:]])
                if got == 0:
                    break
                done += got
        finally:
            os.close(fd)
    except OSError as err:
        raise InputFileError(path, f"cannot read it ({err.strerror or type(err).__name__})") from None
    if done != len(buffer):  # its size was checked before: it changed while this run read it
        raise InputFileError(path, f"holds {done} bytes now, {len(buffer)} when the run started")


def load_batch(batch: Batch, metas: Sequence[TensorMeta]) -> dict[str, np.ndarray]:
    """The feed dict of one batch; padded rows repeat the last real sample (real data, never NaN).

    Each input is one preallocated (rows, length) array that every sample's file is read straight
    into (no per-file array, no copy)."""
    feed = {}
    for position, meta in enumerate(metas):
        array = np.empty((batch.rows, batch.length), dtype=meta.dtype)
        row_bytes = batch.length * array.itemsize
        view = memoryview(array).cast("B")
        for row, sample in enumerate(batch.samples):
            _read_exactly(sample.files[position], view[row * row_bytes:(row + 1) * row_bytes])
        array[len(batch.samples):] = array[len(batch.samples) - 1]
        feed[meta.name] = array
    return feed


def check_batch_token_ids(batch: Batch, feed: Mapping[str, np.ndarray], metas: Sequence[TensorMeta],
                          table_rows: Mapping[str, int]) -> None:
    """`check_token_ids` on a loaded batch: one vectorised test per input; only a batch that fails it
    is checked file by file, for the error that names the file."""
    for meta in metas:
        if np.dtype(meta.dtype).kind not in "iu":
            continue
        values = feed[meta.name]
        if values.size and (values.min() < 0 or values.max() >= (table_rows.get(meta.name) or _ID_LIMIT)):
            check_token_ids(batch.samples, metas, table_rows)


def load_checked_batches(batches: Sequence[Batch], metas: Sequence[TensorMeta], table_rows: Mapping[str, int],
                         keep_bytes: int = PRELOAD_BYTES) -> list[Optional[dict]]:
    """Read and check every batch before anything runs; the feeds are kept for the run while they fit in
    `keep_bytes` (the rest, None, are read again when their turn comes: a data set larger than memory)."""
    kept, size = [], 0
    for batch in batches:
        feed = load_batch(batch, metas)
        check_batch_token_ids(batch, feed, metas, table_rows)
        size += sum(array.nbytes for array in feed.values())
        kept.append(feed if size <= keep_bytes else None)
    return kept


def zero_feed(metas: Sequence[TensorMeta], batchsize: int, seq_len: int) -> dict[str, np.ndarray]:
    """Zero inputs of the model's shape: dynamic dim 0 -> batchsize, any other dynamic dim -> seq_len."""
    feed = {}
    for meta in metas:
        shape = []
        for axis, dim in enumerate(meta.shape):
            if TensorMeta.is_static(dim):
                shape.append(dim)
            else:
                shape.append(batchsize if axis == 0 else seq_len)
        feed[meta.name] = np.zeros(shape, dtype=meta.dtype)
    return feed


def model_batchsize(metas: Sequence[TensorMeta], requested: Optional[int]) -> int:
    """The rows per run: the graph's fixed batch if it has one (and --batchsize must agree), else --batchsize or 1."""
    fixed = {m.fixed_dim(0) for m in metas} - {None}
    if len(fixed) > 1:
        raise ValidationError(f"model inputs fix different batch sizes {sorted(fixed)}")
    if fixed:
        (static,) = fixed
        if requested is not None and requested != static:
            raise UserError(f"--batchsize {requested} disagrees with the model's fixed batch of {static}; "
                            f"use --batchsize {static} or a dynamic-batch model")
        return static
    return requested or 1


def fixes_batch(metas: Sequence[TensorMeta]) -> bool:
    """Whether the graph fixes dim 0 (then every run needs exactly that many rows)."""
    return any(m.fixed_dim(0) is not None for m in metas)
