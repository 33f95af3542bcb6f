"""The one tokenizer loader: a checkpoint's fast tokenizer, as every stage must see it.

Every stage (bin_create, export and fix checks, calibration, the engine, training) loads the
tokenizer here, so a word is split into the same pieces wherever it is encoded; for a model that
reads word case from `token_type_ids` (`common.word_case`) the tokenizer is marked here, so the
same stages build the same types.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.checkpoint import read_config
from common.errors import InputFileError
from common.model_spec import uses_word_case

# set on a tokenizer whose model reads each word's case from token_type_ids (common.word_case)
_WORD_CASE_ATTRIBUTE = "ner_word_case"


def mark_word_case(tokenizer, enabled: bool = True):
    """Make every stage that encodes with `tokenizer` give each token its word's case as token type."""
    setattr(tokenizer, _WORD_CASE_ATTRIBUTE, bool(enabled))
    return tokenizer


def encodes_word_case(tokenizer) -> bool:
    return bool(getattr(tokenizer, _WORD_CASE_ATTRIBUTE, False))


def load_tokenizer(model_dir: Path):
    """The fast tokenizer of `model_dir`; one that cannot be loaded, or a slow one, is an InputFileError."""
    from transformers import AutoTokenizer  # seconds to import: deferred so that `--help` stays quick

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as err:  # noqa: BLE001 - any failure here means the folder lacks a usable tokenizer
        raise InputFileError(model_dir, f"cannot load its tokenizer ({type(err).__name__}: {err})") from None
    if not tokenizer.is_fast:
        raise InputFileError(model_dir, "has no fast tokenizer (tokenizer.json), needed for word alignment")
    if _byte_level_without_prefix_space(tokenizer):
        # A byte-level BPE (RoBERTa, GPT-2) marks a word start by the space before it; words passed
        # pre-split (is_split_into_words) get none unless asked, so every word but the first would be
        # tokenised as the inside of a word, unlike in the model's pretraining.
        tokenizer = AutoTokenizer.from_pretrained(model_dir, add_prefix_space=True)
    if (Path(model_dir) / "config.json").is_file():  # a tokenizer-only folder has no model to ask
        mark_word_case(tokenizer, uses_word_case(read_config(model_dir), Path(model_dir) / "config.json"))
    return tokenizer


def _byte_level_without_prefix_space(tokenizer) -> bool:
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer
    if pre_tokenizer is None:
        return False
    pending = [json.loads(pre_tokenizer.__getstate__())]  # a Sequence nests its pre-tokenizers
    while pending:
        node = pending.pop()
        if node.get("type") == "ByteLevel" and not node.get("add_prefix_space", False):
            return True
        pending.extend(node.get("pretokenizers") or [])
    return False
