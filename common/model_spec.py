"""What a checkpoint folder takes and gives, as data (the exporter and the runners read this).

Input names come from the tokenizer's `model_input_names`, so a model without
`token_type_ids` (DistilBERT) needs no special case anywhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InputFileError

# The order in which inputs appear in ONNX graphs, .bin folders and ATC shapes.
CANONICAL_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")

OUTPUT_NAME = "logits"

# Dynamic axes for export: batch and sequence for every input, batch and sequence for logits.
DYNAMIC_AXES = {name: {0: "batch", 1: "sequence"} for name in CANONICAL_INPUT_ORDER}
DYNAMIC_AXES[OUTPUT_NAME] = {0: "batch", 1: "sequence"}


@dataclass(frozen=True)
class ModelSpec:
    model_dir: Path
    input_names: tuple[str, ...]
    id2label: dict[int, str]
    label2id: dict[str, int]
    model_type: str
    max_positions: int

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


def read_model_spec(model_dir) -> ModelSpec:
    """Read input names and the label map from a local checkpoint folder, without loading weights."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise InputFileError(model_dir, "model folder does not exist")
    if not config_path.is_file():
        raise InputFileError(model_dir, "not a Hugging Face checkpoint folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputFileError(config_path, f"not valid JSON ({err})") from None
    if "id2label" not in config or "label2id" not in config:
        raise InputFileError(config_path, "has no id2label/label2id: not a token-classification checkpoint")
    id2label = {int(k): v for k, v in config["id2label"].items()}
    label2id = {k: int(v) for k, v in config["label2id"].items()}
    model_type = config.get("model_type", "bert")
    input_names = _input_names(model_dir, model_type)
    return ModelSpec(
        model_dir=model_dir,
        input_names=input_names,
        id2label=id2label,
        label2id=label2id,
        model_type=model_type,
        max_positions=int(config.get("max_position_embeddings", 512)),
    )


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
