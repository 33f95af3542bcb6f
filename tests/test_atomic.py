"""common.atomic: crash safety (SIGKILL, a failed overwrite), file modes, and stale-temporary cleanup."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.atomic import TEMPORARY_PATTERN, atomic_path, remove_stale_temporaries, staging_dir, write_bytes, \
    write_into_locked_folder, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
OLD = "EU rejects German call to boycott British lamb .\n"


@contextmanager
def umask(value: int):
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMPORARY_PATTERN.fullmatch(p.name))


# A writer in its own process: writes 1 MiB chunks through the atomic writer, says so after the first
# chunk is on disk, then keeps going slowly until it is killed.
SLOW_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from common.atomic import write_bytes

    def chunks():
        for i in range(10_000):
            yield b"x" * (1 << 20)
            if i == 1:
                print("writing", flush=True)
            time.sleep(0.05)

    write_bytes(sys.argv[1], chunks())
""")


def start_slow_writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER.format(root=str(ROOT)), str(target)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def kill_hard(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()


@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "new-file"])
def test_sigkill_mid_write_never_touches_the_final_name(tmp_path, existing):
    target = tmp_path / "result.json"
    if existing:
        target.write_text(OLD, encoding="utf-8")
    proc = start_slow_writer(target)
    try:
        # while it writes, the data goes to a temporary that a cleanup run must leave alone
        [tmp_name] = temporaries(tmp_path)
        assert (tmp_path / tmp_name).stat().st_size >= 1 << 20
        assert remove_stale_temporaries(tmp_path) == 0
        assert (tmp_path / tmp_name).exists()
    finally:
        kill_hard(proc)
    if existing:
        assert target.read_text(encoding="utf-8") == OLD
    else:
        assert not target.exists()
    # the killed writer's temporary is now stale: the next run removes it, and only it
    assert temporaries(tmp_path) == [tmp_name]
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["result.json"] if existing else [])


def failing_chunks():
    yield b'{"sentences": 3453, '
    raise RuntimeError("disk went away")


@pytest.mark.parametrize("write", [
    lambda path: write_bytes(path, failing_chunks()),
    lambda path: write_bytes(path, failing_chunks(), mode=0o644),
], ids=["default-mode", "mode"])
def test_failed_overwrite_keeps_the_old_file(tmp_path, write):
    target = tmp_path / "predictions.txt"
    target.write_text(OLD, encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk went away"):
        write(target)
    assert target.read_text(encoding="utf-8") == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.txt"]


def test_failed_overwrite_through_atomic_path_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text(OLD, encoding="utf-8")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write("<html><body>half a page")
                handle.flush()
                raise ValueError("render failed")
    assert target.read_text(encoding="utf-8") == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


WRITERS = {
    "write_bytes": lambda p, **kw: write_bytes(p, b"\x00\x01", **kw),
    "write_bytes_chunks": lambda p, **kw: write_bytes(p, iter([b"a", b"b"]), **kw),
    "write_text": lambda p, **kw: write_text(p, OLD, **kw),
    "write_json": lambda p, **kw: write_json(p, {"f1": 0.91}, **kw),
}


def write_with_atomic_path(path, **kw):
    with atomic_path(path, **kw) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"logits")


WRITERS["atomic_path"] = write_with_atomic_path


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_default_mode_is_what_open_gives(tmp_path, name, mask, expected):
    with umask(mask):
        WRITERS[name](tmp_path / "out.npy")
        with open(tmp_path / "plain.txt", "w"):
            pass
    assert mode_of(tmp_path / "out.npy") == expected == mode_of(tmp_path / "plain.txt")


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("mask, mode", [(0o002, 0o644), (0o077, 0o644), (0o022, 0o600), (0o000, 0o444)])
def test_mode_is_exact_whatever_the_umask(tmp_path, name, mask, mode):
    target = tmp_path / "input_ids_0_0.bin"
    target.write_bytes(b"old")
    target.chmod(0o666)
    with umask(mask):
        WRITERS[name](target, mode=mode)
    assert mode_of(target) == mode
    assert target.read_bytes() != b"old"


def test_write_json_content(tmp_path):
    write_json(tmp_path / "result.json", {"f1": 0.91, "name": "Müller"})
    assert json.loads((tmp_path / "result.json").read_text(encoding="utf-8")) == {"f1": 0.91, "name": "Müller"}


def test_remove_stale_temporaries_removes_only_the_writers_own_pattern(tmp_path):
    stale = [".result.json.abc_e9z1.tmp", ".bert_bin_20240101-120000.anno.k3j2l1m0.tmp"]
    kept_files = [
        "result.json", ".result.json.abc.tmp",  # random part too short
        "result.json.abcdefgh.tmp",  # not hidden
        ".result.json.ABCDEFGH.tmp",  # not the writer's alphabet
        ".result.json.abcdefgh.tmp.bak",
    ]
    for name in stale + kept_files:
        (tmp_path / name).write_text("x")
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()  # a staging folder of a dead run: removed with its files
    (tmp_path / ".folder.abcdefgh.tmp" / "model.onnx").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.abcdefgh.tmp").write_text("x")  # not recursive
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(tmp_path / "result.json")  # not a regular file

    # writes in progress (a file, a staging folder) are never touched
    with atomic_path(tmp_path / "live.npy") as live, staging_dir(tmp_path / "live_set") as stage:
        assert remove_stale_temporaries(tmp_path) == len(stale) + 1
        assert live.exists() and stage.is_dir()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(kept_files + ["sub", ".link.abcdefgh.tmp", "live.npy"])
    assert (tmp_path / "sub" / ".x.abcdefgh.tmp").exists()
    assert remove_stale_temporaries(tmp_path) == 0
    assert remove_stale_temporaries(tmp_path / "missing") == 0


# write_into_locked_folder: python -m infer's per-sample outputs, in a folder the run holds locked

@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_locked_folder_write_replaces_whole_with_the_mode_open_gives(tmp_path, mask, expected):
    target = tmp_path / "input_ids_0_0_0.bin"
    target.write_bytes(b"old")
    data = bytes(range(256)) * 1000
    with umask(mask):
        write_into_locked_folder(target, memoryview(data))
    assert target.read_bytes() == data and mode_of(target) == expected
    assert temporaries(tmp_path) == []


def test_locked_folder_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "sample_0.npy"
    target.write_bytes(b"old")
    real_write = os.write

    def disk_full_after_half(fd, data):
        real_write(fd, bytes(data)[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full_after_half)
    with pytest.raises(OSError, match="No space left"):
        write_into_locked_folder(target, b"x" * 4096)
    monkeypatch.setattr(os, "write", real_write)
    assert target.read_bytes() == b"old" and temporaries(tmp_path) == []


def test_locked_folder_write_steps_around_a_killed_runs_temporary_which_cleanup_removes(tmp_path):
    import common.atomic as atomic

    target = tmp_path / "sample_1_0.bin"
    leftover = tmp_path / f".{target.name}.{atomic._PROCESS_RANDOM_PART}.tmp"
    leftover.write_bytes(b"half of an earlier run's output")
    write_into_locked_folder(target, b"new")
    assert target.read_bytes() == b"new"
    assert leftover.read_bytes() == b"half of an earlier run's output"  # not ours to overwrite or to rename
    assert remove_stale_temporaries(tmp_path) == 1 and temporaries(tmp_path) == []  # nobody holds a lock on it
