"""Broken checkpoint folders are refused by every stage that loads one, in one line naming the folder.

transformers itself accepts a folder with no tokenizer files (a 5-token tokenizer: every word
becomes [UNK]), loads pickle weights, and fails deep inside torch on a truncated safetensors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.checkpoint import check_checkpoint, tokenizer_vocab_size, weight_tensors
from common.errors import InputFileError
from common.model_spec import read_model_spec
from conftest import ROOT, build_tiny_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
SENTENCE = "EU rejects German call to boycott British lamb ."


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("ckpt") / "tiny", layers=1, hidden=32, heads=2)


@pytest.fixture
def model_copy(base_model, tmp_path):
    return Path(shutil.copytree(base_model, tmp_path / "model"))


def _without_tokenizer(folder: Path) -> Path:
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    return folder


def _edit_config(folder: Path, **changes) -> Path:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config))
    return folder


def _stage_commands(model_dir: Path, tmp_path: Path, conll: Path) -> dict[str, tuple[list[str], Path]]:
    """Each entry point that loads a checkpoint -> (its command line, the output it must not write)."""
    return {
        "bin_create": ([sys.executable, str(ROOT / "bin_create.py"), "--input_file", str(conll / "test.txt"),
                        "--model_name_from_hub", str(model_dir), "--save_dir", str(tmp_path / "bins"),
                        "--seq_len", "64"], tmp_path / "bins"),
        "export": ([sys.executable, "-m", "convert.export", "--model_dir", str(model_dir),
                    "--output", str(tmp_path / "out" / "m.onnx")], tmp_path / "out"),
        "predict": ([sys.executable, "-m", "apps.predict", "--model_dir", str(model_dir),
                     "--html", str(tmp_path / "out.html"), SENTENCE], tmp_path / "out.html"),
        "predict_torch": ([sys.executable, "-m", "apps.predict", "--model_dir", str(model_dir), "--backend", "torch",
                           "--html", str(tmp_path / "out.html"), SENTENCE], tmp_path / "out.html"),
    }


def _run_stage(stage: str, model_dir: Path, tmp_path: Path, conll: Path) -> str:
    """Run one stage on `model_dir`; assert exit 1, one `error:` line on stderr, nothing written."""
    command, output = _stage_commands(model_dir, tmp_path, conll)[stage]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model_dir}"), proc.stderr
    assert not output.exists()
    return lines[0]


@pytest.mark.parametrize("stage", ["bin_create", "export", "predict", "predict_torch"])
def test_folder_without_tokenizer_files_is_refused(stage, model_copy, tmp_path, conll):
    line = _run_stage(stage, _without_tokenizer(model_copy), tmp_path, conll)
    assert "no tokenizer files" in line and "tokenizer.json" in line and "vocab.txt" in line


@pytest.mark.parametrize("stage", ["bin_create", "export"])
def test_tokenizer_bigger_than_the_embedding_table_is_refused(stage, tmp_path, conll):
    """A 30522-token tokenizer on a model with 1000 embedding rows: ids past the table."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from train.checkpoint import minilm_folder

    labels = ["O", "B-PER", "I-PER"]
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    model_dir = tmp_path / "small_vocab"
    BertForTokenClassification(config).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(model_dir)
    line = _run_stage(stage, model_dir, tmp_path, conll)
    assert "30522 tokens" in line and "1000 embedding rows" in line


@pytest.mark.parametrize("id2label, label2id, problem", [
    (["O", "B-PER", "I-PER"], {"O": 0, "B-PER": 1, "I-PER": 2}, "id2label must be a non-empty object"),
    ({"zero": "O", "one": "B-PER"}, {"O": 0, "B-PER": 1}, "id2label key 'zero' is not an integer"),
    ({"0": "O", "2": "B-PER"}, {"O": 0, "B-PER": 2}, "id2label keys [0, 2] are not 0..1"),
    ({"0": "O", "1": "B-PER"}, {"O": 0, "B-PER": 5}, "label2id does not match id2label"),
])
def test_malformed_label_maps_are_refused(id2label, label2id, problem, model_copy, tmp_path, conll):
    _edit_config(model_copy, id2label=id2label, label2id=label2id)
    line = _run_stage("bin_create", model_copy, tmp_path, conll)
    assert line.startswith(f"error: {model_copy / 'config.json'}: ") and problem in line


def test_export_refuses_a_label_count_that_differs_from_the_weights(model_copy, tmp_path, conll):
    labels = ["O", "B-PER", "I-PER"]  # the weights' classifier has 9 outputs
    _edit_config(model_copy, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    line = _run_stage("export", model_copy, tmp_path, conll)
    assert "config.json has 3 labels but classifier.weight in model.safetensors has 9 outputs" in line


def test_export_refuses_a_truncated_safetensors(model_copy, tmp_path, conll):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = _run_stage("export", model_copy, tmp_path, conll)
    assert "model.safetensors: is truncated" in line


def test_export_refuses_pickle_only_weights_by_name(model_copy, tmp_path, conll):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model_copy / "model.safetensors"), model_copy / "pytorch_model.bin")
    (model_copy / "model.safetensors").unlink()
    line = _run_stage("export", model_copy, tmp_path, conll)
    assert "has only pytorch_model.bin weights; this project loads safetensors only" in line


def test_folders_that_need_no_weights_pass_without_them(model_copy):
    """bin_create and ONNX-based predict read config + tokenizer only."""
    (model_copy / "model.safetensors").unlink()
    assert read_model_spec(model_copy).num_labels == 9
    with pytest.raises(InputFileError, match="has no weights"):
        read_model_spec(model_copy, weights=True)


def test_sharded_weights_are_read_from_every_shard(base_model, tmp_path):
    from transformers import AutoModelForTokenClassification

    sharded = tmp_path / "sharded"
    AutoModelForTokenClassification.from_pretrained(base_model).save_pretrained(sharded, max_shard_size="500KB")
    shutil.copy(base_model / "tokenizer.json", sharded)
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").is_file()
    tensors = weight_tensors(sharded, required=True)
    assert tensors["bert.embeddings.word_embeddings.weight"].shape[0] == tokenizer_vocab_size(sharded)
    check_checkpoint(sharded, weights=True)
    last = shards[-1]
    last.write_bytes(last.read_bytes()[:-4])
    with pytest.raises(InputFileError, match=f"{last.name}: is truncated"):
        check_checkpoint(sharded, weights=True)


def test_the_default_model_and_the_minilm_base_pass():
    from common.paths import DEFAULT_MODEL_DIR
    from train.checkpoint import minilm_folder

    check_checkpoint(DEFAULT_MODEL_DIR, weights=True)
    check_checkpoint(minilm_folder(), weights=True, labels=False)
    assert tokenizer_vocab_size(minilm_folder()) == 30522
