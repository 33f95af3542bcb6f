"""Write samples as the ModelZoo's .bin folders, the .anno labels and the .index.jsonl map.

ais_bench (ait's, 2024) refuses input files and folders that are soft links or that group or
others can write, so .bin files and their folders never get those bits, whatever the umask.
With length buckets, `gears/<L>/<input name>/` also holds each length's samples (hard links to
the same files), the per-gear folders one ais_bench run per `--dymDims` gear reads.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import staging_dir, write_all, write_text
from common.index_format import sample_record

GEARS_SUBDIR = "gears"
GROUP_OTHER_WRITE = 0o022


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def input_file_mode() -> int:
    """0644 less the umask, and never group/other write (ais_bench refuses such inputs)."""
    return 0o644 & ~current_umask() & ~GROUP_OTHER_WRITE


def write_new_file(path, data, mode: int) -> None:
    """A fresh file inside a staging folder: the folder is what appears atomically, so each file needs
    no temporary of its own. `mode` is `input_file_mode()`, which the umask keeps whole, so the create
    sets it exactly. One file per sample and input: a bare descriptor and one `os.write`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def make_input_dir(path: Path) -> Path:
    """mkdir without group/other write bits, whatever the umask (ais_bench checks its input folders)."""
    os.mkdir(path)
    os.chmod(path, 0o755 & ~current_umask() & ~GROUP_OTHER_WRITE)
    return path


def link_or_copy(source, target) -> None:
    """A hard link (never a soft link: ais_bench refuses those); a copy where linking is impossible
    (another filesystem, or one without hard links)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, input_file_mode())


@dataclass(frozen=True)
class BinSet:
    """Paths of one preprocess run."""

    bin_dir: Path
    anno_file: Path
    index_file: Path
    input_names: tuple[str, ...]

    def input_dirs(self) -> list[Path]:
        return [self.bin_dir / name for name in self.input_names]


def bucket_for(tokens: int, buckets) -> int:
    return next(b for b in buckets if b >= tokens)


def pad_row(sample, length: int, pad_id: int, input_names) -> dict[str, np.ndarray]:
    """One sample as (1, length) int64 arrays per model input."""
    n = sample.tokens
    arrays = {
        "input_ids": np.full((1, length), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((1, length), dtype=np.int64),
        "token_type_ids": np.zeros((1, length), dtype=np.int64),
    }
    arrays["input_ids"][0, :n] = sample.input_ids
    arrays["attention_mask"][0, :n] = 1
    if sample.token_types:  # a model that reads word case (common.word_case)
        arrays["token_type_ids"][0, :n] = sample.token_types
    return {name: arrays[name] for name in input_names}


def link_gear_folders(root: Path, files_by_length: dict[int, list[tuple[Path, ...]]], input_names) -> dict[int, list[Path]]:
    """`root/<L>/<input name>/` per length, holding (linked) that length's sample files; returns their folders."""
    make_input_dir(root)
    folders = {}
    for length, samples in sorted(files_by_length.items()):
        make_input_dir(root / str(length))
        folders[length] = [make_input_dir(root / str(length) / name) for name in input_names]
        targets = [str(folder) for folder in folders[length]]
        for files in samples:
            for folder, source in zip(targets, files):
                link_or_copy(source, os.path.join(folder, os.path.basename(source)))
    return folders


def write_binset(save_dir: Path, stamp: str, samples, sentence_labels, header: dict, pad_id: int,
                 lengths, input_names, progress=None) -> BinSet:
    """Everything goes to temporary names first; the folder, then .anno, then .index are renamed
    into place, so an interrupted run leaves nothing that looks finished."""
    save_dir.mkdir(parents=True, exist_ok=True)
    name = f"bert_bin_{stamp}"
    final = BinSet(save_dir / name, save_dir / f"{name}.anno", save_dir / f"{name}.index.jsonl",
                   tuple(input_names))
    for path in (final.bin_dir, final.anno_file, final.index_file):
        if path.exists():
            raise FileExistsError(path)
    try:
        with staging_dir(final.bin_dir) as tmp_dir:
            for input_name in input_names:
                make_input_dir(tmp_dir / input_name)
            index_lines = [json.dumps(header)]  # the contract's records: common.index_format
            mode = input_file_mode()
            files_by_length = defaultdict(list)
            # string paths: one file per sample and input, a Path each would cost more than its write
            input_dirs = [os.path.join(tmp_dir, input_name) for input_name in input_names]
            for i, (sample, length) in enumerate(zip(samples, lengths)):
                files = []
                for folder, (input_name, array) in zip(input_dirs, pad_row(sample, length, pad_id, input_names).items()):
                    # little-endian int64, C order, no header: what ais_bench and ATC expect
                    files.append(os.path.join(folder, f"{input_name}_{i}_{i}.bin"))
                    write_new_file(files[-1], array.astype("<i8", copy=False), mode)
                files_by_length[length].append(tuple(files))
                index_lines.append(sample_record(header, sample=i, sentence=sample.sentence, length=length,
                                                 tokens=sample.tokens, scored=sample.scored_words()))
                if progress:
                    progress.update(1)
            if header.get("buckets"):
                link_gear_folders(tmp_dir / GEARS_SUBDIR, files_by_length, input_names)
            tmp_dir.chmod(0o755 & ~current_umask() & ~GROUP_OTHER_WRITE)
            os.replace(tmp_dir, final.bin_dir)
        write_text(final.anno_file, "".join(f"{sid} {' '.join(map(str, ids))}\n" for sid, ids in sentence_labels))
        # the index goes last: its presence marks a finished run
        write_text(final.index_file, "\n".join(index_lines) + "\n")
    except BaseException:
        if not final.index_file.exists():
            shutil.rmtree(final.bin_dir, ignore_errors=True)
            final.anno_file.unlink(missing_ok=True)
        raise
    return final
