"""The ais_bench route for .om models: the argv it builds, and the error when ais_bench is absent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import infer.ais_bench as ais
from infer.cli import infer_command


def test_argv_builder_uses_ais_bench_flags():
    argv = ais.build_ais_bench_argv(model="bert.om", input="d/input_ids,d/attention_mask,d/token_type_ids",
                                    output="result", outfmt="npy", batchsize=8, loop=1, warmup_count=2,
                                    device=1, python="/usr/bin/python3")
    assert argv == ["/usr/bin/python3", "-m", "ais_bench", "--model", "bert.om",
                    "--input", "d/input_ids,d/attention_mask,d/token_type_ids", "--output", "result",
                    "--outfmt", "NPY", "--batchsize", "8", "--loop", "1", "--warmup_count", "2", "--device", "1"]


def test_argv_builder_leaves_out_unset_flags():
    argv = ais.build_ais_bench_argv(model="bert.om", output_dirname="run1", output="out", display_all_summary=True)
    assert argv == [sys.executable, "-m", "ais_bench", "--model", "bert.om", "--output", "out",
                    "--output_dirname", "run1", "--display_all_summary", "1"]


def test_om_without_ais_bench_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ais, "ais_bench_available", lambda: False)
    model = tmp_path / "bert.om"
    model.write_bytes(b"\0")
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", "a,b,c", "--output",
                                                str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "ais_bench" in lines[0] and "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in lines[0]
    assert "wheel" in lines[0] and str(model) in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.fixture
def fake_ais_bench(tmp_path, monkeypatch):
    """ais_bench 'installed', its runs recorded instead of executed; and an .om file to give it."""
    calls = []
    monkeypatch.setattr(ais, "ais_bench_available", lambda: True)
    monkeypatch.setattr(subprocess, "run", lambda argv, check: calls.append(argv) or
                        subprocess.CompletedProcess(argv, 0))
    model = tmp_path / "bert.om"
    model.write_bytes(b"\0")
    return calls, model


def test_om_model_routes_to_ais_bench(fake_ais_bench):
    calls, model = fake_ais_bench
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", "d/a,d/b", "--output", "out",
                                                "--outfmt", "NPY", "--batchsize", "4"])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "ais_bench", "--model", str(model), "--input", "d/a,d/b",
                      "--output", "out", "--outfmt", "NPY", "--batchsize", "4", "--loop", "1",
                      "--warmup_count", "1", "--device", "0"]]


def test_missing_om_model_file(tmp_path):
    result = CliRunner().invoke(infer_command, ["--model", str(tmp_path / "x.om")])
    assert result.exit_code == 1 and "x.om: model file does not exist" in result.stderr


def test_bucketed_inputs_run_once_per_gear_into_one_folder(tmp_path, fake_ais_bench, tiny_model_dir, conll_sentences):
    """bin_create --buckets mixes lengths; each ais_bench run gets only its gear's samples and --dymDims."""
    from preprocess.pipeline import create_bins

    data = tmp_path / "data.txt"
    data.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags))
                                for s in conll_sentences[:40]) + "\n", encoding="utf-8")
    binset = create_bins(data, tiny_model_dir, tmp_path / "bins", seq_len=64, buckets="16,32", show_progress=False)
    calls, model = fake_ais_bench
    inputs = ",".join(str(d) for d in binset.input_dirs())
    result = CliRunner().invoke(infer_command, ["--model", str(model), "--input", inputs, "--output",
                                                str(tmp_path / "out"), "--outfmt", "NPY", "--batchsize", "1"])
    assert result.exit_code == 0, result.output
    lengths = sorted({p.stat().st_size // 8 for p in (binset.bin_dir / "input_ids").iterdir()})
    assert len(lengths) >= 2 and len(calls) == len(lengths)
    seen = 0
    for argv, length in zip(calls, lengths):
        dims = argv[argv.index("--dymDims") + 1]
        assert dims == f"input_ids:1,{length};attention_mask:1,{length};token_type_ids:1,{length}"
        assert argv[argv.index("--output_dirname") + 1] == calls[0][argv.index("--output_dirname") + 1]
        folders = argv[argv.index("--input") + 1].split(",")
        assert [Path(f).name for f in folders] == ["input_ids", "attention_mask", "token_type_ids"]
        files = list(Path(folders[0]).iterdir())
        assert files and all(f.stat().st_size == 8 * length for f in files)
        seen += len(files)
    assert seen == len(list((binset.bin_dir / "input_ids").iterdir()))
