"""The ais_bench route for .om models: the argv it builds, and the error when ais_bench is absent.

Runs through a stand-in ais_bench are in test_ais_bench_fake.py."""
from __future__ import annotations

import sys

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


def test_missing_om_model_file(tmp_path):
    result = CliRunner().invoke(infer_command, ["--model", str(tmp_path / "x.om")])
    assert result.exit_code == 1 and "x.om: model file does not exist" in result.stderr
