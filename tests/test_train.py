"""train.finetune: a few real steps on real sentences, label filtering, and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from preprocess.conll import read_conll
from train.data import encode, filter_types, label_list
from train.finetune import TrainConfig, finetune, main as finetune_cli


def write_slice(src: Path, dst: Path, n_lines: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()[:n_lines]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def slices(conll, tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices")
    return (write_slice(conll / "train.txt", folder / "train.txt", 1500),
            write_slice(conll / "valid.txt", folder / "valid.txt", 400))


@pytest.fixture(scope="module")
def trained(slices, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    cfg = TrainConfig(base=str(tiny_model_dir), train_file=slices[0], valid_file=slices[1], output_dir=out,
                      epochs=2, lr=3e-3, batch_size=8, seed=7, warmup_ratio=0.05, average_last=2)
    return finetune(cfg)


def test_loss_falls_and_the_output_is_an_ordinary_checkpoint(trained):
    losses = trained.losses
    assert len(losses) >= 20
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(trained.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(trained.output_dir)
    assert model.config.id2label[0] == "O"
    assert set(model.config.label2id) == {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
    assert tokenizer.is_fast
    card = (trained.output_dir / "MODEL_CARD.md").read_text()
    assert "sha256" in card and "| 1 |" in card and "| 2 |" in card
    # the weight average of the last two epochs was scored on valid and reported
    assert [m["epoch"] for m in trained.epochs] == [1, 2, "avg 1-2"]
    assert "| avg 1-2 |" in card


def test_same_seed_gives_the_same_model(slices, tiny_model_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = TrainConfig(base=str(tiny_model_dir), train_file=slices[0], valid_file=slices[1],
                          output_dir=tmp_path / name, epochs=1, lr=1e-3, batch_size=8, seed=3, max_steps=6)
        runs.append(finetune(cfg).losses)
    assert runs[0] == runs[1]


def test_labels_filter_turns_other_types_into_o(conll, tiny_model_dir):
    sentences = read_conll(conll / "train.txt")[:300]
    kept = filter_types(sentences, ("PER", "LOC"), "train.txt")
    assert label_list(kept, ("PER", "LOC")) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    changed = 0
    for before, after in zip(sentences, kept):
        for b, a in zip(before.tags, after.tags):
            if b[2:] in ("PER", "LOC"):
                assert a == b
            else:
                assert a == "O"
                changed += b != "O"
    assert changed > 50  # the slice really had ORG / MISC entities to drop
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    label2id = {l: i for i, l in enumerate(label_list(kept, ("PER", "LOC")))}
    examples = encode(tokenizer, kept, label2id, 128)
    seen = {l for e in examples for l in e.labels if l >= 0}
    assert seen == set(label2id.values())


def test_labels_option_trains_a_four_label_subset(slices, tiny_model_dir, tmp_path):
    result = CliRunner().invoke(finetune_cli, [
        "--base", str(tiny_model_dir), "--train_file", str(slices[0]), "--valid_file", str(slices[1]),
        "--output_dir", str(tmp_path / "m"), "--epochs", "1", "--max_steps", "3", "--labels", "PER,ORG"])
    assert result.exit_code == 0, result.output
    import json

    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert sorted(config["label2id"]) == ["B-ORG", "B-PER", "I-ORG", "I-PER", "O"]


def _run(args):
    result = CliRunner().invoke(finetune_cli, args)
    return result.exit_code, result.output.strip()


def test_errors_are_one_line(slices, tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    common = ["--valid_file", str(slices[1]), "--epochs", "1", "--max_steps", "1"]

    code, out = _run(["--base", str(tiny_model_dir), "--train_file", str(empty), "--output_dir", str(tmp_path / "o1")] + common)
    assert code == 1 and "empty.txt: holds no sentences" in out and "\n" not in out

    not_ckpt = tmp_path / "not_a_model"
    not_ckpt.mkdir()
    (not_ckpt / "notes.txt").write_text("hello")
    code, out = _run(["--base", str(not_ckpt), "--train_file", str(slices[0]), "--output_dir", str(tmp_path / "o2")] + common)
    assert code == 1 and "not_a_model: is not a Hugging Face checkpoint" in out and "\n" not in out

    code, out = _run(["--base", str(tiny_model_dir), "--train_file", str(slices[0]), "--output_dir", str(tmp_path / "o3"),
                      "--labels", "PER,DATE"] + common)
    assert code == 1 and "--labels names DATE, which the data does not have" in out and "\n" not in out

    code, out = _run(["--base", str(tiny_model_dir), "--train_file", str(slices[0]),
                      "--output_dir", str(tiny_model_dir)] + common)
    assert code == 1 and "already holds a model; pass --overwrite" in out and "\n" not in out
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def test_base_without_tokenizer_files_or_safetensors_is_refused(slices, tiny_model_dir, tmp_path):
    """transformers would train on a 5-token [UNK] tokenizer, or unpickle pytorch_model.bin: both refused."""
    import shutil

    import torch
    from safetensors.torch import load_file

    common = ["--train_file", str(slices[0]), "--valid_file", str(slices[1]), "--epochs", "1", "--max_steps", "1"]
    no_tokenizer = Path(shutil.copytree(tiny_model_dir, tmp_path / "no_tokenizer"))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    code, out = _run(["--base", str(no_tokenizer), "--output_dir", str(tmp_path / "o1")] + common)
    assert code == 1 and "\n" not in out
    assert out.startswith(f"error: {no_tokenizer}: has no tokenizer files") and "tokenizer.json" in out

    pickled = Path(shutil.copytree(tiny_model_dir, tmp_path / "pickled"))
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    code, out = _run(["--base", str(pickled), "--output_dir", str(tmp_path / "o2")] + common)
    assert code == 1 and "\n" not in out
    assert out == (f"error: {pickled}: has only pytorch_model.bin weights; this project loads safetensors only "
                   "(load it once and save_pretrained() it again to write model.safetensors)")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_trained_folder_goes_through_export_infer_and_scoring(trained, slices, tmp_path):
    """The fine-tuned folder is taken as it is by the rest of the flow."""
    from convert.export import export_onnx
    from infer.offline import run_offline
    from postprocess.score import score_run
    from preprocess.pipeline import create_bins

    onnx_path = tmp_path / "model.onnx"
    export_onnx(model_dir=trained.output_dir, output=onnx_path)
    binset = create_bins(slices[1], trained.output_dir, tmp_path / "bins", seq_len=128, buckets=(32, 64),
                         show_progress=False)
    run = run_offline(model=onnx_path, input=",".join(str(d) for d in binset.input_dirs()),
                      output=tmp_path / "result", outfmt="NPY", batchsize=8, log=lambda _: None, progress=False)
    outputs = sorted(run.out_dir.glob("*_0.npy"))
    header = binset.index_file.read_text().splitlines()[0]
    assert len(outputs) == json.loads(header)["num_samples"]
    result = score_run(result_dir=run.out_dir, anno_file=binset.anno_file).result
    assert result["num_words"] == sum(len(s) for s in read_conll(slices[1]))
    # the ONNX flow scores the valid file as PyTorch did for the kept weights at the end of training
    assert result["f1"] == pytest.approx(max(m["f1"] for m in trained.epochs), abs=0.01)
