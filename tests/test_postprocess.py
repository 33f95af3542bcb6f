"""postprocess: decode round trip, reading .npy/.bin outputs, the bert_metric CLI and its errors.

Runs are built here from real CoNLL-2003 sentences in the docs/internals.md formats: a fake
tokenizer gives each word 1-3 sub-tokens, long sentences become overlapping windows, and the
logits are one-hot at each scored word's first sub-token over noise everywhere else (so reading
any other position, or a window's context words, gives a wrong label).
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from postprocess.cli import main
from postprocess.decode import Index, IndexHeader, SampleRecord, decode
from postprocess.results import Outputs, find_outputs, index_path_for, read_index
from postprocess.score import score_run
from preprocess.conll import read_conll
from common.tags import to_iob2

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
BUCKETS = (16, 32, 48)
SEQ_LEN = 48
OVERLAP = 3  # context words a window repeats from the one before it
RESULT_KEYS = {"accuracy", "precision", "recall", "f1", "per_type", "num_sentences", "num_words", "missing",
               "num_samples", "label_scheme", "source"}


def subtokens(word: str) -> int:
    return 1 + len(word) // 5


def build_index(sentences) -> tuple[dict, list[dict]]:
    """Header and sample records as preprocess writes them, windows for sentences over SEQ_LEN tokens."""
    samples = []
    for sid, sentence in enumerate(sentences):
        counts = [subtokens(w) for w in sentence.words]
        start = 0
        while start < len(counts):
            context = max(0, start - OVERLAP) if start else 0
            position, words, end = 1, [], context  # position 0 is [CLS]
            for w in range(context, len(counts)):
                if position + counts[w] > SEQ_LEN - 1:  # keep room for [SEP]
                    break
                if w >= start:
                    words.append([w, position])
                position += counts[w]
                end = w + 1
            assert end > start
            tokens = position + 1
            length = next(b for b in BUCKETS if b >= tokens)
            samples.append({"sample": len(samples), "sentence": sid, "length": length, "tokens": tokens,
                            "words": words})
            start = end
    header = {"format": "ner-index/1", "id2label": {str(i): l for i, l in enumerate(LABELS)},
              "input_names": ["input_ids", "attention_mask", "token_type_ids"], "seq_len": SEQ_LEN,
              "buckets": list(BUCKETS), "num_samples": len(samples), "num_sentences": len(sentences),
              "num_words": sum(len(s) for s in sentences), "source": None, "model_dir": "fake-model"}
    return header, samples


def predicted_ids(sentences, seed: int, rate: float = 0.15) -> list[list[int]]:
    """Gold label ids with a share `rate` of the words changed to a random label."""
    rng = random.Random(seed)
    return [[LABEL2ID[t] if rng.random() >= rate else rng.randrange(len(LABELS)) for t in s.tags]
            for s in sentences]


def build_logits(samples, pred_ids, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for rec in samples:
        array = rng.uniform(0, 5, size=(1, rec["length"], len(LABELS))).astype(np.float32)
        for word, position in rec["words"]:
            array[0, position] = 0
            array[0, position, pred_ids[rec["sentence"]][word]] = 10
        out[rec["sample"]] = array
    return out


def write_run(folder: Path, sentences, *, outfmt: str = "npy", seed: int = 0, rate: float = 0.15) -> dict:
    """A preprocess + infer run on disk: X.anno, X.index.jsonl, source CoNLL, OUT/<ts>/*_i_0.<outfmt>."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.txt"
    source.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(
        "\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n", encoding="utf-8")
    header, samples = build_index(sentences)
    header["source"] = str(source)
    anno = folder / "bert_bin_20240101-000000.anno"
    anno.write_text("".join(f"{sid} {' '.join(str(LABEL2ID[t]) for t in s.tags)}\n"
                            for sid, s in enumerate(sentences)))
    index = folder / "bert_bin_20240101-000000.index.jsonl"
    index.write_text("\n".join(json.dumps(obj) for obj in [header, *samples]) + "\n")
    pred = predicted_ids(sentences, seed, rate)
    result_dir = folder / "out" / "2024_01_01-00_00_00"
    result_dir.mkdir(parents=True)
    for sample, array in build_logits(samples, pred, seed).items():
        name = result_dir / f"input_ids_{sample}_{sample}_0.{outfmt}"
        if outfmt == "npy":
            np.save(name, array)
        else:
            array.astype("<f4").tofile(name)
    return {"folder": folder, "anno": anno, "index": index, "result_dir": result_dir, "source": source,
            "pred": pred, "samples": samples, "header": header}


def output_file(run: dict, sample: int) -> Path:
    return next(run["result_dir"].glob(f"input_ids_{sample}_{sample}_0.*"))


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def cli_args(run: dict, *extra) -> list:
    return ["--result_dir", run["result_dir"], "--anno_file", run["anno"], *extra]


@pytest.fixture(scope="module")
def run_npy(tmp_path_factory, conll_sentences):
    return write_run(tmp_path_factory.mktemp("npy"), conll_sentences, outfmt="npy")


@pytest.fixture
def small_run(tmp_path, conll_sentences):
    """A fresh 20-sentence run (with one long sentence) that a test may break."""
    longest = max(range(len(conll_sentences)), key=lambda i: len(conll_sentences[i]))
    return write_run(tmp_path / "run", [*conll_sentences[:19], conll_sentences[longest]])


# --- decode -----------------------------------------------------------------------------------

def test_decode_round_trip_joins_windows(conll_sentences):
    header, samples = build_index(conll_sentences)
    per_sentence = {}
    for rec in samples:
        per_sentence.setdefault(rec["sentence"], []).append(rec)
    split = [recs for recs in per_sentence.values() if len(recs) == 2]
    assert split, "the fixture must hold a sentence split into 2 windows"
    first, second = split[0]
    assert second["words"][0][1] > 1, "the second window must start with context words"
    assert first["words"][-1][0] + 1 == second["words"][0][0]

    pred = predicted_ids(conll_sentences, seed=1)
    logits = build_logits(samples, pred, seed=1)
    index = Index("fake.index.jsonl", IndexHeader({i: l for i, l in enumerate(LABELS)}, len(samples),
                                                  len(conll_sentences), header["num_words"]),
                  tuple(SampleRecord(r["sample"], r["sentence"], r["length"], r["tokens"],
                                     tuple(map(tuple, r["words"]))) for r in samples))
    assert decode(index, logits, [len(s) for s in conll_sentences]) == pred


# --- reading ------------------------------------------------------------------------------------

def test_npy_and_bin_read_identically(tmp_path, conll_sentences):
    sentences = conll_sentences[:40]
    npy = write_run(tmp_path / "npy", sentences, outfmt="npy", seed=3)
    binary = write_run(tmp_path / "bin", sentences, outfmt="bin", seed=3)
    index = read_index(npy["index"])
    from_npy = Outputs(find_outputs(npy["result_dir"]), index)
    from_bin = Outputs(find_outputs(binary["result_dir"]), index)
    assert sorted(from_npy) == sorted(from_bin) == list(range(len(index.samples)))
    for sample in from_npy:
        np.testing.assert_array_equal(from_npy[sample], from_bin[sample])
    a = score_run(npy["result_dir"], npy["anno"]).result
    b = score_run(binary["result_dir"], binary["anno"]).result
    assert a.pop("output_format") == ["npy"] and b.pop("output_format") == ["bin"]
    assert a.pop("bin_dtype") is None and b.pop("bin_dtype") == "float32"
    for key in ("result_dir", "anno_file", "index_file", "source"):
        a.pop(key), b.pop(key)
    assert a == b


def test_score_run_gets_the_predicted_labels_back(run_npy, conll_sentences):
    run = score_run(run_npy["result_dir"], run_npy["anno"], with_words=True)
    expected = [to_iob2([LABELS[i] for i in s]) for s in run_npy["pred"]]
    assert run.pred == expected
    assert run.gold == [list(s.tags) for s in conll_sentences]
    assert run.words == [s.words for s in conll_sentences]


# --- the CLI --------------------------------------------------------------------------------------

def test_cli_writes_result_and_predictions(run_npy, tmp_path, conll_sentences):
    predictions = tmp_path / "pred.txt"
    result = invoke(*cli_args(run_npy, "--predictions", predictions))
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "LOC" in result.output

    written = json.loads((run_npy["result_dir"] / "result.json").read_text())
    assert RESULT_KEYS <= written.keys()
    assert written["num_sentences"] == len(conll_sentences)
    assert written["num_words"] == sum(len(s) for s in conll_sentences)
    assert written["num_samples"] == len(run_npy["samples"]) > len(conll_sentences)
    assert written["missing"] == [] and written["label_scheme"] == "IOB2"
    assert set(written["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    for scores in written["per_type"].values():
        assert {"precision", "recall", "f1", "support"} <= scores.keys()
    assert 0.5 < written["f1"] < 1.0 and 0.5 < written["accuracy"] < 1.0

    blocks = predictions.read_text().rstrip("\n").split("\n\n")
    assert len(blocks) == len(conll_sentences)
    for block, sentence in zip(blocks, conll_sentences):
        rows = [line.split(" ") for line in block.split("\n")]
        assert all(len(row) == 3 for row in rows)
        words, gold, pred = zip(*rows)
        assert words == sentence.words and list(gold) == list(sentence.tags)
        assert to_iob2(pred) == list(pred)

    # conlleval, reading the predictions file as it is, agrees with result.json.
    import conlleval
    oracle = conlleval.evaluate(predictions.read_text().splitlines())
    evals, tags = oracle["overall"]["chunks"]["evals"], oracle["overall"]["tags"]["stats"]
    assert (written["precision"], written["recall"], written["f1"]) == pytest.approx(
        (evals["prec"], evals["rec"], evals["f1"]))
    assert written["accuracy"] == pytest.approx(tags["correct"] / tags["gold"])


def test_gold_logits_on_all_of_conll2003_test_score_perfectly(tmp_path, conll):
    sentences = read_conll(conll / "test.txt")
    run = write_run(tmp_path / "full", sentences, outfmt="bin", rate=0.0)
    result = invoke(*cli_args(run))
    assert result.exit_code == 0, result.output
    written = json.loads((run["result_dir"] / "result.json").read_text())
    assert (written["precision"], written["recall"], written["f1"], written["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert (written["num_sentences"], written["num_words"], written["num_entities"]) == (3453, 46435, 5648)
    assert {t: s["support"] for t, s in written["per_type"].items()} == {
        "LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
    assert written["num_samples"] > 3453  # some sentences were windowed


def test_index_path_defaults_beside_the_anno():
    assert index_path_for("d/bert_bin_1.anno") == Path("d/bert_bin_1.index.jsonl")


def test_result_dir_one_level_too_high_gets_a_hint(small_run):
    result = invoke(*cli_args({**small_run, "result_dir": small_run["result_dir"].parent}))
    assert result.exit_code == 1
    assert f"did you mean {small_run['result_dir']}?" in result.stderr


def test_cli_output_and_index_file_options(small_run, tmp_path):
    moved = tmp_path / "elsewhere.index.jsonl"
    small_run["index"].rename(moved)
    output = tmp_path / "scores" / "r.json"
    result = invoke(*cli_args(small_run, "--index_file", moved, "--output", output))
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text())["index_file"] == str(moved)
    assert not (small_run["result_dir"] / "result.json").exists()


def test_allow_missing_scores_missing_samples_as_o(small_run):
    last = small_run["samples"][-1]
    output_file(small_run, last["sample"]).unlink()

    refused = invoke(*cli_args(small_run))
    assert refused.exit_code == 1
    assert "no output for 1 of" in refused.stderr and str(small_run["result_dir"]) in refused.stderr

    result = invoke(*cli_args(small_run, "--allow-missing"))
    assert result.exit_code == 0, result.output
    written = json.loads((small_run["result_dir"] / "result.json").read_text())
    assert written["missing"] == [last["sample"]]
    assert written["missing_words"] == len(last["words"])
    run = score_run(small_run["result_dir"], small_run["anno"], allow_missing=True)
    assert all(run.pred[last["sentence"]][w] == "O" for w, _ in last["words"])


def test_entry_point_script(small_run):
    done = subprocess.run([sys.executable, "bert_metric.py", *map(str, cli_args(small_run))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (small_run["result_dir"] / "result.json").is_file()


# --- errors: one line naming the file, exit 1, no traceback, nothing written ----------------------

def _replace_output(run, sample, array, suffix=".npy"):
    output_file(run, sample).unlink()
    path = run["result_dir"] / f"input_ids_{sample}_{sample}_0{suffix}"
    if suffix == ".npy":
        np.save(path, array)
    else:
        array.astype("<f4").tofile(path)
    return path


def _edit_anno_line(run, number, edit):
    lines = run["anno"].read_text().splitlines()
    lines[number] = edit(lines[number])
    run["anno"].write_text("\n".join(lines) + "\n")


def break_missing_output(run):
    output_file(run, 4).unlink()
    return run["result_dir"]


def break_wrong_shape(run):
    rec = run["samples"][2]
    return _replace_output(run, 2, np.zeros((1, rec["length"] - 1, len(LABELS)), np.float32))


def break_wrong_num_labels(run):
    rec = run["samples"][2]
    return _replace_output(run, 2, np.zeros((1, rec["length"], len(LABELS) + 1), np.float32))


def break_bin_size(run):
    rec = run["samples"][3]
    return _replace_output(run, 3, np.zeros((1, rec["length"], len(LABELS) - 1), np.float32), suffix=".bin")


def break_nan_logits(run):
    rec = run["samples"][1]
    array = np.zeros((1, rec["length"], len(LABELS)), np.float32)
    array[0, rec["words"][0][1]] = np.nan
    return _replace_output(run, 1, array)


def break_stray_output(run):
    np.save(run["result_dir"] / "input_ids_999_999_0.npy", np.zeros((1, 16, len(LABELS)), np.float32))
    return run["result_dir"]


def break_anno_word_count(run):
    _edit_anno_line(run, 0, lambda line: line + " 0")
    return run["anno"]


def break_anno_words_moved(run):
    # Same total as the index header, but sentence 0 gains a word and sentence 1 loses one.
    _edit_anno_line(run, 0, lambda line: line + " 0")
    _edit_anno_line(run, 1, lambda line: line.rsplit(" ", 1)[0])
    return run["anno"]


def break_anno_label_id(run):
    _edit_anno_line(run, 2, lambda line: line + " 42")
    return f"{run['anno']}:3"


def break_anno_not_numeric(run):
    _edit_anno_line(run, 2, lambda line: line + " B-PER")
    return f"{run['anno']}:3"


def break_index_word_twice(run):
    def twice(line):
        rec = json.loads(line)
        rec["words"].append(rec["words"][0])
        return json.dumps(rec)
    _edit_index_line(run, 1, twice)
    return run["index"]


def _edit_index_line(run, number, edit):
    lines = run["index"].read_text().splitlines()
    lines[number] = edit(lines[number])
    run["index"].write_text("\n".join(lines) + "\n")


def break_index_bad_json(run):
    _edit_index_line(run, 2, lambda line: line[:-1])
    return f"{run['index']}:3"


def break_index_unknown_scheme(run):
    _edit_index_line(run, 0, lambda line: line.replace('"B-PER"', '"PERSON"'))
    return f"{run['index']}:1"


def break_index_missing(run):
    run["index"].unlink()
    return run["index"]


def break_result_dir_missing(run):
    run["result_dir"] = run["result_dir"].parent / "no_such_folder"
    return run["result_dir"]


def break_anno_missing(run):
    run["anno"].unlink()
    return run["anno"]


@pytest.mark.parametrize("breaker", [
    break_missing_output, break_wrong_shape, break_wrong_num_labels, break_bin_size, break_nan_logits,
    break_stray_output, break_anno_word_count, break_anno_words_moved, break_anno_label_id,
    break_anno_not_numeric, break_index_word_twice, break_index_bad_json, break_index_unknown_scheme,
    break_index_missing, break_result_dir_missing,
    break_anno_missing,
], ids=lambda f: f.__name__[len("break_"):])
def test_errors_are_one_line_naming_the_file(small_run, tmp_path, breaker):
    blamed = str(breaker(small_run))
    predictions = tmp_path / "pred.txt"
    result = invoke(*cli_args(small_run, "--predictions", predictions))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert blamed in lines[0]
    assert "Traceback" not in result.output
    assert not (small_run["result_dir"] / "result.json").exists()
    assert not predictions.exists()


def test_predictions_need_the_source_words(small_run, tmp_path):
    words = tmp_path / "words.txt"
    small_run["source"].rename(words)
    result = invoke(*cli_args(small_run, "--predictions", tmp_path / "pred.txt"))
    assert result.exit_code == 1
    assert str(small_run["source"]) in result.stderr and "--input_file" in result.stderr
    assert not (small_run["result_dir"] / "result.json").exists()

    result = invoke(*cli_args(small_run, "--predictions", tmp_path / "pred.txt", "--input_file", words))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred.txt").is_file()
