"""The files bert_metric.py and the report write: checked before any work, written all or none.

A destination that cannot be written (a folder, a path below a regular file, a read-only folder)
is refused before scoring starts, so a long run never ends in a traceback; a write that still
fails (disk full) removes what this run already wrote, so no half set of files is left.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from common import atomic
from common.errors import InputFileError, UserError


def check_destination(path: Path, option: str, hint: str = "") -> None:
    """Raise `InputFileError` unless `path` can be written as a file (missing parent folders are created)."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, f"is a folder; {option} takes a file name{hint}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputFileError(path, f"cannot be written: {folder} is a file, not a folder{hint}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(folder, f"folder is not writable: cannot write {path.name} there{hint}")


def check_distinct(named: Sequence[tuple[str, Path | None]]) -> None:
    """Two options naming the same file would overwrite one output with another."""
    seen: dict[Path, str] = {}
    for option, path in named:
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise UserError(f"{path}: {seen[key]} and {option} name the same file")
        seen[key] = option


def remove_stale_temporaries(folder: Path) -> int:
    """Remove the temporaries (`.<name>.<random>.tmp`) that a killed earlier run left in `folder`.

    Best effort: a folder that cannot be listed keeps them, and the write that follows says why.
    """
    try:
        return atomic.remove_stale_temporaries(folder)
    except OSError:
        return 0


def write_all(writes: Sequence[tuple[Path, Callable[[Path], None], str]]) -> None:
    """Run `(path, write, hint)` in order; if one fails, remove the files written before it and raise."""
    done: list[Path] = []
    for path, write, hint in writes:
        try:
            write(path)
        except OSError as err:
            for written in done:
                written.unlink(missing_ok=True)
            reason = err.strerror or str(err)
            raise InputFileError(Path(path).parent, f"cannot write {Path(path).name} there ({reason}){hint}") from None
        done.append(Path(path))
