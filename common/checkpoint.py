"""Is this folder a usable Hugging Face checkpoint? Answered from small files only, before any load.

transformers accepts a folder with only `config.json` + weights and hands back a 5-token
tokenizer that maps every word to `[UNK]`; it loads a `pytorch_model.bin` through pickle; a
truncated `.safetensors` fails deep inside torch. Every stage that loads a checkpoint calls
`check_checkpoint` first, so each of these is one line naming the folder and the problem.

Reads config.json, the tokenizer files and the safetensors header (8-byte little-endian
length + JSON), never the weights themselves, and imports neither torch nor transformers.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import InputFileError, existing_path

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# A header bigger than this is not a safetensors header (the format itself caps it at 100 MB).
MAX_HEADER_BYTES = 100_000_000
# Fast tokenizer file, or the files a slow tokenizer is built from (transformers converts those).
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spiece.model",),
                       ("sentencepiece.bpe.model",), ("tokenizer.model",))
TOKENIZER_FILES_WANTED = "tokenizer.json, or vocab.txt, or vocab.json + merges.txt"


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    file: Path


def read_config(model_dir) -> dict:
    """config.json of `model_dir` as a dict; a missing folder/file or bad JSON is an InputFileError."""
    model_dir = existing_path(model_dir, "model folder", folder=True)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputFileError(model_dir, "not a Hugging Face checkpoint folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputFileError(config_path, f"not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise InputFileError(config_path, "is not a JSON object")
    return config


def parse_label_maps(config: dict, config_path) -> tuple[dict[int, str], dict[str, int]]:
    """id2label (keys 0..n-1) and label2id that agree with it; anything else names config.json."""
    id2label, label2id = config.get("id2label"), config.get("label2id")
    if id2label is None or label2id is None:
        raise InputFileError(config_path, "has no id2label/label2id: not a token-classification checkpoint")
    if not isinstance(id2label, dict) or not id2label:
        raise InputFileError(config_path, "id2label must be a non-empty object {\"0\": label, ...}, "
                                          f"not {type(id2label).__name__}")
    if not isinstance(label2id, dict):
        raise InputFileError(config_path, f"label2id must be an object {{label: id}}, not {type(label2id).__name__}")
    ids = {}
    for key, label in id2label.items():
        if not _is_int_like(key):
            raise InputFileError(config_path, f"id2label key {key!r} is not an integer")
        if not isinstance(label, str) or not label:
            raise InputFileError(config_path, f"id2label[{key!r}] is {label!r}, not a label name")
        ids[int(key)] = label
    if sorted(ids) != list(range(len(ids))):
        raise InputFileError(config_path, f"id2label keys {sorted(ids)} are not 0..{len(ids) - 1}")
    if len(set(ids.values())) != len(ids):
        raise InputFileError(config_path, "id2label names the same label twice")
    if not all(_is_int_like(v) for v in label2id.values()):
        raise InputFileError(config_path, "label2id values must be integers")
    label2id = {label: int(i) for label, i in label2id.items()}
    if label2id != {label: i for i, label in ids.items()}:
        raise InputFileError(config_path, "label2id does not match id2label")
    return ids, label2id


def _is_int_like(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def check_checkpoint(model_dir, *, weights: bool = False, tokenizer: bool = True, labels: bool = True) -> None:
    """Refuse a folder the loaders would misread, with one line naming the folder (or file) and the problem.

    weights: the stage loads the weights (export, the torch runner, training), so they must be
    there as safetensors and readable. tokenizer: the stage tokenizes. labels: the config must
    be a token classifier's (training from a plain encoder passes labels=False).
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    tensors = weight_tensors(model_dir, required=weights)
    if labels:
        num_labels = len(parse_label_maps(config, model_dir / "config.json")[0])
        _check_classifier(model_dir, tensors, num_labels)
    if tokenizer:
        vocab = tokenizer_vocab_size(model_dir)
        rows, where = _embedding_rows(model_dir, config, tensors)
        if vocab is not None and rows is not None and vocab > rows:
            raise InputFileError(model_dir, f"the tokenizer has {vocab} tokens but {where} has only {rows} "
                                            "embedding rows: the tokenizer belongs to another model")


def _check_classifier(model_dir: Path, tensors: dict[str, TensorInfo], num_labels: int) -> None:
    heads = [(name, info) for name, info in tensors.items()
             if name.endswith(("classifier.weight", "score.weight")) and len(info.shape) == 2]
    if not heads:
        return  # a plain encoder (training adds the head)
    name, info = heads[0]
    if info.shape[0] != num_labels:
        raise InputFileError(model_dir, f"config.json has {num_labels} labels but {name} in {info.file.name} has "
                                        f"{info.shape[0]} outputs")


def _embedding_rows(model_dir: Path, config: dict, tensors: dict[str, TensorInfo]):
    for name, info in tensors.items():
        if name.endswith("word_embeddings.weight") and info.shape:
            return info.shape[0], f"{name} in {info.file.name}"
    size = config.get("vocab_size")
    if isinstance(size, int) and not isinstance(size, bool):
        return size, "config.json (vocab_size)"
    return None, None


# ---------------------------------------------------------------- tokenizer files

def check_tokenizer_folder(folder, *, embedding_rows: int | None = None, rows_from: str = "the model") -> None:
    """A folder used only for its tokenizer (e.g. to feed an ONNX graph): files there, ids that fit."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "tokenizer folder does not exist" if not folder.exists() else
                             "tokenizer folder is a file, not a folder")
    vocab = tokenizer_vocab_size(folder)
    if vocab is not None and embedding_rows is not None and vocab > embedding_rows:
        raise InputFileError(folder, f"the tokenizer has {vocab} tokens but {rows_from} has only {embedding_rows} "
                                     "embedding rows: the tokenizer belongs to another model")


def tokenizer_vocab_size(model_dir) -> int | None:
    """Highest token id + 1 the tokenizer can produce (None where that needs sentencepiece to tell).

    Refuses a folder with no tokenizer files, which transformers would otherwise accept.
    """
    model_dir = Path(model_dir)
    present = [files for files in TOKENIZER_FILE_SETS if all((model_dir / f).is_file() for f in files)]
    if not present:
        missing = [f for f in ("tokenizer.json", "vocab.txt") if not (model_dir / f).is_file()]
        raise InputFileError(model_dir, f"has no tokenizer files (missing {' and '.join(missing)}; "
                                        f"needs {TOKENIZER_FILES_WANTED})")
    files = present[0]
    path = model_dir / files[0]
    if files == ("tokenizer.json",):
        ids = _tokenizer_json_ids(path)
    elif files == ("vocab.txt",):
        ids = _vocab_txt_ids(path)
    elif files == ("vocab.json", "merges.txt"):
        ids = list(_json_object(path).values())
    else:
        return None
    ids += _added_token_ids(model_dir)
    ints = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    return max(ints) + 1 if ints else 0


def _tokenizer_json_ids(path: Path) -> list:
    data = _json_object(path)
    model = data.get("model")
    if not isinstance(model, dict):
        raise InputFileError(path, "has no \"model\" section: not a tokenizers file")
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        ids = list(vocab.values())
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], the id is the position
        ids = list(range(len(vocab)))
    else:
        raise InputFileError(path, "has no vocabulary (model.vocab)")
    added = data.get("added_tokens") or []
    return ids + [t.get("id") for t in added if isinstance(t, dict)]


def _vocab_txt_ids(path: Path) -> list:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"cannot be read as UTF-8 text ({err})") from None
    return list(range(len(lines)))


def _added_token_ids(model_dir: Path) -> list:
    path = model_dir / "added_tokens.json"
    return list(_json_object(path).values()) if path.is_file() else []


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "is not a JSON object")
    return data


# ---------------------------------------------------------------- safetensors headers

def weight_tensors(model_dir, *, required: bool) -> dict[str, TensorInfo]:
    """Tensor name -> shape of the checkpoint's safetensors weights, from their headers.

    required: a folder without safetensors weights is refused (by name when it has only the
    pickle format); otherwise such a folder gives {} and a broken file is ignored here.
    """
    model_dir = Path(model_dir)
    if (model_dir / SAFETENSORS_INDEX).is_file():
        files = _shard_files(model_dir / SAFETENSORS_INDEX)
    elif (model_dir / SAFETENSORS).is_file():
        files = [model_dir / SAFETENSORS]
    elif not required:
        return {}
    elif any((model_dir / name).is_file() for name in PICKLE_WEIGHTS):
        raise InputFileError(model_dir, "has only pytorch_model.bin weights; this project loads safetensors only "
                                        "(load it once and save_pretrained() it again to write model.safetensors)")
    else:
        raise InputFileError(model_dir, f"has no weights (missing {SAFETENSORS})")
    tensors = {}
    for path in files:
        try:
            header = read_safetensors_header(path)
        except InputFileError:
            if required:
                raise
            return {}
        for name, entry in header.items():
            tensors[name] = TensorInfo(tuple(entry["shape"]), path)
    return tensors


def _shard_files(index_path: Path) -> list[Path]:
    weight_map = _json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputFileError(index_path, "has no weight_map")
    files = []
    for name in dict.fromkeys(weight_map.values()):
        path = index_path.parent / str(name)
        if not path.is_file():
            raise InputFileError(index_path, f"names shard {name} that is not in the folder")
        files.append(path)
    return files


def read_safetensors_header(path) -> dict[str, dict]:
    """The tensor entries of a .safetensors header; a file too short for its own offsets is truncated."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InputFileError(path, f"is truncated or not a safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise InputFileError(path, f"is truncated or not a safetensors file (header of {length} bytes, "
                                       f"file of {size})")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputFileError(path, "is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputFileError(path, "is not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and isinstance(shape, list)):
            raise InputFileError(path, f"is not a safetensors file (bad header entry for {name!r})")
        end = max(end, int(offsets[1]))
    if 8 + length + end > size:
        raise InputFileError(path, f"is truncated: its tensors need {8 + length + end} bytes, the file has {size}")
    return header
