"""bert_metric.py on the result layouts the real ais_bench writes besides the plain one.

A real run first: 40 CoNLL-2003 test sentences through bin_create, the ONNX export of a tiny
random model and the ORT runner (`python -m infer`, NPY). Its outputs are then rearranged the way
ais_bench arranges them, and every layout must score exactly as the plain one: the same
result.json numbers and the same predictions file, word for word.
- multi-device (`--device 0,1`): samples spread over `<ts>/device<N>_<ts>/` subfolders;
- an OM with fp16 outputs and `--outfmt BIN`: raw float16, half the float32 size.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from postprocess.cli import main as bert_metric

ROOT = Path(__file__).resolve().parents[1]
# What differs between two scorings of the same run in two places.
PATH_KEYS = ("result_dir", "anno_file", "index_file", "output_format", "bin_dtype")


def _run(*argv) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, tiny_model_dir, conll_sentences):
    """bin_create -> convert.export -> python -m infer (NPY) on 40 real sentences, scored as it is."""
    tmp = tmp_path_factory.mktemp("layouts")
    data = tmp / "test40.txt"
    data.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags))
                                for s in conll_sentences[:40]) + "\n", encoding="utf-8")
    _run("bin_create.py", "--input_file", data, "--model_name_from_hub", tiny_model_dir, "--save_dir", tmp / "bins",
         "--seq_len", "32", "--buckets", "16,32")
    anno = next((tmp / "bins").glob("*.anno"))
    stem = str(anno)[: -len(".anno")]
    _run("-m", "convert.export", "--model_dir", tiny_model_dir, "--output", tmp / "m.onnx")
    inputs = ",".join(f"{stem}/{name}" for name in ("input_ids", "attention_mask", "token_type_ids"))
    _run("-m", "infer", "--model", tmp / "m.onnx", "--input", inputs, "--output", tmp / "out", "--outfmt", "NPY",
         "--batchsize", "8")
    (plain,) = [p for p in (tmp / "out").iterdir() if p.is_dir()]
    result, predictions = score(plain, anno, tmp / "plain_pred.txt")
    # A random model still predicts entities: the comparisons below are not between all-O runs.
    assert len({line.split()[2] for line in predictions.splitlines() if line}) >= 3
    return {"tmp": tmp, "plain": plain, "anno": anno, "result": result, "predictions": predictions}


def score(result_dir: Path, anno: Path, predictions: Path, *extra) -> tuple[dict, str]:
    res = CliRunner().invoke(bert_metric, ["--result_dir", str(result_dir), "--anno_file", str(anno),
                                           "--predictions", str(predictions), *map(str, extra)])
    assert res.exit_code == 0, res.output
    result = json.loads((result_dir / "result.json").read_text())
    return {k: v for k, v in result.items() if k not in PATH_KEYS}, predictions.read_text()


def outputs_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_0.npy"), key=lambda p: int(p.name.rsplit("_", 2)[-2]))


def new_layout(real_run, name: str) -> Path:
    folder = real_run["tmp"] / name / real_run["plain"].name
    folder.mkdir(parents=True)
    return folder


def spread_over_devices(real_run, name: str, convert=None, devices: int = 2) -> Path:
    """The plain run's outputs dealt round-robin into device<N>_<ts>/ subfolders (as `--device 0,1` writes)."""
    folder = new_layout(real_run, name)
    for i, path in enumerate(outputs_of(real_run["plain"])):
        device = folder / f"device{i % devices}_{real_run['plain'].name}"
        device.mkdir(exist_ok=True)
        (convert or shutil.copy)(path, device / path.name)
    return folder


def to_fp16_bin(path: Path, target: Path) -> None:
    np.load(path).astype("<f2").tofile(target.with_suffix(".bin"))


def to_fp32_bin(path: Path, target: Path) -> None:
    np.load(path).astype("<f4").tofile(target.with_suffix(".bin"))


def converted(real_run, name: str, convert) -> Path:
    folder = new_layout(real_run, name)
    for path in outputs_of(real_run["plain"]):
        convert(path, folder / path.name)
    return folder


def fp16_reference(real_run) -> tuple[dict, str]:
    """The plain layout holding the fp16-rounded logits as float32 .npy: what an fp16 OM's run must score."""
    folder = real_run["tmp"] / "fp16_as_npy" / real_run["plain"].name
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for path in outputs_of(real_run["plain"]):
            np.save(folder / path.name, np.load(path).astype(np.float16).astype(np.float32))
    return score(folder, real_run["anno"], real_run["tmp"] / "fp16_ref_pred.txt")


def test_multi_device_folders_score_as_the_plain_layout(real_run):
    folder = spread_over_devices(real_run, "two_devices", devices=2)
    assert not list(folder.glob("*.npy")) and len(list(folder.glob("device1_*/*.npy"))) > 5
    assert score(folder, real_run["anno"], real_run["tmp"] / "dev_pred.txt") == (
        real_run["result"], real_run["predictions"])


def test_float32_bin_scores_as_npy(real_run):
    folder = converted(real_run, "bin32", to_fp32_bin)
    result, predictions = score(folder, real_run["anno"], real_run["tmp"] / "bin32_pred.txt")
    assert (result, predictions) == (real_run["result"], real_run["predictions"])
    assert json.loads((folder / "result.json").read_text())["bin_dtype"] == "float32"


@pytest.mark.parametrize("flag", [[], ["--output_dtype", "float16"]], ids=["from_size", "from_flag"])
def test_fp16_bin_outputs_are_read_as_float16(real_run, flag):
    folder = converted(real_run, f"bin16_{len(flag)}", to_fp16_bin)
    expected = fp16_reference(real_run)
    assert score(folder, real_run["anno"], real_run["tmp"] / "bin16_pred.txt", *flag) == expected
    assert json.loads((folder / "result.json").read_text())["bin_dtype"] == "float16"


def test_fp16_bins_on_two_devices(real_run):
    folder = spread_over_devices(real_run, "two_devices_fp16", convert=to_fp16_bin)
    assert score(folder, real_run["anno"], real_run["tmp"] / "dev16_pred.txt") == fp16_reference(real_run)


def assert_refused(folder: Path, anno: Path, *fragments, extra=()):
    res = CliRunner().invoke(bert_metric, ["--result_dir", str(folder), "--anno_file", str(anno), *extra])
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    assert not (folder / "result.json").exists()
    return lines[0]


def test_same_sample_in_two_device_folders_names_both(real_run):
    folder = spread_over_devices(real_run, "duplicate")
    first = outputs_of(real_run["plain"])[0]
    shutil.copy(first, folder / f"device1_{real_run['plain'].name}" / first.name)
    assert_refused(folder, real_run["anno"], f"device0_{real_run['plain'].name}/{first.name}",
                   f"device1_{real_run['plain'].name}/{first.name}")


def test_float32_flag_on_fp16_files_is_refused(real_run):
    folder = converted(real_run, "bin16_wrong_flag", to_fp16_bin)
    line = assert_refused(folder, real_run["anno"], ".bin", "--output_dtype float16",
                          extra=["--output_dtype", "float32"])
    assert "float32" in line


def test_bin_of_neither_size_is_refused(real_run):
    folder = converted(real_run, "bin_odd", to_fp32_bin)
    victim = sorted(folder.glob("*.bin"))[3]
    victim.write_bytes(victim.read_bytes()[:-4])  # e.g. a truncated copy
    assert_refused(folder, real_run["anno"], victim, "float32", "float16")


def test_a_run_mixing_fp16_and_fp32_bins_is_refused(real_run):
    folder = converted(real_run, "bin_mixed", to_fp32_bin)
    victim = sorted(folder.glob("*.bin"))[5]
    np.fromfile(victim, dtype="<f4").astype("<f2").tofile(victim)
    assert_refused(folder, real_run["anno"], victim.name, "--output_dtype")


def test_multi_device_run_one_level_too_high_gets_a_hint(real_run):
    folder = spread_over_devices(real_run, "hint")
    assert_refused(folder.parent, real_run["anno"], "holds no outputs", f"did you mean {folder}?")
    assert not (folder / "result.json").exists()
