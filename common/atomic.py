"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash, a Ctrl-C or a kill -9 never leaves a half-written output under the final name: the
temporary is `.<name>.<8 random chars>.tmp` beside the target. A writer that is killed outright
cannot clean up after itself, so `remove_stale_temporaries` lets the next run do it. While a write
is in progress the writer holds an exclusive `flock` on its temporary, which is how a cleanup run
tells a live writer's file (left alone) from a dead one's (removed): the kernel drops the lock
when the writer dies.

Files are created the way a plain `open()` creates them (0666 minus the umask), not 0600 as
`tempfile.mkstemp` would; `mode=` sets an exact mode instead, whatever the umask.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; cleanup then treats every matching temporary as stale
    fcntl = None

# the same alphabet and length as tempfile's names, so the pattern below is the writer's own
_RANDOM_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_RANDOM_LENGTH = 8
TEMPORARY_PATTERN = re.compile(r"\..+\.[a-z0-9_]{%d}\.tmp" % _RANDOM_LENGTH, re.DOTALL)


def _random_part() -> str:
    return "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(_RANDOM_LENGTH))


def temporary_name(target_name: str) -> str:
    return f".{target_name}.{_random_part()}.tmp"


def create_locked(path) -> int | None:
    """Create `path` exclusively (O_EXCL, mode as open() gives) and hold an flock on it: the lock
    says "a live process owns this file" until the descriptor is closed or the process dies.
    Returns the descriptor, or None when `path` already exists."""
    path = Path(path)
    while True:
        try:
            # 0o666 is what open() asks for; the kernel applies the umask, exactly as for open()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            return None
        if fcntl is None:
            return fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        # a cleanup run may have taken the file for stale in the instant before the lock: make sure
        # the name still points at our file, else start again
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create and lock a fresh temporary beside `path`; returns its descriptor and path."""
    for _ in range(100):
        tmp = path.parent / temporary_name(path.name)
        fd = create_locked(tmp)
        if fd is not None:
            return fd, tmp
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


@contextmanager
def atomic_path(path, mode: int | None = None):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The temporary already exists (empty). The final file has the permissions of a plain `open()`,
    or exactly `mode` when given. On any exception, KeyboardInterrupt included, it is removed and an
    existing `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        try:
            if mode is not None:  # the owner must be able to write it meanwhile, even for mode=0o444
                os.chmod(tmp, mode | 0o600)
            yield tmp
            if mode is not None:  # now the exact mode (also right if the caller replaced the file)
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)  # releases the lock only after the rename, so cleanup never races a live writer


@contextmanager
def staging_dir(target, mode: int | None = None):
    """A fresh folder `.<name>.<random>.tmp` beside `target`, for an output of several files that must
    appear together (an ONNX model and its weights, a .bin set, a checkpoint folder).

    The caller builds the output inside and moves it into place (`os.replace`, of the folder itself or of
    the files in it) before leaving the block; whatever is still there on exit, success or failure, is
    removed. While the block runs this process holds an `flock` on the folder, so `remove_stale_temporaries`
    removes only the staging folders of runs that died. `mode`: the folder's permission bits (default:
    what `mkdir` gives under the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        stage = target.parent / temporary_name(target.name)
        try:
            os.mkdir(stage)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{target.parent}: no free staging name for {target.name}")
    if mode is not None:
        os.chmod(stage, mode)
    fd = os.open(stage, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        os.close(fd)


def write_into_locked_folder(path, data) -> None:
    """Write `data` (bytes-like) to `path` atomically, in a folder this process alone writes to: it holds
    the folder's own lock (`python -m infer`'s output folder), so no other process writes or cleans there.

    `atomic_path` locks each temporary so that another process's cleanup can tell a live write from a
    dead one; under the folder lock there is no such process, so the temporary is created, written in
    one `os.write` and renamed: 4 system calls a file instead of ~10 (a run writes one file per sample:
    175 -> ~50 us a file on the 2-core EPYC). A run killed mid-write leaves a temporary of the usual
    pattern, unlocked, which the next run's `remove_stale_temporaries` removes. The file gets the mode a
    plain `open()` gives."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    view = memoryview(data)
    while True:
        tmp = os.path.join(folder, f".{name}.{_PROCESS_RANDOM_PART}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:  # a killed run's leftover under this very name: a fresh name, not its file
            _new_process_random_part()
    try:
        try:
            write_all(fd, view)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_all(fd: int, data) -> None:
    """All of `data` (bytes-like, C-contiguous) to the descriptor: `os.write` until nothing is left (a write
    may take fewer bytes than it was given)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])


def _new_process_random_part() -> None:
    global _PROCESS_RANDOM_PART
    _PROCESS_RANDOM_PART = _random_part()


# one random part per process: `write_into_locked_folder`'s targets differ, so their temporaries do too
_PROCESS_RANDOM_PART = ""
_new_process_random_part()


def write_bytes(path, data: bytes | Iterable[bytes], mode: int | None = None) -> None:
    """`data` may be one bytes object or an iterable of chunks (written as they come)."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as handle:
        if isinstance(data, (bytes, bytearray, memoryview)):
            handle.write(data)
        else:
            for chunk in data:
                handle.write(chunk)


def write_text(path, text: str, mode: int | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode)


def write_json(path, obj, indent: int | None = 2, mode: int | None = None) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", mode=mode)


def _remove_unless_locked(path, remove, flags: int) -> bool:
    """Open `path`, and `remove` it unless a live process holds an flock on it; True if removed."""
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return False  # renamed or removed meanwhile: nothing to clean
    except PermissionError:
        return False  # not ours to judge
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        return remove(path)
    finally:
        os.close(fd)


def _unlink(path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _rmtree(path) -> bool:
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.exists(path)


def remove_if_stale(path) -> bool:
    """Remove `path` unless a live process holds the lock `create_locked` took on it; True if removed.

    The file is unlinked while this process holds the lock, so a writer that created it an instant
    ago (and is waiting for its lock) sees the name gone and starts again rather than losing it."""
    # O_NONBLOCK: should the name have become a FIFO meanwhile, do not hang on it
    return _remove_unless_locked(path, _unlink, os.O_RDONLY | os.O_NONBLOCK)


def _remove_stale_staging_dir(path) -> bool:
    """Remove a staging folder unless a live `staging_dir` block holds its lock; True if removed."""
    return _remove_unless_locked(path, _rmtree, os.O_RDONLY)


def remove_stale_temporaries(folder) -> int:
    """Remove the temporaries (`.<name>.<random>.tmp`: files of `atomic_path`, folders of `staging_dir`)
    that writers killed mid-write left directly in `folder` (not in subfolders); returns how many.

    Temporaries of writes still in progress (another process writing into the same folder) are kept.
    A missing folder has none."""
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for entry in entries:
        if not TEMPORARY_PATTERN.fullmatch(entry.name):
            continue
        if entry.is_file(follow_symlinks=False):
            removed += remove_if_stale(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            removed += _remove_stale_staging_dir(entry.path)
    return removed
