"""`python -m corpus` (local and Ray) against the ModelZoo .bin flow on real CoNLL-2003 test sentences:
same result.json scores, and a byte-identical `word gold pred` file (every word label identical)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from convert.onnx_cache import ensure_onnx
from postprocess.from_counts import CONTEXT_KEYS

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = 300


def run(*argv, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def first_sentences(source: Path, count: int, target: Path) -> Path:
    """The first `count` sentences of a CoNLL file, lines copied as they are."""
    out, seen, previous = [], 0, ""
    for line in source.read_text(encoding="utf-8").split("\n"):
        out.append(line)
        if not line.strip() and previous.strip() and not previous.startswith("-DOCSTART-"):
            seen += 1
            if seen == count:
                break
        previous = line
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def data(conll, tmp_path_factory):
    return first_sentences(conll / "test.txt", SENTENCES, tmp_path_factory.mktemp("data") / "test_head.txt")


@pytest.fixture(scope="module")
def bin_flow(data, default_model_dir, tmp_path_factory):
    """bin_create -> python -m infer -> bert_metric.py --predictions, as a ModelZoo user runs them."""
    work = tmp_path_factory.mktemp("bin_flow")
    onnx = ensure_onnx(default_model_dir)
    run("bin_create.py", "--input_file", data, "--model_name_from_hub", default_model_dir, "--save_dir", work / "bins",
        "--buckets", "64,128,256,512")
    stem = str(next((work / "bins").glob("*.index.jsonl")))[: -len(".index.jsonl")]
    inputs = ",".join(f"{stem}/{name}" for name in ("input_ids", "attention_mask", "token_type_ids"))
    run("-m", "infer", "--model", onnx, "--input", inputs, "--output", work / "result", "--outfmt", "NPY",
        "--batchsize", "8")
    (result_dir,) = [p for p in (work / "result").iterdir() if p.is_dir()]
    run("bert_metric.py", "--result_dir", result_dir, "--anno_file", f"{stem}.anno", "--predictions",
        work / "pred.txt")
    return json.loads((result_dir / "result.json").read_text()), (work / "pred.txt").read_text()


def check_same_as_bin_flow(out: Path, predictions: Path, bin_flow) -> dict:
    expected, expected_predictions = bin_flow
    result = json.loads((out / "result.json").read_text())
    assert set(result) == set(expected)
    scores = {k: v for k, v in expected.items() if k not in CONTEXT_KEYS}
    assert {k: result[k] for k in scores} == scores
    assert result["f1"] == expected["f1"] > 0.8 and result["num_sentences"] == SENTENCES
    assert predictions.read_text() == expected_predictions  # every word, gold and predicted label
    return result


def test_local_engine_equals_bin_flow(tmp_path, data, default_model_dir, bin_flow):
    out = tmp_path / "out"
    proc = run("-m", "corpus", "--input", data, "--model_dir", default_model_dir, "--output", out,
               "--shard_sentences", "120", "--predictions", tmp_path / "pred.txt")
    check_same_as_bin_flow(out, tmp_path / "pred.txt", bin_flow)
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        f"shard-0000{i}.{ext}" for i in range(3) for ext in ("counts.json", "parquet")]
    table = pq.read_table(out / "shards" / "shard-00000.parquet")
    assert table.num_rows == 120 and table.column("source").to_pylist()[0] == str(data)
    assert "sent/s" in proc.stderr  # the one progress bar, with its rate


def test_ray_engine_equals_bin_flow_and_local(tmp_path, data, default_model_dir, bin_flow):
    """A real local cluster (started in-process by the command, 2 CPUs, shut down at the end), 2 actors."""
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    run("-m", "corpus", "--input", data, "--model_dir", default_model_dir, "--output", local,
        "--shard_sentences", "150")
    run("-m", "corpus", "--input", data, "--model_dir", default_model_dir, "--output", ray_out,
        "--shard_sentences", "150", "--engine", "ray", "--workers", "2", "--predictions", tmp_path / "pred.txt",
        timeout=600)
    check_same_as_bin_flow(ray_out, tmp_path / "pred.txt", bin_flow)
    for shard in ("shard-00000", "shard-00001"):
        assert pq.read_table(ray_out / "shards" / f"{shard}.parquet").equals(
            pq.read_table(local / "shards" / f"{shard}.parquet"))
        assert (ray_out / "shards" / f"{shard}.counts.json").read_text() == \
            (local / "shards" / f"{shard}.counts.json").read_text()
