"""preprocess: the CoNLL reader, word-piece alignment with windows, and the bin_create command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from preprocess.align import Aligner
from reference_decode import words_to_labels
from preprocess.cli import main as bin_create
from preprocess.conll import read_conll
from preprocess.pipeline import create_bins, load_tokenizer
from common.tags import to_iob2

ROOT = Path(__file__).resolve().parents[1]


def conll_text(sentences, sep=" ", docstart=True):
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for s in sentences:
        lines += [f"{w}{sep}NNP{sep}O{sep}{t}" for w, t in zip(s.words, s.tags)] + [""]
    return "\n".join(lines) + "\n"


# ---- tags -------------------------------------------------------------------------------------

def test_iob1_and_io_normalise_to_the_same_iob2_spans():
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert to_iob2(iob1) == iob2
    assert to_iob2(iob2) == iob2
    # IO cannot mark two adjacent entities of one type: they merge, as IO means
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]


# ---- reader -----------------------------------------------------------------------------------

def test_reader_matches_the_published_counts(conll):
    sentences = read_conll(conll / "test.txt")
    assert len(sentences) == 3453
    assert sum(len(s) for s in sentences) == 46435
    assert len({s.doc_id for s in sentences}) == 231


def test_odd_but_valid_forms_read_the_same(tmp_path, conll_sentences):
    sents = conll_sentences[:30]
    reference = conll_text(sents)
    variants = {
        "crlf": reference.replace("\n", "\r\n"),
        "tabs": conll_text(sents, sep="\t"),
        "bom": "\ufeff" + reference,
        "no_final_blank": reference.rstrip("\n"),
        "docstart_at_end": conll_text(sents, docstart=False) + "-DOCSTART- -X- -X- O\n",
        "two_columns": "\n".join(" ".join(l.split()[::3]) if l and len(l.split()) == 4 else l
                                 for l in reference.split("\n")),
    }
    for name, text in variants.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(text.encode("utf-8"))
        got = read_conll(path)
        assert [s.words for s in got] == [s.words for s in sents], name
        assert [s.tags for s in got] == [s.tags for s in sents], name


def test_iob1_file_reads_as_iob2(tmp_path, conll_sentences):
    sents = conll_sentences[:50]
    iob1_lines = []
    for s in sents:
        prev = None
        for w, t in zip(s.words, s.tags):
            # IOB1: B- only where an entity directly follows one of the same type
            etype = t[2:] if t != "O" else None
            tag = t if t == "O" else (f"B-{etype}" if t.startswith("B-") and prev == etype else f"I-{etype}")
            iob1_lines.append(f"{w} {tag}")
            prev = etype
        iob1_lines.append("")
    path = tmp_path / "iob1.txt"
    path.write_text("\n".join(iob1_lines), encoding="utf-8")
    assert [s.tags for s in read_conll(path)] == [s.tags for s in sents]


# ---- alignment --------------------------------------------------------------------------------

def test_short_sentences_encode_exactly_like_the_tokenizer(tiny_model_dir, conll_sentences):
    tokenizer = load_tokenizer(tiny_model_dir)
    aligner = Aligner(tokenizer, seq_len=128)
    for sid, sentence in enumerate(conll_sentences[:100]):
        (sample,) = aligner.samples(sid, sentence.words)
        enc = tokenizer(list(sentence.words), is_split_into_words=True)
        assert list(sample.input_ids) == enc["input_ids"]
        word_ids = enc.word_ids()
        firsts = [word_ids.index(w) for w in range(len(sentence))]
        assert [p for _, p in sample.scored] == firsts
        # a real WordPiece tokenizer: no word became [UNK] wholesale
        assert tokenizer.unk_token_id not in sample.input_ids


def test_long_sentence_windows_score_every_word_once(tiny_model_dir, conll_sentences):
    tokenizer = load_tokenizer(tiny_model_dir)
    words = [w for s in conll_sentences for w in s.words][:900]
    aligner = Aligner(tokenizer, seq_len=128)
    samples = aligner.samples(0, words)
    assert len(samples) > 1 and all(s.tokens <= 128 for s in samples)
    scored = sorted(w for s in samples for w, _ in s.scored)
    assert scored == list(range(900))
    # the scored position holds the word's own first sub-token
    for sample in samples:
        for word, pos in sample.scored:
            first_piece = tokenizer(words[word], add_special_tokens=False)["input_ids"][0]
            assert sample.input_ids[pos] == first_piece
            # most context: never at the very edge of a window unless the sentence edge is there
            assert 1 <= pos <= sample.tokens - 2
    # round trip: one-hot logits at the scored positions come back as the same labels
    id2label = {0: "O", 1: "B-X", 2: "I-X"}
    gold = [id2label[i % 3] for i in range(900)]
    logits = []
    for sample in samples:
        array = np.zeros((sample.tokens, 3), dtype=np.float32)
        for word, pos in sample.scored:
            array[pos, [k for k, v in id2label.items() if v == gold[word]][0]] = 1.0
        logits.append(array)
    assert words_to_labels(samples, logits, {0: 900}, id2label)[0] == gold


def test_word_that_tokenizes_to_nothing_keeps_a_position(tiny_model_dir):
    aligner = Aligner(load_tokenizer(tiny_model_dir), seq_len=64)
    (sample,) = aligner.samples(0, ["EU", "\u200b", "rejects"])
    assert [w for w, _ in sample.scored] == [0, 1, 2]


# ---- bin_create end to end --------------------------------------------------------------------

def test_bin_create_writes_the_recipe_layout(tmp_path, tiny_model_dir, conll_sentences):
    data = tmp_path / "sample.txt"
    data.write_text(conll_text(conll_sentences[:40]), encoding="utf-8")
    result = CliRunner().invoke(bin_create, ["--input_file", str(data), "--model_name_from_hub", str(tiny_model_dir),
                                             "--save_dir", str(tmp_path / "out"), "--seq_len", "64"])
    assert result.exit_code == 0, result.output
    (bin_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    stamp = bin_dir.name
    assert stamp.startswith("bert_bin_")
    anno = (tmp_path / "out" / f"{stamp}.anno").read_text().splitlines()
    index = [json.loads(l) for l in (tmp_path / "out" / f"{stamp}.index.jsonl").read_text().splitlines()]
    header, records = index[0], index[1:]
    assert header["num_sentences"] == 40 == len(anno)
    assert header["id2label"]["0"] == "O"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted(names)
    for name in names:
        files = sorted((bin_dir / name).iterdir())
        assert len(files) == len(records)
        assert all(f.stat().st_size == 64 * 8 for f in files)
    tokenizer = load_tokenizer(tiny_model_dir)
    label2id = {v: int(k) for k, v in header["id2label"].items()}
    for record in records[:10]:
        sentence = conll_sentences[record["sentence"]]
        ids = np.fromfile(bin_dir / "input_ids" / f"input_ids_{record['sample']}_{record['sample']}.bin", dtype="<i8")
        mask = np.fromfile(bin_dir / "attention_mask" / f"attention_mask_{record['sample']}_{record['sample']}.bin",
                           dtype="<i8")
        expected = tokenizer(list(sentence.words), is_split_into_words=True)["input_ids"]
        assert ids[:len(expected)].tolist() == expected and ids[len(expected):].sum() == 0
        assert mask.sum() == len(expected) == record["tokens"]
        sid, *labels = map(int, anno[record["sentence"]].split())
        assert sid == record["sentence"] and labels == [label2id[t] for t in sentence.tags]


def test_buckets_pick_the_smallest_length_that_fits(tmp_path, tiny_model_dir, conll_sentences):
    data = tmp_path / "sample.txt"
    long_sentence = type(conll_sentences[0])(tuple(w for s in conll_sentences[:20] for w in s.words),
                                             tuple(t for s in conll_sentences[:20] for t in s.tags), 0, ())
    data.write_text(conll_text(conll_sentences[:60] + [long_sentence]), encoding="utf-8")
    binset = create_bins(data, tiny_model_dir, tmp_path / "out", seq_len=128, buckets=(16, 32, 64),
                         show_progress=False)
    records = [json.loads(l) for l in binset.index_file.read_text().splitlines()[1:]]
    for r in records:
        assert r["length"] == min(b for b in (16, 32, 64, 128) if b >= r["tokens"])
        size = (binset.bin_dir / "input_ids" / f"input_ids_{r['sample']}_{r['sample']}.bin").stat().st_size
        assert size == r["length"] * 8
    assert len({r["length"] for r in records}) >= 3
    # the 300-odd-word sentence became windows, each word scored once
    long_id = 60
    windows = [r for r in records if r["sentence"] == long_id]
    assert len(windows) > 1
    assert sorted(w for r in windows for w, _ in r["words"]) == list(range(len(long_sentence)))


def test_900_word_sentence_is_fully_labelled_at_default_seq_len(tmp_path, tiny_model_dir, conll_sentences):
    words = [w for s in conll_sentences for w in s.words][:900]
    tags = [t for s in conll_sentences for t in s.tags][:900]
    data = tmp_path / "long.txt"
    data.write_text("\n".join(f"{w} {t}" for w, t in zip(words, tags)) + "\n", encoding="utf-8")
    binset = create_bins(data, tiny_model_dir, tmp_path / "out", seq_len=512, show_progress=False)
    records = [json.loads(l) for l in binset.index_file.read_text().splitlines()[1:]]
    assert len(records) >= 2
    assert sorted(w for r in records for w, _ in r["words"]) == list(range(900))
    assert len(binset.anno_file.read_text().split()) == 901


# ---- bad input --------------------------------------------------------------------------------

BAD_INPUTS = {
    "empty": (b"", "no sentences"),
    "only_docstart": (b"-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n", "only -DOCSTART-"),
    "one_column": (b"EU B-ORG\nrejects\n", ":2: line has 1 column"),
    "bad_scheme": (b"EU NNP B-ORG\nrejects VBZ E-ORG\n", ":2: tag 'E-ORG'"),
    "unknown_to_model": (b"EU NNP B-ORG\nMonday NNP B-DATE\n", ":2: tag 'B-DATE' is not a label of the model"),
    "not_utf8": (b"EU NNP B-ORG\nM\xfcnchen NNP B-LOC\n", ":2: bytes that are not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line(case, tmp_path, tiny_model_dir):
    content, expected = BAD_INPUTS[case]
    path = tmp_path / f"{case}.txt"
    path.write_bytes(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(bin_create, ["--input_file", str(path), "--model_name_from_hub", str(tiny_model_dir),
                                             "--save_dir", str(out)])
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert str(path) in message and expected in message
    assert not out.exists() or not any(out.iterdir())


def test_missing_input_file_and_model_folder(tmp_path, tiny_model_dir):
    runner = CliRunner()
    result = runner.invoke(bin_create, ["--input_file", str(tmp_path / "nope.txt"),
                                        "--model_name_from_hub", str(tiny_model_dir), "--save_dir", str(tmp_path)])
    assert result.exit_code == 1 and "nope.txt: file does not exist" in result.output
    data = tmp_path / "ok.txt"
    data.write_text("EU NNP B-ORG\n", encoding="utf-8")
    result = runner.invoke(bin_create, ["--input_file", str(data), "--model_name_from_hub", str(tmp_path / "no_model"),
                                        "--save_dir", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no_model: model folder does not exist" in result.output


def test_real_command_line_prints_no_traceback(tmp_path, tiny_model_dir):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"EU\n")
    proc = subprocess.run([sys.executable, str(ROOT / "bin_create.py"), "--input_file", str(path),
                           "--model_name_from_hub", str(tiny_model_dir), "--save_dir", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {path}:1: line has 1 column ('EU'); expected a word and a tag"
