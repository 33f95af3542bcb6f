"""apps.predict: NER on raw text, offsets into the original string, windows, both backends, the CLI.

Entities are checked on the project's default model (real CoNLL-2003 text); the mechanics that
do not need a good model (offsets on odd text, caching the ONNX export, the command line) run
on the tiny random model too, whose many random entities land everywhere in the text.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from apps.predict import Predictor, main
from common.tags import entities as spans
from convert.onnx_cache import cached_onnx_path
from preprocess.text import Entity, read_texts, word_spans
from preprocess.text import text_entities as entities
from preprocess.align import Aligner

ROOT = Path(__file__).resolve().parents[1]
EU = "EU rejects German call to boycott British lamb ."
EU_ENTITIES = [(0, 2, "ORG", "EU"), (11, 17, "MISC", "German"), (34, 41, "MISC", "British")]
ODD_TEXTS = [
    "",
    "   \t\n  ",
    "\u200b",
    EU,
    "Café Müller in São Paulo 😀 met İstanbul's ﬁnance chief .",
    "東京タワーは日本にある。北京市と上海市",
    "Москва — столица России , а Владимир Путин её житель .",
    "القاهرة عاصمة مصر",
    "👩‍👩‍👧 family 🇨🇭 flags \U0001F600\U0001F600 and e\u0301 combining",
    "tab\tseparated\r\nand  double  spaced\n\nlines",
]


def check_offsets(text: str, ents) -> None:
    """Every entity slices `text` exactly, has no outer whitespace, and starts and ends on word edges."""
    last_end = 0
    for e in ents:
        e = e if isinstance(e, dict) else e.to_dict()
        assert 0 <= e["start"] < e["end"] <= len(text), e
        assert text[e["start"]:e["end"]] == e["text"], e
        assert e["text"] == e["text"].strip() and e["text"], e
        assert e["start"] >= last_end, "entities overlap or are out of order"
        assert 0.0 < e["score"] <= 1.0
        last_end = e["end"]


def word_edges(tokenizer, text):
    ws = word_spans(tokenizer, text)
    return {s for s, _ in ws}, {e for _, e in ws}


# -- pure pieces ------------------------------------------------------------------------------------------
def test_doctests():
    import doctest

    import common.tags
    import preprocess.text

    assert doctest.testmod(preprocess.text).failed == 0 and doctest.testmod(common.tags).failed == 0


def test_spans_match_conlleval_chunks():
    """The IOB2 chunker gives conlleval's chunks (common.metrics.entities) on random tag sequences."""
    from common.metrics import entities as conlleval_chunks

    rng = random.Random(5)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC"]
    for _ in range(500):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 12))]
        assert set(spans(seq)) == conlleval_chunks(seq), seq


def test_entities_from_word_labels():
    text = "  EU  rejects German call"
    words = [(2, 4), (6, 13), (14, 20), (21, 25)]
    got = entities(text, words, ["B-ORG", "O", "I-MISC", "I-MISC"], [0.9, 0.8, 0.5, 0.7])
    assert got == (Entity(2, 4, "ORG", 0.9, "EU"), Entity(14, 25, "MISC", 0.6, "German call"))


def test_read_texts_lines_and_paragraphs():
    lines = ["one\n", "\n", "two a\r\n", "two b\n", "\n", "\n", "three"]
    assert list(read_texts(lines)) == ["one", "", "two a", "two b", "", "", "three"]
    assert list(read_texts(lines, paragraphs=True)) == ["one", "two a\ntwo b", "three"]
    assert list(read_texts([], paragraphs=True)) == []


def test_word_spans_follow_the_tokenizer(tiny_model_dir):
    """Words and offsets from the fast tokenizer: CJK per character, accents, emoji, zero-width."""
    from preprocess.pipeline import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    aligner = Aligner(tok, 512)
    for text in ODD_TEXTS:
        ws = word_spans(tok, text)
        assert all(text[s:e].strip() == text[s:e] != "" for s, e in ws), text
        assert all(a[1] <= b[0] for a, b in zip(ws, ws[1:])), text
        # the words, given one by one as a CoNLL sentence would be, tokenise as the raw text does
        if ws:
            ids, _ = aligner.word_pieces([text[s:e] for s, e in ws])
            assert ids == tok(text, add_special_tokens=False)["input_ids"], text
    text = "Café 東京 😀 x"
    assert [text[s:e] for s, e in word_spans(tok, text)] == ["Café", "東", "京", "😀", "x"]
    assert word_spans(tok, "") == word_spans(tok, " \n\t ") == []


# -- the tiny model: mechanics -----------------------------------------------------------------------------
def private_copy(model_dir, folder):
    """A copy of a checkpoint without the ONNX cache other tests may have left in the shared tiny model."""
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns(".onnx-cache"))
    return folder


@pytest.fixture(scope="module")
def tiny_copy(tiny_model_dir, tmp_path_factory):
    """A private copy: the ONNX cache is written inside the model folder."""
    return private_copy(tiny_model_dir, tmp_path_factory.mktemp("tiny_copy") / "model")


def test_onnx_cache_exported_once_and_renewed(tiny_model_dir, tmp_path):
    tiny_copy = private_copy(tiny_model_dir, tmp_path / "model")  # its own: no test before it exported here
    cached = cached_onnx_path(tiny_copy)
    assert not cached.exists()
    with Predictor(tiny_copy) as p:
        first = p.predict([EU])
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    with Predictor(tiny_copy) as p:
        assert p.predict([EU]) == first
    assert cached.stat().st_mtime_ns == stamp, "the cached export was rebuilt"
    # a changed checkpoint gets a fresh export, and the stale one goes
    config = tiny_copy / "config.json"
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 10**9))
    renewed = cached_onnx_path(tiny_copy)
    assert renewed != cached
    with Predictor(tiny_copy) as p:
        p.predict([EU])
    assert renewed.is_file() and not cached.exists()


def test_onnx_of_another_model_is_refused(tiny_copy, tmp_path):
    from common.errors import ValidationError
    from conftest import build_tiny_model

    other = build_tiny_model(tmp_path / "other", labels=["O", "B-X", "I-X"])
    onnx = tmp_path / "other.onnx"
    Predictor(other, onnx=onnx)  # exports it there
    assert onnx.is_file()
    with pytest.raises(ValidationError, match="wrong --onnx"):
        Predictor(tiny_copy, onnx=onnx).activate()


def test_odd_texts_tiny_model_both_backends(tiny_copy):
    """Random weights put entities everywhere: each slices the text exactly; ORT and PyTorch agree."""
    with Predictor(tiny_copy) as ort_p, Predictor(tiny_copy, backend="torch") as torch_p:
        ort_out, torch_out = ort_p.predict(ODD_TEXTS), torch_p.predict(ODD_TEXTS)
        edges = [word_edges(ort_p.tokenizer, t) for t in ODD_TEXTS]
    assert sum(len(p.entities) for p in ort_out) > 5  # the check below must have something to check
    for text, pred, (starts, ends) in zip(ODD_TEXTS, ort_out, edges):
        assert pred.text == text
        check_offsets(text, pred.entities)
        assert all(e.start in starts and e.end in ends for e in pred.entities)
    assert ort_out[0].entities == ort_out[1].entities == ort_out[2].entities == ()
    assert [[(e.start, e.end, e.type) for e in p.entities] for p in ort_out] == \
        [[(e.start, e.end, e.type) for e in p.entities] for p in torch_out]


def test_long_text_small_windows_scores_every_word(tiny_copy):
    text = " ".join(f"word{i} Paris" for i in range(300))  # ~1,500 tokens, windows of 32
    with Predictor(tiny_copy, seq_len=32) as p:
        labels = p.label_words([text, EU])
    assert len(labels[0].spans) == 600 and all(labels[0].tags) and all(labels[1].tags)
    aligner = Aligner(p.tokenizer, 32)  # the encoder's windows at --seq_len 32
    ids, _ = aligner.word_pieces([text[s:e] for s, e in labels[0].spans])
    assert len(aligner.window_starts(len(ids))) > 40


def test_cli_sources_and_formats(tiny_copy, tmp_path):
    runner = CliRunner()
    base = ["--model_dir", str(tiny_copy)]
    # arguments
    res = runner.invoke(main, base + [EU, ""])
    assert res.exit_code == 0, res.output
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    assert [l["text"] for l in lines] == [EU, ""] and lines[1]["entities"] == []
    for line in lines:
        assert set(line) == {"text", "entities"}
        check_offsets(line["text"], line["entities"])
        assert all(set(e) == {"start", "end", "type", "score", "text"} for e in line["entities"])
    # a file, one text per line (empty lines kept), and stdin
    f = tmp_path / "texts.txt"
    f.write_text("\ufeffÉtat français\n\n東京\nlast line without newline", encoding="utf-8")
    res = runner.invoke(main, base + ["--file", str(f)])
    assert res.exit_code == 0, res.output
    assert [json.loads(l)["text"] for l in res.stdout.splitlines()] == ["État français", "", "東京",
                                                                       "last line without newline"]
    res = runner.invoke(main, base + ["--paragraphs"], input="a b\nc\n\n\nd\n")
    assert res.exit_code == 0, res.output
    assert [json.loads(l)["text"] for l in res.stdout.splitlines()] == ["a b\nc", "d"]
    # pretty + html
    page = tmp_path / "out.html"
    res = runner.invoke(main, base + ["--format", "pretty", "--html", str(page), EU], color=True)
    assert res.exit_code == 0, res.output
    plain = click.unstyle(res.stdout)
    assert "\x1b[" in res.stdout and plain != res.stdout
    assert re.sub(r"\[| [A-Z]+\]", "", plain).strip() == EU  # [entity TYPE] around the original text
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http" not in html.lower().replace('"http://www.w3.org', "")
    assert "rejects" in html


def test_unknown_backend_is_a_user_error(tiny_copy):
    """One runner factory by name (`engine.backends`): an unknown name is one line listing the known ones."""
    from common.errors import UserError
    from engine.backends import open_runner

    with pytest.raises(UserError, match="unknown backend 'tensorrt' \\(choose from onnxrt, torch, openvino\\)"):
        open_runner("tensorrt", tiny_copy)
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        Predictor(tiny_copy, backend="tensorrt")


@pytest.mark.parametrize("args, message", [
    (["x", "--file", "f.txt"], "not both"),
    (["x", "--paragraphs"], "--paragraphs"),
    (["--backend", "torch", "--onnx", "x.onnx", "x"], "--onnx"),
    (["--file", "missing.txt"], "does not exist"),
    (["--seq_len", "4096", "x"], "--seq_len"),
])
def test_cli_errors_are_one_line(tiny_copy, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("x\n")
    res = CliRunner().invoke(main, ["--model_dir", str(tiny_copy)] + args)
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and message in res.stderr and res.stderr.count("\n") == 1


def test_cli_not_utf8(tiny_copy, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe bad\n")
    res = CliRunner().invoke(main, ["--model_dir", str(tiny_copy), "--file", str(bad)])
    assert res.exit_code == 1 and "not UTF-8" in res.stderr


def run_predict(args, env_extra=None, prefix=()):
    """`python -m apps.predict ARGS` as a user types it (args may be bytes, as a shell passes them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([*prefix, sys.executable, "-m", "apps.predict", *args], cwd=ROOT, env=env,
                          capture_output=True, timeout=300)


def assert_one_line_error(res, *names):
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(name in err for name in names), err
    assert res.stdout == b""
    return err


def read_only_mount(folder: Path) -> tuple:
    """A command prefix that runs the rest with `folder` mounted read-only (EROFS), in a private
    user and mount namespace: no root needed, nothing changes outside the command."""
    return ("unshare", "-rm", "sh", "-c", f'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"',
            str(folder))


def test_cli_argument_not_utf8(tiny_copy):
    """A shell passes bytes; Python hands the non-UTF-8 ones over as lone surrogates."""
    res = run_predict([b"--model_dir", bytes(tiny_copy), EU.encode(), b"Obama \xff visited Paris"])
    err = assert_one_line_error(res, "argument 2", "not UTF-8", "byte 6")
    assert "0xff" in err


def test_cli_html_below_a_regular_file(tiny_copy, tmp_path):
    regular = tmp_path / "notes.txt"
    regular.write_text("a file, not a folder\n")
    page = regular / "out.html"
    res = run_predict(["--model_dir", str(tiny_copy), "--html", str(page), EU])
    assert_one_line_error(res, str(page), "is a file")
    assert regular.read_text() == "a file, not a folder\n" and sorted(tmp_path.iterdir()) == [regular]


def test_read_only_model_folder_caches_the_export_in_the_user_cache(tiny_model_dir, tmp_path):
    model = private_copy(tiny_model_dir, tmp_path / "model")
    cache = tmp_path / "cache"
    # read-only filesystem (EROFS, not a PermissionError): the export goes to $XDG_CACHE_HOME
    res = run_predict(["--model_dir", str(model), EU], {"XDG_CACHE_HOME": str(cache)}, read_only_mount(model))
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["text"] == EU and "Traceback" not in res.stderr.decode()
    exports = list(cache.glob("bert-ner-offline/onnx/*/model-*.onnx"))
    assert len(exports) == 1 and not (model / ".onnx-cache").exists()
    # the next run finds it there and does not export again
    res = run_predict(["--model_dir", str(model), EU], {"XDG_CACHE_HOME": str(cache)}, read_only_mount(model))
    assert res.returncode == 0 and "exporting" not in res.stderr.decode()
    assert list(cache.glob("bert-ner-offline/onnx/*/model-*.onnx")) == exports


def test_no_writable_place_for_the_export_is_one_line(tiny_model_dir, tmp_path):
    model = private_copy(tiny_model_dir, tmp_path / "model")
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    env = {"XDG_CACHE_HOME": str(not_a_folder)}
    res = run_predict(["--model_dir", str(model), EU], env, read_only_mount(model))
    assert_one_line_error(res, str(model / ".onnx-cache"), "Read-only file system", "--onnx")
    # a file where the cache folder should be: another OSError than a permission one
    (model / ".onnx-cache").write_text("")
    res = run_predict(["--model_dir", str(model), EU], env)
    assert_one_line_error(res, str(model / ".onnx-cache"), "--onnx")
    res = run_predict(["--model_dir", str(model), "--onnx", str(not_a_folder / "x.onnx"), EU])
    assert_one_line_error(res, str(not_a_folder / "x.onnx"), "cannot write")


# -- the default model: real entities ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor(default_model_dir):
    with Predictor(default_model_dir) as p:
        yield p


def test_eu_sentence(predictor):
    (pred,) = predictor.predict([EU])
    assert [(e.start, e.end, e.type, e.text) for e in pred.entities] == EU_ENTITIES
    assert all(e.score > 0.5 for e in pred.entities)


def test_real_text_offsets_match_gold_entities(predictor, conll_sentences):
    """200 CoNLL sentences as raw text with irregular spacing: predicted character spans match the gold
    entities' character spans (wrong offsets could not)."""
    from common.tags import to_iob2

    rng = random.Random(3)
    texts, gold = [], []
    for sentence in conll_sentences:
        text, starts, ends = "", [], []
        for i, word in enumerate(sentence.words):
            if i:
                text += rng.choice([" ", " ", " ", "  ", "\t", " \n "])
            starts.append(len(text))
            text += word
            ends.append(len(text))
        texts.append(text)
        gold.append({(starts[a], ends[b], t) for t, a, b in spans(to_iob2(sentence.tags))})
    preds = predictor.predict(texts)
    correct = predicted = 0
    for text, pred, g in zip(texts, preds, gold):
        check_offsets(text, pred.entities)
        got = {(e.start, e.end, e.type) for e in pred.entities}
        correct += len(got & g)
        predicted += len(got)
    total = sum(len(g) for g in gold)
    f1 = 2 * correct / (predicted + total)
    assert total > 200 and f1 > 0.75, f"entity F1 over character spans {f1:.3f}"


def test_accents_non_latin_and_emoji(predictor):
    text = "😀 Angela Merkel met François Hollande in Zürich 🇨🇭 ; 東京 and Москва stayed quiet ."
    (pred,) = predictor.predict([text])
    check_offsets(text, pred.entities)
    starts, ends = word_edges(predictor.tokenizer, text)
    assert all(e.start in starts and e.end in ends for e in pred.entities)
    found = {(e.text, e.type) for e in pred.entities}
    assert {("Angela Merkel", "PER"), ("François Hollande", "PER"), ("Zürich", "LOC")} <= found, found
    zurich = next(e for e in pred.entities if e.text == "Zürich")
    assert (zurich.start, zurich.end) == (text.index("Zürich"), text.index("Zürich") + 6)


def test_empty_and_blank_texts(predictor):
    out = predictor.predict(["", " ", "\n\t", "\u200b\u200b"])
    assert [p.entities for p in out] == [(), (), (), ()]


def test_10000_word_text_is_fully_processed(predictor, conll_sentences):
    words = []
    while len(words) < 10_000:
        for s in conll_sentences:
            words.extend(s.words)
    words = words[:10_000]
    text = " ".join(words) + " " + EU
    (labels,) = predictor.label_words([text])
    assert len(labels.spans) >= 10_000 and all(labels.tags)
    found = entities(text, labels.spans, labels.tags, labels.probs)  # what predict() returns, without a 2nd run
    tail = len(text) - len(EU)
    at_end = [(e.start - tail, e.end - tail, e.type, e.text) for e in found if e.start >= tail]
    assert at_end == EU_ENTITIES
    check_offsets(text, found)
    assert len(found) > 500


def test_torch_and_onnx_give_the_same_entities(predictor, default_model_dir, conll_sentences):
    texts = [" ".join(s.words) for s in conll_sentences]
    assert len(texts) == 200
    with Predictor(default_model_dir, backend="torch") as torch_p:
        torch_out = torch_p.predict(texts)
    ort_out = predictor.predict(texts)
    for t, o in zip(torch_out, ort_out):
        assert [(e.start, e.end, e.type) for e in t.entities] == [(e.start, e.end, e.type) for e in o.entities], t.text
        assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(t.entities, o.entities))
    assert sum(len(p.entities) for p in ort_out) > 200


def test_cli_as_a_user_types_it(default_model_dir, predictor):
    """`python -m apps.predict` in a subprocess, text on stdin (the ONNX cache is already made)."""
    res = subprocess.run([sys.executable, "-m", "apps.predict", "--model_dir", str(default_model_dir)],
                         input=EU + "\n\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    assert [(e["start"], e["end"], e["type"], e["text"]) for e in lines[0]["entities"]] == EU_ENTITIES
    assert lines[1] == {"text": "", "entities": []}




def test_cli_openvino_backend(default_model_dir, predictor, conll_sentences):
    """`python -m apps.predict --backend openvino`: the same ONNX export on OpenVINO finds what ONNX Runtime finds."""
    texts = [EU] + [" ".join(s.words) for s in conll_sentences[:40]]
    res = subprocess.run([sys.executable, "-m", "apps.predict", "--model_dir", str(default_model_dir),
                          "--backend", "openvino"], input="\n".join(texts) + "\n", capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(l) for l in res.stdout.splitlines()]
    assert [l["text"] for l in lines] == texts
    assert [(e["start"], e["end"], e["type"], e["text"]) for e in lines[0]["entities"]] == EU_ENTITIES
    for line in lines:
        check_offsets(line["text"], line["entities"])
    theirs = {(i, e["start"], e["end"], e["type"]) for i, line in enumerate(lines) for e in line["entities"]}
    ours = {(i, e.start, e.end, e.type) for i, p in enumerate(predictor.predict(texts)) for e in p.entities}
    # OpenVINO runs bf16 on a CPU that has it (precision auto): an entity may flip, rarely
    assert len(ours) > 40 and len(theirs & ours) >= 0.95 * len(ours), (len(theirs & ours), len(ours))


def test_html_page_in_a_real_browser(default_model_dir, predictor, browser, tmp_path):
    """--html: a self-contained page whose marks are the entities of the JSON lines, in Chromium."""
    from selenium.webdriver.common.by import By

    from browser_support import full_page_screenshot, headless_chromium, keep_screenshot

    texts = [EU, "Peter Blackburn said the European Commission met in Brussels on Thursday .",
             "😀 Angela Merkel met François Hollande in Zürich 🇨🇭 ."]
    page = tmp_path / "entities.html"
    res = CliRunner().invoke(main, ["--model_dir", str(default_model_dir), "--html", str(page), *texts])
    assert res.exit_code == 0, res.output
    expected = [[e["text"], e["type"]] for l in res.stdout.splitlines() for e in json.loads(l)["entities"]]
    assert len(expected) >= 8
    with headless_chromium(1000, 500) as driver:
        driver.get(page.resolve().as_uri())
        found = driver.execute_script("return Array.from(document.querySelectorAll('mark.entity[data-type]'))"
                                      ".map(m => [m.firstChild.textContent, m.dataset.type])")
        assert found == expected
        assert len(driver.find_elements(By.CSS_SELECTOR, "section.text")) == 3
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        shot = full_page_screenshot(driver, tmp_path / "predict.png")
    keep_screenshot(shot)
