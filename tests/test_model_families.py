"""Encoders without segment ids, end to end: a DistilBERT-style and a RoBERTa-style token classifier.

Both models are built here (2 layers, hidden 32, random weights, the 9 CoNLL labels, safetensors):
DistilBERT with the MiniLM WordPiece vocabulary, RoBERTa with a byte-level BPE trained here on
CoNLL-2003 train sentences (`<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>`). Neither takes
`token_type_ids`. Each goes through the real entry points: `python -m train.finetune` ->
`python -m convert.export` -> `bin_create.py` -> `python -m infer` -> `bert_metric.py`, the
raw-text predictor `python -m apps.predict`, and `python -m bench`; each stage must follow the
model spec's input names (`common.feeds.build_feed` builds every feed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import bench.peak as peak_mod
import bin_create
from bench.cli import main as bench_main
from bench.models import MODEL_FILES
from common.metrics import f1_score
from common.model_spec import read_model_spec
from common.tags import to_iob2
from conftest import CONLL_LABELS, ROOT
from convert.export import main as export_main
from convert.optimize import main as optimize_main
from engine import Engine
from infer.cli import infer_command
from postprocess.cli import main as metric_main
from preprocess.conll import read_conll
from preprocess.pipeline import load_tokenizer
from preprocess.plan import BatchPolicy
from preprocess.text import text_entities, word_spans
from runners.onnxrt import OrtRunner
from train.checkpoint import minilm_folder
from train.data import collate, encode as encode_examples
from train.finetune import main as finetune_main

FAMILIES = ("distilbert", "roberta")
NO_SEGMENTS = ("input_ids", "attention_mask")
TEXTS = ["Peter Blackburn flew from Berlin to the European Union on Monday.",
         "Japan beat Syria 2-1 in their Asian Cup match in Beijing."]


def label_maps() -> dict:
    return dict(num_labels=len(CONLL_LABELS), id2label=dict(enumerate(CONLL_LABELS)),
                label2id={label: i for i, label in enumerate(CONLL_LABELS)})


def build_distilbert(folder: Path) -> Path:
    """DistilBERT (no segment embeddings) with the MiniLM uncased WordPiece vocabulary."""
    import torch
    from transformers import DistilBertConfig, DistilBertForTokenClassification, DistilBertTokenizerFast

    tokenizer = DistilBertTokenizerFast.from_pretrained(minilm_folder())
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=512, **label_maps())
    DistilBertForTokenClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_byte_level_bpe(sentences, folder: Path, *, add_prefix_space: bool):
    """A RoBERTa tokenizer whose byte-level BPE is trained on `sentences` (CoNLL words)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator((" ".join(s.words) for s in sentences), vocab_size=1000, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    return RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                                add_prefix_space=add_prefix_space, model_max_length=512)


def build_roberta(folder: Path, sentences) -> Path:
    """RoBERTa (one segment type, positions counted from the padding id) with its own byte-level BPE.

    Saved with add_prefix_space=True: words given one by one need the space that marks a word start."""
    import torch
    from transformers import RobertaConfig, RobertaForTokenClassification

    tokenizer = train_byte_level_bpe(sentences, folder.parent / f"{folder.name}_bpe", add_prefix_space=True)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **label_maps())
    RobertaForTokenClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_slice(src: Path, dst: Path, n_lines: int) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()[:n_lines]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def invoke(command, args):
    """A Click entry point run in process, as its `python -m` / script form runs it."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, f"{command.name} {args}: {result.output}\n{result.exception!r}"
    return result


# ---------------------------------------------------------------- fixtures: one chain per family

@pytest.fixture(scope="module")
def data(conll, tmp_path_factory):
    folder = tmp_path_factory.mktemp("family_data")
    return {"train": write_slice(conll / "train.txt", folder / "train.txt", 500),
            "valid": write_slice(conll / "valid.txt", folder / "valid.txt", 150),
            "test": write_slice(conll / "test.txt", folder / "test.txt", 500),
            "bpe_sentences": read_conll(conll / "train.txt")[:1500]}


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, data, tmp_path_factory):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    base = (build_distilbert(folder / "base") if name == "distilbert"
            else build_roberta(folder / "base", data["bpe_sentences"]))
    return {"name": name, "folder": folder, "base": base}


@pytest.fixture(scope="module")
def trained(family, data):
    out = family["folder"] / "trained"
    invoke(finetune_main, ["--base", family["base"], "--train_file", data["train"], "--valid_file", data["valid"],
                           "--output_dir", out, "--epochs", 1, "--batch_size", 8, "--max_steps", 4, "--lr", 1e-3])
    return out


@pytest.fixture(scope="module")
def exported(family, trained):
    out = family["folder"] / "model.onnx"
    invoke(export_main, ["--model_dir", trained, "--output", out, "--num_sentences", 4])
    return out


@pytest.fixture(scope="module")
def binset(family, trained, data):
    save_dir = family["folder"] / "bins"
    invoke(bin_create.main, ["--input_file", data["test"], "--model_name_from_hub", trained, "--save_dir", save_dir,
                             "--seq_len", 128, "--buckets", "32,64"])
    (anno,) = save_dir.glob("bert_bin_*.anno")
    return {"bin_dir": anno.with_suffix(""), "anno": anno, "index": anno.with_suffix(".index.jsonl")}


@pytest.fixture(scope="module")
def scored(family, exported, binset):
    out = family["folder"] / "out"
    folders = ",".join(str(binset["bin_dir"] / name) for name in NO_SEGMENTS)
    invoke(infer_command, ["--model", exported, "--input", folders, "--output", out, "--output_dirname", "run"])
    predictions = family["folder"] / "predictions.txt"
    invoke(metric_main, ["--result_dir", out / "run", "--anno_file", binset["anno"], "--predictions", predictions])
    return {"result": json.loads((out / "run" / "result.json").read_text()), "predictions": predictions}


@pytest.fixture(scope="module")
def engine(trained, exported):
    spec = read_model_spec(trained)
    runner = OrtRunner.from_path(exported)
    runner.activate()
    yield Engine(runner, tokenizer=load_tokenizer(trained), input_names=spec.input_names, id2label=spec.id2label,
                 policy=BatchPolicy(max_rows=16), max_len=spec.max_positions)
    runner.deactivate()


# ---------------------------------------------------------------- the stages

def test_training_feeds_and_saves_no_token_type_ids(family, trained, data):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert "token_type_ids" not in tokenizer.model_input_names
    assert read_model_spec(trained, weights=True).input_names == NO_SEGMENTS
    model = AutoModelForTokenClassification.from_pretrained(trained)
    assert [model.config.id2label[i] for i in range(9)] == CONLL_LABELS
    assert (trained / "model.safetensors").is_file() and not (trained / "pytorch_model.bin").exists()
    # the training batches are the one feed builder's: the model's inputs, padded with its pad id
    examples = encode_examples(tokenizer, read_conll(data["valid"])[:6], model.config.label2id, 128)
    inputs, labels = collate(examples, range(6), tokenizer.pad_token_id, tokenizer.model_input_names)
    assert list(inputs) == list(NO_SEGMENTS)
    lengths = [len(e.input_ids) for e in examples]
    assert inputs["input_ids"].shape == labels.shape == (6, max(lengths))
    assert inputs["attention_mask"].sum(1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert inputs["input_ids"][short, lengths[short]:].eq(tokenizer.pad_token_id).all()
    assert model(**inputs).logits.shape == (6, max(lengths), 9)


def test_export_has_no_token_type_ids_input(exported):
    graph = onnx.load(str(exported)).graph
    assert [i.name for i in graph.input] == list(NO_SEGMENTS)
    assert [o.name for o in graph.output] == ["logits"]


def test_the_export_fuses_for_the_benchmark(family, trained, exported):
    """`convert.optimize` (the benchmark's ort_fused_fp32 and INT8 paths start from its graph) reads the
    heads and hidden size from the checkpoint, under any family's names (DistilBERT: n_heads, dim)."""
    fused = family["folder"] / "model_fused.onnx"
    invoke(optimize_main, ["--input", exported, "--output", fused, "--model_dir", trained, "--num_sentences", 4])
    ops = [node.op_type for node in onnx.load(str(fused)).graph.node]
    assert ops.count("Attention") == 2


def test_bin_create_writes_no_token_type_ids(binset):
    assert sorted(p.name for p in binset["bin_dir"].iterdir() if p.name != "gears") == sorted(NO_SEGMENTS)
    header = json.loads(binset["index"].read_text(encoding="utf-8").splitlines()[0])
    assert header["input_names"] == list(NO_SEGMENTS)


def test_infer_and_bert_metric_agree_with_the_engine(scored, engine, data):
    sentences = read_conll(data["test"])
    tags = engine.label([s.words for s in sentences])
    # bert_metric's `word gold pred` lines (IOB2-repaired): the file flow labels every word as the engine does
    blocks = [b for b in scored["predictions"].read_text(encoding="utf-8").split("\n\n") if b.strip()]
    file_tags = [[line.split()[-1] for line in block.splitlines()] for block in blocks]
    assert file_tags == [to_iob2(t) for t in tags]
    gold = [list(s.tags) for s in sentences]
    assert scored["result"]["num_sentences"] == len(sentences)
    assert scored["result"]["f1"] == pytest.approx(f1_score(gold, tags), abs=1e-12)


def test_a_sentence_longer_than_the_positions_is_windowed(engine, data):
    """RoBERTa's positions start after the padding id: 514 embeddings hold 512 tokens, no more."""
    words = [w for s in read_conll(data["train"]) for w in s.words][:700]
    assert engine.max_len == 512
    rows = engine.encode([words])
    assert rows.num_rows > 1 and int(rows.lengths.max()) <= 512
    assert len(engine.label([words])[0]) == len(words)


def test_predict_raw_text(trained, exported, engine):
    proc = subprocess.run([sys.executable, "-m", "apps.predict", "--model_dir", str(trained), "--onnx",
                           str(exported), *TEXTS], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["text"] for line in lines] == TEXTS
    for text, line in zip(TEXTS, lines):
        spans = word_spans(engine.tokenizer, text)
        assert [text[s:e] for s, e in spans][:3] == text.split()[:3]  # words, not word pieces
        labels = engine.label_with_probs([[text[s:e] for s, e in spans]])
        expected = text_entities(text, spans, labels.tags[0], labels.probs[0])
        assert [(e["start"], e["end"], e["type"], e["text"]) for e in line["entities"]] == \
               [(e.start, e.end, e.type, e.text) for e in expected]
        for entity in line["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["text"] == entity["text"].strip()


def test_benchmark_completes_with_f1(family, trained, exported, scored, data, monkeypatch):
    work = family["folder"] / "bench"
    work.mkdir()
    shutil.copy(exported, work / MODEL_FILES["plain"])  # --reuse: the export made above
    monkeypatch.setattr(peak_mod, "DEFAULT_SHAPES", ((128, 64, 64),))
    out = work / "b.json"
    invoke(bench_main, ["--model_dir", trained, "--input_file", data["test"], "--sample", 8, "--repeats", 1,
                        "--warmup", 2, "--paths", "torch_batched,ort_bucketed_fp32", "--no_batch_table",
                        "--work_dir", work, "--reuse", "--json", out])
    report = json.loads(out.read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert list(runs) == ["torch_batched", "ort_bucketed_fp32"]
    assert runs["torch_batched"]["f1"] == runs["ort_bucketed_fp32"]["f1"] == pytest.approx(scored["result"]["f1"])
    assert runs["ort_bucketed_fp32"]["label_agreement_vs_torch"] == 1.0
    assert report["model"]["layers"] == 2 and report["model"]["hidden"] == 32
    assert report["file_flow"]["same_f1"] is True
    # only the graphs the chosen paths run were made
    assert not (work / MODEL_FILES["fused"]).exists() and not (work / MODEL_FILES["int8_dynamic"]).exists()


# ---------------------------------------------------------------- the byte-level BPE's word-start space

def test_load_tokenizer_gives_a_byte_level_bpe_its_word_start_space(data, tmp_path):
    """A RoBERTa tokenizer saved without add_prefix_space (roberta-base's is) still marks every word's start."""
    tokenizer = train_byte_level_bpe(data["bpe_sentences"][:300], tmp_path / "bpe", add_prefix_space=False)
    tokenizer.save_pretrained(tmp_path / "tok")
    words = ["EU", "rejects", "German", "call"]
    loaded = load_tokenizer(tmp_path / "tok")
    enc = loaded(words, is_split_into_words=True)
    pieces = loaded.convert_ids_to_tokens(enc["input_ids"])
    firsts = [pieces[enc.word_ids().index(w)] for w in range(len(words))]
    assert all(piece.startswith("\u0120") for piece in firsts), pieces  # Ġ: the byte-level space


def test_training_gives_a_byte_level_bpe_its_word_start_space(data, tmp_path):
    """Fine-tuning a RoBERTa base whose tokenizer was saved without add_prefix_space: training must see
    the word pieces inference sees (`load_tokenizer`), and the saved checkpoint must say so."""
    from transformers import AutoTokenizer

    base = build_roberta(tmp_path / "base", data["bpe_sentences"][:300])
    AutoTokenizer.from_pretrained(base, add_prefix_space=False).save_pretrained(base)
    out = tmp_path / "trained"
    invoke(finetune_main, ["--base", base, "--train_file", data["train"], "--valid_file", data["valid"],
                           "--output_dir", out, "--epochs", 1, "--batch_size", 8, "--max_steps", 1])
    saved = AutoTokenizer.from_pretrained(out)
    enc = saved(["EU", "rejects", "German"], is_split_into_words=True)
    pieces = saved.convert_ids_to_tokens(enc["input_ids"])
    assert all(pieces[enc.word_ids().index(w)].startswith("\u0120") for w in range(3)), pieces
