"""Where results go (ais_bench's layout), how a rerun finds and resumes them, and atomic writes.

Layout: `OUT/<YYYY_mm_dd-HH_MM_SS>/<first input's file name up to its first dot>_<output index>.npy|bin`
and `OUT/<YYYY_mm_dd-HH_MM_SS>_summary.json` beside the folder (with `--output_dirname NAME`,
`OUT/NAME/` and `OUT/NAME_summary.json`, as ais_bench does).

Resume: each result folder holds a small manifest, `.infer_manifest.json`, written when the
folder is created (hidden, so `ls` and the metric's `_<i>_0.npy` pattern see only results).
It records the model file (resolved path, size, mtime in ns: what make/rsync trust, and free
for a multi-GB model, unlike a hash), the resolved input folders, the output format and the
number of model outputs. A rerun into the same OUT with a matching manifest reuses the latest
such folder and only computes samples whose outputs are missing. Every output is written to a
temporary name and renamed, so an interrupted run leaves whole files or none.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from common.atomic import atomic_path, write_json
from common.errors import UserError

TIMESTAMP_FORMAT = "%Y_%m_%d-%H_%M_%S"
_TIMESTAMP_RE = re.compile(r"^\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}$")
MANIFEST_NAME = ".infer_manifest.json"
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
    write_json(Path(folder) / MANIFEST_NAME, manifest)


def summary_path(folder: Path) -> Path:
    """ais_bench writes the summary beside the result folder: `<folder>_summary.json`."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_summary.json"


def output_path(folder: Path, stem: str, index: int, outfmt: str) -> Path:
    return Path(folder) / f"{stem}_{index}.{outfmt.lower()}"


def find_resumable(output_root: Path, wanted: dict) -> Optional[Path]:
    """The latest timestamped folder under OUT whose manifest matches this model and these inputs."""
    root = Path(output_root)
    if not root.is_dir():
        return None
    candidates = sorted((p for p in root.iterdir() if p.is_dir() and _TIMESTAMP_RE.match(p.name)),
                        key=lambda p: p.name, reverse=True)
    for folder in candidates:
        if manifest_matches(read_manifest(folder), wanted):
            return folder
    return None


def fresh_timestamp_folder(output_root: Path, clock: Callable[[], float] = time.time) -> Path:
    """`OUT/<YYYY_mm_dd-HH_MM_SS>` not yet taken; waits for the next second rather than mix two runs."""
    while True:
        folder = Path(output_root) / time.strftime(TIMESTAMP_FORMAT, time.localtime(clock()))
        if not folder.exists() and not summary_path(folder).exists():
            return folder
        time.sleep(0.2)


def choose_output_folder(*, output_root, output_dirname: Optional[str],
                         wanted: Optional[dict]) -> tuple[Path, Optional[dict]]:
    """The result folder for this run and its existing manifest (None: a new folder, nothing to reuse).

    The folder is not created here: a run that fails validation leaves nothing behind.
    `wanted` is None for zero-input runs, which never resume.
    """
    root = Path(output_root)
    if root.exists() and not root.is_dir():
        raise UserError(f"--output {root} is a file, not a folder")
    if output_dirname is not None:
        if not output_dirname or Path(output_dirname).name != output_dirname or output_dirname in (".", ".."):
            raise UserError(f"--output_dirname {output_dirname!r} must be a plain folder name")
        folder = root / output_dirname
        if wanted is None or not folder.exists():
            return folder, None
        found = read_manifest(folder)
        if manifest_matches(found, wanted):
            return folder, found
        if any(folder.iterdir()):
            # Reusing it would mix results of two models or data sets in one folder.
            raise UserError(f"{folder} holds results of another model, input set or --outfmt; "
                            "pick another --output_dirname or delete that folder")
        return folder, None
    if wanted is not None:
        found_folder = find_resumable(root, wanted)
        if found_folder is not None:
            return found_folder, read_manifest(found_folder)
    return fresh_timestamp_folder(root), None


def write_array(path: Path, array: np.ndarray, outfmt: str) -> None:
    """NPY (with header) or BIN (the same bytes, raw C order), atomically."""
    array = np.ascontiguousarray(array)
    with atomic_path(path) as tmp:
        # Through a file object: np.save(path) would append ".npy" to the temporary name.
        with open(tmp, "wb") as handle:
            if outfmt.upper() == "NPY":
                np.save(handle, array)
            else:
                handle.write(array.tobytes(order="C"))


def ensure_folder(folder: Path) -> None:
    os.makedirs(folder, exist_ok=True)
