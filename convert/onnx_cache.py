"""The ONNX file that `python -m apps.predict`, the demo and corpus jobs run: `--onnx PATH`, or an export of the
checkpoint cached in `<model_dir>/.onnx-cache/` (in the user cache when the model folder cannot take it).

Exports go through `convert.export.export_onnx`: written atomically, and only after the graph has
matched PyTorch on real sentences. A cached file is named after the checkpoint's fingerprint, so a
changed checkpoint gets a new export.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

from common.errors import InputFileError
from common.quiet import quiet_transformers

from .export import export_onnx

CACHE_DIR = ".onnx-cache"
# What decides whether a cached export still belongs to the checkpoint.
_FINGERPRINT_GLOBS = ("config.json", "tokenizer.json", "*.safetensors", "*.bin")


def checkpoint_fingerprint(model_dir) -> str:
    """Names, sizes and mtimes of the checkpoint's config, tokenizer and weight files, hashed."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for pattern in _FINGERPRINT_GLOBS:
        for path in sorted(model_dir.glob(pattern)):
            st = path.stat()
            h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_onnx_path(model_dir) -> Path:
    """`<model_dir>/.onnx-cache/model-<fingerprint>.onnx`: a changed checkpoint gets a new export."""
    return Path(model_dir) / CACHE_DIR / f"model-{checkpoint_fingerprint(model_dir)}.onnx"


def user_cache_onnx_path(model_dir) -> Path:
    """Where the export goes when the model folder cannot take it (read-only, a file in the way):
    `$XDG_CACHE_HOME/bert-ner-offline/onnx/<hash of the folder's path>/model-<fingerprint>.onnx`."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder_key = hashlib.sha256(os.fsencode(Path(model_dir).resolve())).hexdigest()[:16]
    return root / "bert-ner-offline" / "onnx" / folder_key / f"model-{checkpoint_fingerprint(model_dir)}.onnx"


def _unwritable(folder: Path) -> Optional[str]:
    """None when a file can be created in `folder` (made if missing), else why not (any OSError:
    read-only filesystem, no permission, a file where a folder should be, a full disk)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def ensure_onnx(model_dir, onnx=None, log: Callable[[str], None] = lambda msg: None) -> Path:
    """The ONNX file to run: `onnx` if it exists, else exported there (or into the cache) now.

    Export goes through `convert.export.export_onnx`: written atomically, and only after the graph
    has matched PyTorch on real sentences.
    """
    if onnx is not None:
        onnx = Path(onnx)
        if onnx.is_file():
            return onnx
        if onnx.exists():
            raise InputFileError(onnx, "--onnx is not a file")
        target = onnx
        why = _unwritable(onnx.parent)
        if why:
            raise InputFileError(onnx, f"cannot write the ONNX export here ({why})")
    else:
        target = _cache_target(model_dir, log)
        if target.is_file():
            return target
    log(f"exporting {model_dir} to {target} (first use; checked against PyTorch) ...")
    quiet_transformers()
    try:
        result = export_onnx(model_dir=model_dir, output=target)
    except OSError as err:  # the folder was writable a moment ago: a full disk, a remount
        raise InputFileError(target, f"cannot write the ONNX export ({err.strerror or err}); pass --onnx PATH "
                             "somewhere writable") from None
    log(f"exported {target} (largest difference vs PyTorch {result.check.max_abs_diff:.2g})")
    if onnx is None:  # older exports of a checkpoint that has changed since
        for stale in target.parent.glob("model-*.onnx"):
            if stale != target:
                try:
                    stale.unlink(missing_ok=True)
                except OSError:
                    pass  # an old export left behind takes space, nothing more
    return target


def _cache_target(model_dir, log: Callable[[str], None]) -> Path:
    """The cached export (if one exists) or where to write it: the model folder's `.onnx-cache`, or the
    user cache when the model folder cannot take it (a read-only mount is a normal place for a model)."""
    in_model_dir, in_user_cache = cached_onnx_path(model_dir), user_cache_onnx_path(model_dir)
    for cached in (in_model_dir, in_user_cache):
        if cached.is_file():
            return cached
    why_not_model_dir = _unwritable(in_model_dir.parent)
    if why_not_model_dir is None:
        return in_model_dir
    why_not_user_cache = _unwritable(in_user_cache.parent)
    if why_not_user_cache is None:
        log(f"{in_model_dir.parent}: not writable ({why_not_model_dir}); caching the ONNX export in "
            f"{in_user_cache.parent} instead")
        return in_user_cache
    raise InputFileError(in_model_dir.parent, f"cannot write the ONNX export here ({why_not_model_dir}) nor in "
                         f"{in_user_cache.parent} ({why_not_user_cache}); pass --onnx PATH somewhere writable")

