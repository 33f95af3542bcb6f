"""The whole ModelZoo flow through its entry points, as a user runs them, on a tiny real model."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, cwd=ROOT):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def test_every_stage_through_its_entry_point(tmp_path, tiny_model_dir, conll_sentences):
    sentences = conll_sentences[:60]
    long_words = [w for s in conll_sentences[60:200] for w in s.words][:900]
    long_tags = [t for s in conll_sentences[60:200] for t in s.tags][:900]
    lines = ["-DOCSTART- -X- -X- O", ""]
    for s in sentences:
        lines += [f"{w} NNP O {t}" for w, t in zip(s.words, s.tags)] + [""]
    lines += [f"{w} NNP O {t}" for w, t in zip(long_words, long_tags)]  # no final blank line
    data = tmp_path / "data.txt"
    data.write_text("\r\n".join(lines), encoding="utf-8")  # CRLF too
    py = sys.executable

    out = run(py, "bin_create.py", "--input_file", str(data), "--model_name_from_hub", str(tiny_model_dir),
              "--save_dir", str(tmp_path / "bins"), "--seq_len", "128", "--buckets", "32,64")
    index = next((tmp_path / "bins").glob("*.index.jsonl"))
    stem = str(index)[: -len(".index.jsonl")]
    assert "61 sentences" in out
    run(py, "-m", "convert.export", "--model_dir", str(tiny_model_dir), "--output", str(tmp_path / "m.onnx"))
    out = run(py, "fix_onnx.py", str(tmp_path / "m.onnx"), str(tmp_path / "m_fix.onnx"))
    assert "2 of 2 Softmax" in out
    inputs = ",".join(f"{stem}/{name}" for name in ("input_ids", "attention_mask", "token_type_ids"))
    run(py, "-m", "infer", "--model", str(tmp_path / "m_fix.onnx"), "--input", inputs,
        "--output", str(tmp_path / "result"), "--outfmt", "NPY", "--batchsize", "8")
    (result_dir,) = [p for p in (tmp_path / "result").iterdir() if p.is_dir()]
    summary = json.loads(Path(f"{result_dir}_summary.json").read_text())
    assert {"filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
            "npu_compute_time_list", "pid"} <= set(summary)
    run(py, "bert_metric.py", "--result_dir", str(result_dir), "--anno_file", f"{stem}.anno",
        "--predictions", str(tmp_path / "pred.txt"))
    result = json.loads((result_dir / "result.json").read_text())
    assert result["num_sentences"] == 61
    assert result["num_words"] == sum(len(s) for s in sentences) + 900
    assert result["missing"] == []
    blocks = (tmp_path / "pred.txt").read_text().strip("\n").split("\n\n")
    assert len(blocks) == 61 and len(blocks[-1].splitlines()) == 900  # all 900 words labelled
    out = run(py, "scripts/summarize_run.py", "--result_dir", str(result_dir), "--work_dir", str(tmp_path),
              "--total_seconds", "12.5")
    # one figure per meaning, each saying what it spans
    assert re.search(r"^inference: [\d.]+ sentences/s \(python -m infer, model load to last output; "
                     r"61 sentences as \d+ samples in [\d.]+ s\)$", out, re.M), out
    assert re.search(r"^model compute: [\d.]+ samples/s \(ais_bench throughput, session.run only\)$", out, re.M)
    assert re.search(r"^whole flow: 12 s \(scripts/run_all.sh, all 6 stages", out, re.M)
    assert len(re.findall(r"sentences/s", out)) == 1

    out = run(py, "-m", "infer", "--model", str(tmp_path / "m_fix.onnx"), "--input", inputs,
              "--output", str(tmp_path / "result"), "--outfmt", "NPY", "--batchsize", "8")
    assert [p for p in (tmp_path / "result").iterdir() if p.is_dir()] == [result_dir]  # resumed, not redone
    assert re.search(r"all \d+ outputs reused from an earlier run \(no speed measured\)", out)
    assert not re.search(r"\d \w+/s", out)  # no speed at all
    out = run(py, "scripts/summarize_run.py", "--result_dir", str(result_dir), "--work_dir", str(tmp_path),
              "--total_seconds", "3")
    assert re.search(r"inference: not run; all \d+ outputs reused from an earlier run \(no speed measured\)", out)
    assert "sentences/s" not in out
    assert "measured by the earlier run that computed the outputs" in out


def test_run_all_labels_each_speed_and_reports_none_for_reused_outputs(tmp_path, tiny_model_dir, conll_sentences):
    data = tmp_path / "data.txt"
    data.write_text("\n\n".join("\n".join(f"{w} NNP O {t}" for w, t in zip(s.words, s.tags))
                                for s in conll_sentences[:12]) + "\n", encoding="utf-8")
    argv = ["bash", "scripts/run_all.sh", "--model_dir", str(tiny_model_dir), "--input_file", str(data),
            "--work_dir", str(tmp_path / "work"), "--seq_len", "64", "--buckets", "32", "--batchsize", "4"]
    summary = run(*argv).split("== summary ==")[1]
    assert re.search(r"^inference: [\d.]+ sentences/s \(python -m infer, model load to last output; 12 sentences "
                     r"as 12 samples in [\d.]+ s\)$", summary, re.M), summary
    assert re.search(r"^model compute: [\d.]+ samples/s \(ais_bench throughput, session.run only\)$", summary, re.M)
    assert re.search(r"^whole flow: \d+ s \(scripts/run_all.sh, all 6 stages", summary, re.M)
    # the same graph and backend in process on the same sentences, beside the file flow's figure
    lines = summary.strip().splitlines()
    in_process = re.compile(r"^in process: [\d.]+ sentences/s \(same graph on ONNX Runtime, engine.Engine on the "
                            r"same 12 sentences, .*\); python -m infer reaches [\d.]+x of it$")
    assert any(in_process.match(line) for line in lines), summary
    assert [i for i, line in enumerate(lines) if line.startswith("in process: ")] == \
        [1 + next(i for i, line in enumerate(lines) if line.startswith("inference: "))]
    assert len(re.findall(r"\d \w+/s", summary)) == 3  # one figure per meaning

    summary = run(*argv).split("== summary ==")[1]  # every stage reused
    assert "inference: not run; all 12 outputs reused from an earlier run (no speed measured)" in summary
    assert not re.search(r"\d \w+/s \(python -m infer", summary)
    assert "measured by the earlier run that computed the outputs" in summary
    assert re.search(r"^in process: [\d.]+ sentences/s \(same graph", summary, re.M)
    assert "python -m infer reaches" not in summary  # nothing of this run to compare


def test_run_all_with_an_unreadable_model_context_is_one_line_and_makes_nothing(tmp_path, tiny_model_dir):
    """The flow's defaults (context, windows, token budget) come from the model's config.json; a context
    there that no stage knows stops the script before anything is made, with the file named once."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for source in tiny_model_dir.iterdir():
        if source.is_file():  # not the export cache other tests leave there
            (model_dir / source.name).write_bytes(source.read_bytes())
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config["ner_context"] = {"context": "paragraph"}
    (model_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    data = tmp_path / "data.txt"
    data.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    proc = subprocess.run(["bash", "scripts/run_all.sh", "--model_dir", str(model_dir), "--input_file", str(data),
                           "--work_dir", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {model_dir / 'config.json'}: ner_context must be")
    assert not (tmp_path / "work").exists()
