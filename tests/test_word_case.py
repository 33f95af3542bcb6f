"""Word case through token_type_ids (`common.word_case`): the classes, training with `--word_case`,
every stage building the same types (bin_create's files, the engine's feeds, ONNX = PyTorch), errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from common.errors import ValidationError
from common.feeds import build_feed
from common.index_format import read_index
from common.model_spec import read_model_spec
from common.word_case import ALL_CAPITALS, CAPITALISED, NO_CAPITAL, piece_case_types, token_case_types, word_case
from preprocess.conll import read_conll_file
from common.tags import to_iob2
from preprocess.tokenizer import encodes_word_case, load_tokenizer, mark_word_case
from train.finetune import TrainConfig, finetune, main as finetune_cli

from conftest import build_tiny_model
from test_model_families import build_distilbert
from test_train import write_slice

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.mark.parametrize("word, expected", [
    ("paris", NO_CAPITAL), ("Paris", CAPITALISED), ("PARIS", ALL_CAPITALS), ("EU", ALL_CAPITALS),
    ("U.S.", ALL_CAPITALS), ("A", CAPITALISED), ("McDonald's", CAPITALISED), ("iPhone", NO_CAPITAL),
    ("1996", NO_CAPITAL), (",", NO_CAPITAL), ("Östersund", CAPITALISED), ("ÉTÉ", ALL_CAPITALS),
    ("3M", CAPITALISED), ("\u200b", NO_CAPITAL)])
def test_word_classes(word, expected):
    assert word_case(word) == expected


def test_types_follow_every_piece_of_a_word():
    words = ["Schwarzenegger", "met", "NATO"]
    # [CLS] schwarz ##ene ##gger met nato [SEP] as the tokenizer's word ids say
    assert token_case_types(words, [None, 0, 0, 0, 1, 2, None]) == [0, 1, 1, 1, 0, 2, 0]
    assert piece_case_types(words, [0, 3, 4], 5) == [1, 1, 1, 0, 2]


def test_the_feed_builder_places_types_and_refuses_them_without_the_input():
    feed = build_feed([[101, 7, 102], [101, 8, 9, 102]], 5, INPUTS, 0, [[0, 1, 0], [0, 2, 2, 0]])
    assert feed["token_type_ids"].tolist() == [[0, 1, 0, 0, 0], [0, 2, 2, 0, 0]]
    assert build_feed([[101, 7, 102]], 4, INPUTS, 0)["token_type_ids"].tolist() == [[0, 0, 0, 0]]
    with pytest.raises(ValueError, match="takes no token_type_ids"):
        build_feed([[101, 7, 102]], 4, INPUTS[:2], 0, [[0, 1, 0]])


@pytest.fixture(scope="module")
def slices(conll, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case_slices")
    return (write_slice(conll / "train.txt", folder / "train.txt", 1500),
            write_slice(conll / "valid.txt", folder / "valid.txt", 400))


def _train(base, slices, out, **extra):
    cfg = TrainConfig(base=str(base), train_file=slices[0], valid_file=slices[1], test_file=slices[1],
                      output_dir=out, epochs=1, lr=1e-3, batch_size=4, seed=5, word_case=True, context="document",
                      max_seq_len=64, window_overlap=16, max_steps=6, **extra)
    return finetune(cfg)


def test_training_with_word_case_records_it_and_is_deterministic(slices, tiny_model_dir, tmp_path):
    first = _train(tiny_model_dir, slices, tmp_path / "first")
    config = json.loads((first.output_dir / "config.json").read_text())
    assert config["ner_word_case"] == "token_type_ids" and config["type_vocab_size"] == 3
    assert read_model_spec(first.output_dir).word_case and encodes_word_case(load_tokenizer(first.output_dir))
    assert not encodes_word_case(load_tokenizer(tiny_model_dir))
    card = (first.output_dir / "MODEL_CARD.md").read_text()
    assert "word case in token_type_ids" in card
    # the test file is scored in both contexts: as trained (document) and without context
    assert "## Test, document context (as trained;" in card and "## Test, sentence context (trained in document" in card
    again = _train(tiny_model_dir, slices, tmp_path / "again")
    assert again.losses == first.losses and len(first.losses) == 6


@pytest.fixture(scope="module")
def case_model(tmp_path_factory):
    """A tiny random BERT whose three segment rows differ, marked as reading word case: its labels
    depend on the types, so equal labels mean equal types."""
    return build_tiny_model(tmp_path_factory.mktemp("case_model"), seed=3, type_vocab_size=3,
                            ner_word_case="token_type_ids")


def test_every_stage_builds_the_same_types(case_model, slices, tmp_path):
    """bin_create's token_type_ids files hold each word's class; the file flow (bin_create -> ORT
    infer -> bert_metric) labels every word as the engine's in-process feeds do; with the types
    zeroed the labels differ (they reach the model)."""
    from convert.export import export_onnx
    from engine import Engine
    from infer.offline import run_offline
    from postprocess.score import score_run
    from preprocess.pipeline import create_bins
    from preprocess.plan import BatchPolicy
    from runners.onnxrt import OrtRunner

    onnx_path = tmp_path / "model.onnx"
    export_onnx(model_dir=case_model, output=onnx_path)
    binset = create_bins(slices[1], case_model, tmp_path / "bins", seq_len=64, buckets=(32, 64),
                         show_progress=False, context="document", overlap=16)
    tokenizer = load_tokenizer(case_model)
    conll = read_conll_file(slices[1])
    sentences = [sentence.words for sentence in conll.sentences]
    seen = set()
    for record in read_index(binset.index_file).samples:
        i = record.sample
        ids = np.fromfile(binset.bin_dir / "input_ids" / f"input_ids_{i}_{i}.bin", dtype="<i8")
        types = np.fromfile(binset.bin_dir / "token_type_ids" / f"token_type_ids_{i}_{i}.bin", dtype="<i8")
        assert (types[ids == tokenizer.pad_token_id] == 0).all() and types[0] == 0
        for sentence, word, pos in record.scored():  # each scored word's first piece holds its class
            assert types[pos] == word_case(sentences[sentence][word])
            seen.add(int(types[pos]))
    assert seen == {NO_CAPITAL, CAPITALISED, ALL_CAPITALS}

    run = run_offline(model=onnx_path, input=",".join(str(d) for d in binset.input_dirs()),
                      output=tmp_path / "result", outfmt="NPY", batchsize=8, log=lambda _: None, progress=False)
    flow = score_run(result_dir=run.out_dir, anno_file=binset.anno_file)

    spec = read_model_spec(case_model)
    with OrtRunner.from_path(onnx_path) as runner:
        def labels(tokenizer):
            engine = Engine(runner, tokenizer=tokenizer, input_names=spec.input_names, id2label=spec.id2label,
                            policy=BatchPolicy(), max_len=64, context="document", window_overlap=16)
            types = engine.encode(sentences, conll.documents()).token_types
            return types, [to_iob2(tags) for tags in engine.label(sentences, conll.documents())]

        types, in_process = labels(tokenizer)
        assert set(np.unique(types).tolist()) == {0, 1, 2}
        zeros, without_case = labels(mark_word_case(load_tokenizer(case_model), False))
        assert zeros is None
    assert in_process == flow.pred
    changed = sum(a != b for x, y in zip(in_process, without_case) for a, b in zip(x, y))
    assert changed > 0.05 * sum(len(s) for s in sentences)


def _with_config(source: Path, target: Path, **changes) -> Path:
    import shutil

    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_a_malformed_word_case_entry_is_a_one_line_error(case_model, slices, tmp_path):
    from preprocess.cli import main as bin_create_cli

    bad_value = _with_config(case_model, tmp_path / "bad_value", ner_word_case="yes")
    with pytest.raises(ValidationError, match=r"config.json: ner_word_case must be \"token_type_ids\""):
        read_model_spec(bad_value)
    no_room = _with_config(case_model, tmp_path / "no_room", type_vocab_size=2)
    result = CliRunner().invoke(bin_create_cli, ["--input_file", str(slices[1]), "--model_name_from_hub", str(no_room),
                                                 "--save_dir", str(tmp_path / "bins")])
    assert result.exit_code == 1 and "needs type_vocab_size >= 3" in result.output
    assert "config.json" in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "bins").exists() or not any((tmp_path / "bins").iterdir())


def test_word_case_on_a_model_without_segment_ids_is_refused(slices, tmp_path):
    base = build_distilbert(tmp_path / "distilbert")
    result = CliRunner().invoke(finetune_cli, ["--base", str(base), "--train_file", str(slices[0]),
                                               "--valid_file", str(slices[1]), "--output_dir", str(tmp_path / "out"),
                                               "--max_steps", "1", "--word_case"])
    assert result.exit_code == 1 and "takes no token_type_ids" in result.output
    assert result.output.strip().count("\n") == 0 and not (tmp_path / "out").exists()
