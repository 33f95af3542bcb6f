"""Quiet third-party logging: what our one-line summaries already say, the libraries need not repeat.

`quiet_transformers` silences transformers' warnings and progress bars (the export, the predictor,
the demo); `quiet_root_logging` raises the root logger to ERROR for a block (ONNX Runtime's
quantizer logs a pre-processing hint and per-tensor notes at WARNING).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


def quiet_transformers() -> None:
    """transformers logs at ERROR only and shows no progress bars, from now on."""
    # imported here: transformers takes seconds to import and `--help` or a flag error should not pay for it
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def quiet_root_logging(level: int = logging.ERROR) -> Iterator[None]:
    """Within the block, the root logger passes `level` and above only; its old level comes back after."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)
