"""What every Click command shares: `-h`, the checkpoint-folder option, and the length-list type.

Commands declare `@click.command(context_settings=CONTEXT_SETTINGS)` and `@model_dir_option(...)`, so
`--model_dir` means one thing with one spelling everywhere; `--buckets 32,64,128` is parsed once, by
`parse_lengths` in the command wrapper (so a bad value is our one-line error, exit 1, not Click's usage
error), into a sorted tuple of ints that library functions take as it is (never a CLI string).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import click

from .errors import UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def model_dir_option(*, required: bool = False, default=None, help: Optional[str] = None,
                     extra_names: Sequence[str] = ()):
    """`--model_dir` (also `--model-dir`): a local Hugging Face checkpoint folder."""
    text = help or "Hugging Face checkpoint folder (config.json, tokenizer files, safetensors weights)."
    return click.option("--model_dir", "--model-dir", *extra_names, "model_dir", required=required,
                        default=default, show_default=default is not None,
                        type=click.Path(path_type=Path), help=text)


def parse_lengths(text: str, what: str = "--buckets") -> tuple[int, ...]:
    """'64,32,128' -> (32, 64, 128): positive, distinct, sorted; anything else is a UserError."""
    try:
        values = sorted({int(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise UserError(f"{what} {text!r}: expected comma-separated sequence lengths, e.g. 32,64,128") from None
    if not values:
        raise UserError(f"{what} {text!r}: no lengths given")
    if values[0] <= 0:
        raise UserError(f"{what} {text!r}: lengths must be positive")
    return tuple(values)
