"""Where results go (ais_bench's layout), how a rerun finds and resumes them, and atomic writes.

Layout: `OUT/<YYYY_mm_dd-HH_MM_SS>/<first input's file name up to its first dot>_<output index>.npy|bin`
and `OUT/<YYYY_mm_dd-HH_MM_SS>_summary.json` beside the folder (with `--output_dirname NAME`,
`OUT/NAME/` and `OUT/NAME_summary.json`, as ais_bench does).

Resume: each result folder holds a small manifest, `.infer_manifest.json`, written when the
folder is created (hidden, so `ls` and the metric's `_<i>_0.npy` pattern see only results).
It records the model file (resolved path, size, mtime in ns: what make/rsync trust, and free
for a multi-GB model, unlike a hash), the resolved input folders, the output format and the
number of model outputs. A rerun into the same OUT with a matching manifest reuses the latest
such folder and only computes samples whose outputs are missing or not the size their input
implies. Every output is written to a temporary name and renamed, so an interrupted run leaves
whole files or none (plus, after a kill -9, a hidden temporary that the next run removes).

Concurrency: a new folder is made with one `os.mkdir` (atomic: of two runs started in the same
second one gets `<ts>`, the other `<ts>_1`), and a run holds an exclusive non-blocking `flock` on
`.infer.lock` inside its folder from the moment it claims it until it ends, so a second run that
would resume a folder in use stops with a one-line error instead of writing into it too.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from common.atomic import write_into_locked_folder, write_json
from common.npy import read_npy_header
from common.errors import InputFileError, UserError

TIMESTAMP_FORMAT = "%Y_%m_%d-%H_%M_%S"
# `<ts>` or `<ts>_<n>` (n-th run that started in the same second)
_TIMESTAMP_RE = re.compile(r"^(\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2})(?:_(\d+))?$")
MANIFEST_NAME = ".infer_manifest.json"
LOCK_NAME = ".infer.lock"
# What the last run into the folder did (computed / reused counts, its wall time), for run summaries.
RUN_RECORD_NAME = ".infer_run.json"
MANIFEST_FORMAT = "infer-manifest/1"
# What must agree for a folder to be resumed (the rest of the manifest is informational).
_MATCH_KEYS = ("format", "model", "inputs", "outfmt")
PURE_INFER_NAME = "pure_infer_data"  # ais_bench's output name when it runs on zero inputs


def model_fingerprint(model_path) -> dict:
    path = Path(model_path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def make_manifest(*, model_path, input_dirs: Sequence, outfmt: str, num_outputs: Optional[int] = None) -> dict:
    return {"format": MANIFEST_FORMAT, "model": model_fingerprint(model_path),
            "inputs": [str(Path(d).resolve()) for d in input_dirs], "outfmt": outfmt.upper(),
            "num_outputs": num_outputs}


def manifest_matches(found: Optional[dict], wanted: dict) -> bool:
    return found is not None and all(found.get(k) == wanted.get(k) for k in _MATCH_KEYS)


def read_manifest(folder: Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: dict) -> None:
    save_json(Path(folder) / MANIFEST_NAME, manifest)


def summary_path(folder: Path) -> Path:
    """ais_bench writes the summary beside the result folder: `<folder>_summary.json`."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_summary.json"


def output_name(stem: str, index: int, outfmt: str) -> str:
    """ais_bench's name of a sample's output file: `<stem>_<output index>.<bin|npy>`."""
    return f"{stem}_{index}.{outfmt.lower()}"


def output_path(folder: Path, stem: str, index: int, outfmt: str) -> Path:
    return Path(folder) / output_name(stem, index, outfmt)


def _folder_order(folder: Path) -> tuple[str, int]:
    match = _TIMESTAMP_RE.match(folder.name)
    return match.group(1), int(match.group(2) or 0)


def find_resumable(output_root: Path, wanted: dict) -> Optional[Path]:
    """The latest timestamped folder under OUT whose manifest matches this model and these inputs."""
    root = Path(output_root)
    if not root.is_dir():
        return None
    candidates = sorted((p for p in root.iterdir() if _TIMESTAMP_RE.match(p.name) and p.is_dir()),
                        key=_folder_order, reverse=True)
    for folder in candidates:
        if manifest_matches(read_manifest(folder), wanted):
            return folder
    return None


def _os_problem(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _file_in_the_way(path: Path) -> Optional[Path]:
    """`path` or its nearest existing ancestor when that is not a folder (so no folder can be made there)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def _make_output_root(root: Path) -> None:
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        blocker = _file_in_the_way(root)
        if blocker is not None:
            raise InputFileError(blocker, f"is a file, not a folder (--output {root} must be a folder)") from None
        raise InputFileError(root, f"cannot create the output folder ({_os_problem(err)})") from None


def _make_folder(folder: Path) -> bool:
    """One atomic `os.mkdir`; False when the folder exists already (another run may have made it)."""
    try:
        os.mkdir(folder)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        raise InputFileError(folder, f"cannot create the result folder ({_os_problem(err)})") from None


def choose_output_folder(*, output_root, output_dirname: Optional[str],
                         wanted: Optional[dict]) -> tuple[Optional[Path], Optional[dict]]:
    """An existing folder to resume and its manifest, or (None, None): make a new one (`create_result_folder`).

    Nothing is created here: a run that fails validation leaves nothing behind.
    `wanted` is None for zero-input runs, which never resume.
    """
    root = Path(output_root)
    blocker = _file_in_the_way(root)
    if blocker is not None:
        raise InputFileError(blocker, f"is a file, not a folder (--output {root} must be a folder)")
    if output_dirname is not None:
        if not output_dirname or Path(output_dirname).name != output_dirname or output_dirname in (".", ".."):
            raise UserError(f"--output_dirname {output_dirname!r} must be a plain folder name")
        folder = root / output_dirname
        if wanted is None or not folder.is_dir():
            return None, None
        found = read_manifest(folder)
        if manifest_matches(found, wanted):
            return folder, found
        _check_empty(folder)
        return None, None
    if wanted is not None:
        found_folder = find_resumable(root, wanted)
        if found_folder is not None:
            return found_folder, read_manifest(found_folder)
    return None, None


def _check_empty(folder: Path) -> None:
    if any(p.name != LOCK_NAME for p in folder.iterdir()):
        # Reusing it would mix results of two models or data sets in one folder.
        raise InputFileError(folder, "holds results of another model, input set or --outfmt; "
                                     "pick another --output_dirname or delete that folder")


def create_result_folder(output_root, output_dirname: Optional[str] = None,
                         clock: Callable[[], float] = time.time) -> Path:
    """Make this run's own folder: `OUT/<YYYY_mm_dd-HH_MM_SS>`, or `<ts>_1`, `<ts>_2`... when that name is
    taken (by a folder, or by a summary whose folder is gone); `OUT/<output_dirname>` when given."""
    root = Path(output_root)
    _make_output_root(root)
    if output_dirname is not None:
        folder = root / output_dirname
        if not _make_folder(folder):
            if not folder.is_dir():
                raise InputFileError(folder, "is a file, not a folder (--output_dirname must name a folder)")
            _check_empty(folder)  # an empty folder made beforehand is fine
        return folder
    base = time.strftime(TIMESTAMP_FORMAT, time.localtime(clock()))
    for number in range(10_000):
        folder = root / (base if number == 0 else f"{base}_{number}")
        if not summary_path(folder).exists() and _make_folder(folder):
            return folder
    raise InputFileError(root, f"no free result folder name {base}_<n>")


class FolderLock:
    """An exclusive `flock` on `<folder>/.infer.lock`, taken without waiting and held until `release()`.

    The kernel drops it when the process dies, so a killed run never leaves its folder locked.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise InputFileError(path, f"cannot create the lock file ({_os_problem(err)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise InputFileError(path, f"cannot lock it ({_os_problem(err)})") from None
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise InputFileError(self.folder, f"another python -m infer run{pid} is writing into this folder; "
                                              "wait for it to end or use another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)  # who holds it, for the other run's message
        self._fd: Optional[int] = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def save_json(path: Path, obj, indent: Optional[int] = 2) -> None:
    """`write_json`, with an OS error (read-only or full disk) as a one-line error naming the file."""
    try:
        write_json(path, obj, indent=indent)
    except OSError as err:
        raise InputFileError(path, f"cannot write it ({_os_problem(err)})") from None


def write_run_record(folder: Path, record: dict) -> None:
    save_json(Path(folder) / RUN_RECORD_NAME, record)


def read_run_record(folder: Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / RUN_RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_array(path: Path, array: np.ndarray, outfmt: str) -> None:
    """NPY (with header) or BIN (the same bytes, raw C order), atomically, into an output folder this run
    holds locked (`FolderLock`: both callers take it first), so the lean locked-folder write serves."""
    array = np.ascontiguousarray(array)
    try:
        if outfmt.upper() == "NPY":
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getbuffer()
        else:
            data = memoryview(array).cast("B")
        write_into_locked_folder(path, data)
    except OSError as err:
        raise InputFileError(path, f"cannot write it ({_os_problem(err)})") from None


def _shape_fits(found: Sequence[int], expected: Sequence[Optional[int]]) -> bool:
    return len(found) == len(expected) and all(e is None or e == f for f, e in zip(found, expected))


def output_is_whole(path: Path, outfmt: str, shape: Sequence[Optional[int]], dtype) -> bool:
    """Whether an existing output is what this sample's run would write: for NPY the header's shape and
    dtype and a file size that holds all of it, for BIN the byte count. `None` in `shape`: any size."""
    dtype = np.dtype(dtype)
    try:
        size = path.stat().st_size
        if not path.is_file():
            return False
        if outfmt.upper() != "NPY":
            known = int(np.prod([d for d in shape if d is not None])) * dtype.itemsize
            if None not in shape:
                return size == known
            return size > 0 and known > 0 and size % known == 0
        found_shape, found_dtype, data_offset = read_npy_header(path)
    except (OSError, ValueError, EOFError):
        return False
    return (found_dtype == dtype and _shape_fits(found_shape, shape)
            and size == data_offset + int(np.prod(found_shape)) * dtype.itemsize)
