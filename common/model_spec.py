"""What a checkpoint folder takes and gives, as data (the exporter and the runners read this).

Input names come from the tokenizer's `model_input_names`, so a model without
`token_type_ids` (DistilBERT) needs no special case anywhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .checkpoint import check_checkpoint, parse_label_maps, read_config
from .errors import ValidationError
from .word_case import CASE_CLASSES, CONFIG_KEY as WORD_CASE_KEY, CONFIG_VALUE as WORD_CASE_VALUE

# The order in which inputs appear in ONNX graphs, .bin folders and ATC shapes.
CANONICAL_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")

OUTPUT_NAME = "logits"

# Dynamic axes for export: batch and sequence for every input, batch and sequence for logits.
DYNAMIC_AXES = {name: {0: "batch", 1: "sequence"} for name in CANONICAL_INPUT_ORDER}
DYNAMIC_AXES[OUTPUT_NAME] = {0: "batch", 1: "sequence"}


# How words reach the model: each sentence on its own, or the sentences of a document as one windowed sequence.
CONTEXTS = ("sentence", "document")


@dataclass(frozen=True)
class TrainedContext:
    """How the model saw its training data (config.json `ner_context`, written by `train.finetune`):
    `sentence`, or `document` windows of `seq_len` tokens overlapping by `window_overlap`. Checkpoints
    without the key were trained on sentences."""

    context: str = "sentence"
    seq_len: Optional[int] = None
    window_overlap: Optional[int] = None

    def as_config(self) -> dict:
        return {"context": self.context, "seq_len": self.seq_len, "window_overlap": self.window_overlap}


CONTEXT_KEY = "ner_context"

# document windows where the model does not say: 256 tokens overlapping by 64 (what bench.context measured best)
DEFAULT_DOCUMENT_WINDOWS = (256, 64)


def context_to_run(trained: TrainedContext, context: Optional[str] = None) -> TrainedContext:
    """How to feed a model: `context` (None: the one it was trained in), with the trained windows where it
    was trained in documents, else DEFAULT_DOCUMENT_WINDOWS; sentence context has no windows of its own."""
    context = context or trained.context
    if context not in CONTEXTS:
        raise ValidationError(f"--context {context!r}: expected one of {', '.join(CONTEXTS)}")
    if context == "sentence":
        return TrainedContext()
    if trained.context == "document" and trained.seq_len:
        return trained
    return TrainedContext("document", *DEFAULT_DOCUMENT_WINDOWS)


def trained_context(config: Mapping, config_path: Path) -> TrainedContext:
    found = config.get(CONTEXT_KEY)
    if found is None:
        return TrainedContext()
    ok = isinstance(found, dict) and found.get("context") in CONTEXTS and all(
        found.get(key) is None or (isinstance(found.get(key), int) and found.get(key) >= 0)
        for key in ("seq_len", "window_overlap"))
    if not ok:
        raise ValidationError(f"{config_path}: {CONTEXT_KEY} must be {{\"context\": \"sentence\"|\"document\", "
                              f"\"seq_len\": int, \"window_overlap\": int}}, not {json.dumps(found)[:80]}")
    return TrainedContext(found["context"], found.get("seq_len"), found.get("window_overlap"))


def uses_word_case(config: Mapping, config_path: Path) -> bool:
    """Whether the model was trained with each word's case in `token_type_ids` (`common.word_case`):
    config.json `"ner_word_case": "token_type_ids"`, with room for the classes in the segment embedding."""
    found = config.get(WORD_CASE_KEY)
    if found is None:
        return False
    if found != WORD_CASE_VALUE:
        raise ValidationError(f"{config_path}: {WORD_CASE_KEY} must be \"{WORD_CASE_VALUE}\", not {json.dumps(found)[:80]}")
    if int(config.get("type_vocab_size", 0)) < CASE_CLASSES:
        raise ValidationError(f"{config_path}: {WORD_CASE_KEY} needs type_vocab_size >= {CASE_CLASSES}, "
                              f"not {config.get('type_vocab_size')}")
    return True


@dataclass(frozen=True)
class ModelSpec:
    model_dir: Path
    input_names: tuple[str, ...]
    id2label: dict[int, str]
    label2id: dict[str, int]
    model_type: str
    max_positions: int
    trained_context: TrainedContext = TrainedContext()
    word_case: bool = False  # token_type_ids carry each word's case (common.word_case)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


def read_model_spec(model_dir, *, weights: bool = False) -> ModelSpec:
    """Input names and the label map of a local checkpoint folder, without loading weights.

    The folder is validated first (`common.checkpoint.check_checkpoint`): config, labels and
    tokenizer files always, the safetensors weights too when `weights` (the caller loads them).
    """
    model_dir = Path(model_dir)
    check_checkpoint(model_dir, weights=weights)
    config = read_config(model_dir)
    id2label, label2id = parse_label_maps(config, model_dir / "config.json")
    model_type = config.get("model_type", "bert")
    input_names = _input_names(model_dir, model_type)
    return ModelSpec(
        model_dir=model_dir,
        input_names=input_names,
        id2label=id2label,
        label2id=label2id,
        model_type=model_type,
        max_positions=_usable_positions(config, model_type),
        trained_context=trained_context(config, model_dir / "config.json"),
        word_case=uses_word_case(config, model_dir / "config.json"),
    )


# Families whose position ids count from the padding id + 1 (RoBERTa's `create_position_ids_from_input_ids`):
# of their `max_position_embeddings` (514 for roberta-base), only the rest hold tokens (512).
_POSITIONS_AFTER_PADDING = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer"}


def _usable_positions(config: dict, model_type: str) -> int:
    positions = int(config.get("max_position_embeddings", 512))
    if model_type in _POSITIONS_AFTER_PADDING:
        positions -= int(config.get("pad_token_id", 1)) + 1
    return positions


# config.json names of the encoder's sizes: BERT's (RoBERTa's, ...) first, then DistilBERT's own.
ENCODER_SIZE_NAMES = {"layers": ("num_hidden_layers", "n_layers"), "hidden": ("hidden_size", "dim"),
                      "heads": ("num_attention_heads", "n_heads"), "intermediate": ("intermediate_size", "hidden_dim")}


def encoder_size(config: Mapping, size: str) -> Optional[int]:
    """One of the encoder's sizes (`ENCODER_SIZE_NAMES`: layers, hidden, heads, intermediate) from a
    config.json dict, whatever the family calls it; None when the config has none of its names."""
    for name in ENCODER_SIZE_NAMES[size]:
        if config.get(name) is not None:
            return int(config[name])
    return None


# Model families whose encoders take no segment ids.
_NO_TOKEN_TYPE_IDS = {"distilbert", "roberta", "xlm-roberta", "camembert", "deberta-v2"}


def _input_names(model_dir: Path, model_type: str) -> tuple[str, ...]:
    tok_config = model_dir / "tokenizer_config.json"
    names = None
    if tok_config.is_file():
        try:
            names = json.loads(tok_config.read_text(encoding="utf-8")).get("model_input_names")
        except ValueError:
            names = None
    if not names:
        names = [n for n in CANONICAL_INPUT_ORDER
                 if not (n == "token_type_ids" and model_type in _NO_TOKEN_TYPE_IDS)]
    return tuple(n for n in CANONICAL_INPUT_ORDER if n in names)
