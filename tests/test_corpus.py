"""`python -m corpus`: streaming reader, scores from summed counts, resume after a kill, formats, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from common.metrics import classification_report, count_entities
from corpus.cli import main as corpus_main
from postprocess.from_counts import add_counts, result_from_counts
from preprocess.conll import read_conll
from preprocess.conll_stream import iter_conll, sentence_starts

from test_corpus_flow import first_sentences

ROOT = Path(__file__).resolve().parents[1]


def conll_text(sentences) -> str:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for s in sentences:
        lines += [f"{w} NNP O {t}" for w, t in zip(s.words, s.tags)] + [""]
    return "\n".join(lines) + "\n"


def invoke(*args):
    result = CliRunner().invoke(corpus_main, [str(a) for a in args])
    return result


def assert_one_line_error(result, *names, after_progress=False):
    """Exit 1, one `error:` line naming `names`, no Traceback; with `after_progress` the run had started,
    so the progress bar came first and the error is the last line."""
    assert result.exit_code == 1, (result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    assert after_progress or len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.output
    for name in names:
        assert str(name) in errors[0], errors[0]


def test_streamed_conll_equals_read_conll_from_any_shard_start(conll):
    path = conll / "test.txt"
    whole = read_conll(path)
    assert list(iter_conll(path)) == whole
    *starts, (end, total) = list(sentence_starts(path, 700))
    assert total == len(whole) and [i for _, i in starts] == list(range(0, total, 700))
    for position, first in starts:
        assert list(iter_conll(path, position, limit=700)) == whole[first:first + 700]


def test_result_from_summed_counts_equals_the_report_on_all_sentences(conll_sentences):
    gold = [list(s.tags) for s in conll_sentences]
    # a believable prediction: every 7th entity tag dropped, every 11th O turned into B-MISC
    pred = [[("O" if t != "O" and (i + j) % 7 == 0 else "B-MISC" if t == "O" and (i + j) % 11 == 0 else t)
             for j, t in enumerate(tags)] for i, tags in enumerate(gold)]
    per_type, right, words = {}, 0, 0
    for at in range(0, len(gold), 37):  # shards of 37 sentences, counts added
        per_type = add_counts(per_type, count_entities(gold[at:at + 37], pred[at:at + 37]))
        right += sum(g == p for gs, ps in zip(gold[at:at + 37], pred[at:at + 37]) for g, p in zip(gs, ps))
        words += sum(len(gs) for gs in gold[at:at + 37])
    result = result_from_counts(per_type, words_right=right, num_words=words, num_sentences=len(gold))
    report = classification_report(gold, pred)
    for key in ("accuracy", "precision", "recall", "f1", "per_type", "num_words", "num_entities", "num_predicted",
                "num_correct"):
        assert result[key] == report[key], key
    assert 0.5 < result["f1"] < 1


def test_kill_after_the_first_shard_then_rerun_computes_only_the_rest(tmp_path, conll, default_model_dir):
    data = first_sentences(conll / "test.txt", 160, tmp_path / "head.txt")
    args = [sys.executable, "-m", "corpus", "--input", str(data), "--model_dir", str(default_model_dir),
            "--shard_sentences", "40", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--output", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = out / "shards" / "shard-00000.counts.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert first.exists()
    done = sorted(p.name for p in (out / "shards").glob("*.counts.json"))
    assert len(done) < 4 and not (out / "result.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir() if p.name.endswith(".parquet")}

    rerun = subprocess.run(args + ["--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} shards already done" in rerun.stderr
    assert f"computed {4 - len(done)} shards" in rerun.stderr
    for name, stamp in stamps.items():  # finished shards were not redone
        assert (out / "shards" / name).stat().st_mtime_ns == stamp
    assert not [p for p in (out / "shards").iterdir() if p.name.endswith(".tmp")]

    whole = tmp_path / "whole"
    subprocess.run(args + ["--output", str(whole)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    for i in range(4):
        name = f"shard-{i:05d}.parquet"
        assert pq.read_table(out / "shards" / name).equals(pq.read_table(whole / "shards" / name))
    resumed, uninterrupted = (json.loads((d / "result.json").read_text()) for d in (out, whole))
    assert {**resumed, "result_dir": None} == {**uninterrupted, "result_dir": None}


def test_text_and_jsonl_inputs(tmp_path, default_model_dir, conll_sentences):
    texts = ["EU rejects German call to boycott British lamb .", "", "Peter Blackburn lives in Brussels."]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = invoke("--input", tmp_path / "texts.txt", "--model_dir", default_model_dir, "--output", tmp_path / "t")
    assert result.exit_code == 0, result.stderr
    rows = pq.read_table(next((tmp_path / "t" / "shards").glob("*.parquet"))).to_pylist()
    assert [r["text"] for r in rows] == texts and rows[1]["words"] == []
    found = {(r["text"][e["start"]:e["end"]], e["type"]) for r in rows for e in r["entities"]}
    assert {("EU", "ORG"), ("German", "MISC"), ("Brussels", "LOC")} <= found

    sentences = conll_sentences[:30]
    lines = [json.dumps({"id": f"s{i}", "words": list(s.words), "tags": list(s.tags)}) for i, s in enumerate(sentences)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "data.conll").write_text(conll_text(sentences), encoding="utf-8")
    for name in ("data.jsonl", "data.conll"):
        result = invoke("--input", tmp_path / name, "--model_dir", default_model_dir, "--output", tmp_path / name[5:])
        assert result.exit_code == 0, result.stderr
    as_json, as_conll = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("jsonl", "conll"))
    assert as_json["f1"] == as_conll["f1"] and as_json["num_words"] == sum(len(s) for s in sentences)


@pytest.fixture
def three_shards(tmp_path, conll_sentences):
    path = tmp_path / "data.conll"
    path.write_text(conll_text(conll_sentences[:60]), encoding="utf-8")
    return path


def test_malformed_line_stops_with_file_and_line_and_keeps_finished_shards(tmp_path, tiny_model_dir, three_shards):
    lines = three_shards.read_text().split("\n")
    bad = next(i for i, line in enumerate(lines) if line.strip() and i > len(lines) * 0.8)
    lines[bad] = lines[bad].split()[0]  # one column: no tag
    three_shards.write_text("\n".join(lines))
    out = tmp_path / "out"
    result = invoke("--input", three_shards, "--model_dir", tiny_model_dir, "--output", out, "--shard_sentences", 20)
    assert_one_line_error(result, f"{three_shards}:{bad + 1}", "1 column", after_progress=True)
    names = sorted(p.name for p in (out / "shards").iterdir())
    assert names == [f"shard-0000{i}.{ext}" for i in range(2) for ext in ("counts.json", "parquet")]
    assert not (out / "result.json").exists()


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_model_dir, three_shards):
    out = tmp_path / "out"
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_one_line_error(invoke("--input", tmp_path / "empty.txt", "--model_dir", tiny_model_dir, "--output", out),
                          "empty.txt", "empty")
    (tmp_path / "blank.conll").write_text("\n\n-DOCSTART- -X- O\n\n")
    assert_one_line_error(invoke("--input", tmp_path / "blank.conll", "--model_dir", tiny_model_dir, "--output", out),
                          "blank.conll", "no sentences")
    assert_one_line_error(invoke("--input", tmp_path / "nothing-*.conll", "--model_dir", tiny_model_dir,
                                 "--output", out), "nothing-*.conll", "glob matches no file")
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    assert_one_line_error(invoke("--input", tmp_path / "loop_a", "--model_dir", tiny_model_dir, "--output", out),
                          "loop_a", "cannot be read")
    assert_one_line_error(invoke("--input", three_shards, "--model_dir", tmp_path, "--output", out), str(tmp_path))
    assert_one_line_error(invoke("--input", three_shards, "--model_dir", tiny_model_dir, "--output", out,
                                 "--engine", "ray", "--ray_address", "127.0.0.1:9"), "127.0.0.1:9", "no Ray cluster")
    assert not out.exists()  # nothing was written for any of them


def test_output_folder_is_bound_to_its_model_and_inputs(tmp_path, tiny_model_dir, default_model_dir, three_shards):
    out = tmp_path / "out"
    assert invoke("--input", three_shards, "--model_dir", tiny_model_dir, "--output", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    assert_one_line_error(invoke("--input", three_shards, "--model_dir", default_model_dir, "--output", out),
                          "manifest.json", "another model")
    with three_shards.open("a") as handle:
        handle.write("Berlin NNP O B-LOC\n")
    assert_one_line_error(invoke("--input", three_shards, "--model_dir", tiny_model_dir, "--output", out),
                          "manifest.json", "other inputs")
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == before
