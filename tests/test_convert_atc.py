"""convert_om.sh / convert.atc: the exact ATC command lines, gears, and the no-ATC path."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from conftest import ROOT
from convert import atc as atc_mod

SOC = "Ascend310P3"
TAIL = ("--soc_version=Ascend310P3 --op_select_implmode=high_precision --optypelist_for_implmode=Gelu "
        "--precision_mode=allow_fp32_to_fp16 --log=error")


def _onnx(path, names=("input_ids", "attention_mask", "token_type_ids"), dims=("batch", "sequence")):
    """A minimal graph with BERT's inputs: ATC command building reads only the inputs."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, list(dims)) for n in names]
    out = helper.make_tensor_value_info("logits", TensorProto.INT64, list(dims))
    graph = helper.make_graph([helper.make_node("Identity", [names[0]], ["logits"])], "g", inputs, [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return path


@pytest.fixture
def bert3(tmp_path):
    return _onnx(tmp_path / "bert.onnx")


def _run(args, env_path=None, monkeypatch=None):
    if env_path is not None:
        monkeypatch.setenv("PATH", str(env_path))
    return CliRunner().invoke(atc_mod.main, args)


def test_static_command_line(bert3):
    plan = atc_mod.plan_atc(model=bert3, batch_size=8, seq_len=512, soc_version=SOC, output="out/bert_bs8")
    assert plan.command_line() == (
        f"atc --model={bert3} --framework=5 --output=out/bert_bs8 --input_format=ND "
        '--input_shape="input_ids:8,512;attention_mask:8,512;token_type_ids:8,512" ' + TAIL)
    assert plan.argv[5] == "--input_shape=input_ids:8,512;attention_mask:8,512;token_type_ids:8,512"  # no quotes in argv
    lines = plan.script_lines(bin_dir="bins/bert_bin_1", out_dir="result")
    assert lines[:2] == ["BIN_DIR=bins/bert_bin_1", "OUT_DIR=result"]
    assert lines[3] == ('python3 -m ais_bench --model out/bert_bs8.om --input "$BIN_DIR/input_ids,'
                        '$BIN_DIR/attention_mask,$BIN_DIR/token_type_ids" --output "$OUT_DIR" --output_dirname '
                        'bert_bs8 --outfmt NPY --batchsize 8')
    assert lines[-1] == (f'python3 {ROOT / "bert_metric.py"} --result_dir "$OUT_DIR/bert_bs8" '
                         '--anno_file "$BIN_DIR.anno"')
    assert all(line.startswith(("#", "python3 ", "BIN_DIR=", "OUT_DIR=")) for line in lines)


def test_gear_command_line_and_ais_bench_dymdims(bert3):
    plan = atc_mod.plan_atc(model=bert3, batch_size=1, buckets=(128, 32, 64), soc_version=SOC, output="g")
    assert plan.command_line() == (
        f"atc --model={bert3} --framework=5 --output=g --input_format=ND "
        '--input_shape="input_ids:1,-1;attention_mask:1,-1;token_type_ids:1,-1" '
        '--dynamic_dims="32,32,32;64,64,64;128,128,128" ' + TAIL)
    lines = [line for line in plan.script_lines() if "ais_bench --model" in line]
    assert len(lines) == 3  # one per gear, each on its own folder, all into one --output_dirname
    assert lines[0] == ('test ! -d "$BIN_DIR/gears/32" || python3 -m ais_bench --model g.om --input '
                        '"$BIN_DIR/gears/32/input_ids,$BIN_DIR/gears/32/attention_mask,$BIN_DIR/gears/32/token_type_ids" '
                        '--output "$OUT_DIR" --output_dirname g --outfmt NPY --batchsize 1 '
                        '--dymDims "input_ids:1,32;attention_mask:1,32;token_type_ids:1,32"')
    assert lines[2].endswith('--dymDims "input_ids:1,128;attention_mask:1,128;token_type_ids:1,128"')


def test_two_input_model_and_default_output_name(tmp_path):
    model = _onnx(tmp_path / "distil.onnx", names=("input_ids", "attention_mask"))
    plan = atc_mod.plan_atc(model=model, batch_size=4, seq_len=128, soc_version=SOC, precision_mode="force_fp16")
    assert plan.argv[3] == f"--output={tmp_path / 'distil_bs4_seq128'}"
    assert plan.argv[5] == "--input_shape=input_ids:4,128;attention_mask:4,128"
    assert "--precision_mode=force_fp16" in plan.argv
    gears = atc_mod.plan_atc(model=model, batch_size=4, buckets=[64, 256], soc_version=SOC)
    assert "--dynamic_dims=64,64;256,256" in gears.argv
    assert gears.output.endswith("distil_bs4_gears")


def test_dry_run_cli_needs_no_atc(bert3, tmp_path, monkeypatch):
    result = _run(["--model", str(bert3), "--bs", "1", "--seq_len", "384", "--soc_version", SOC, "--dry-run"],
                  env_path=tmp_path / "empty", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"atc --model={bert3} --framework=5 ")
    assert "--input_shape=\"input_ids:1,384;" in result.output and "python3 -m ais_bench" in result.output


def test_convert_om_sh_help_names_what_the_user_typed(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "convert_om.sh"), "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: bash {ROOT / 'convert_om.sh'} [OPTIONS]")
    assert "python -m" not in proc.stdout


def test_missing_atc_one_line_exit_1_nothing_written(bert3, tmp_path, monkeypatch):
    result = _run(["--model", str(bert3), "--bs", "1", "--seq_len", "384", "--soc_version", SOC],
                  env_path=tmp_path / "empty", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert result.output.strip() == ("error: atc was not found on PATH; set up CANN first: "
                                     "source /usr/local/Ascend/ascend-toolkit/set_env.sh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.onnx"]


def test_convert_om_sh_without_atc(bert3, tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    assert subprocess.run(["bash", "-c", "command -v atc"], env=env, capture_output=True).returncode != 0
    proc = subprocess.run(["bash", str(ROOT / "convert_om.sh"), "--model", str(bert3), "--bs", "1", "--seq_len", "64",
                           "--soc_version", SOC], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: atc was not found on PATH; set up CANN first: source /usr/local/Ascend/ascend-toolkit/set_env.sh"]
    assert "Traceback" not in proc.stderr


def _fake_atc(folder, body):
    folder.mkdir()
    script = folder / "atc"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_runs_atc_and_moves_the_om_in_place(bert3, tmp_path, monkeypatch):
    # Writes <--output>.om and records its argv, like ATC does on success.
    bindir = _fake_atc(tmp_path / "bin", 'for a in "$@"; do case "$a" in --output=*) o="${a#--output=}";; esac; done\n'
                                         f'echo "$@" > {tmp_path}/argv.txt; echo om > "$o.om"; chmod 666 "$o.om"\n')
    result = _run(["--model", str(bert3), "--bs", "2", "--seq_len", "64", "--soc_version", SOC,
                   "--output", str(tmp_path / "model.om")], env_path=f"{bindir}:{os.environ['PATH']}",
                  monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.om").read_text() == "om\n"
    assert not (tmp_path / "model.om").stat().st_mode & 0o022  # ais_bench refuses a group-writable model
    record = json.loads((tmp_path / "model.atc.json").read_text())
    assert record["batch_size"] == 2 and record["seq_lens"] == [64] and record["gears"] is False
    argv = (tmp_path / "argv.txt").read_text()
    assert "--input_shape=input_ids:2,64;attention_mask:2,64;token_type_ids:2,64" in argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["argv.txt", "bert.onnx", "bin", "model.atc.json", "model.om"]


def test_failing_atc_leaves_nothing(bert3, tmp_path, monkeypatch):
    bindir = _fake_atc(tmp_path / "bin", 'for a in "$@"; do case "$a" in --output=*) o="${a#--output=}";; esac; done\n'
                                         'echo half > "$o.om"; exit 3\n')
    result = _run(["--model", str(bert3), "--bs", "1", "--seq_len", "64", "--soc_version", SOC, "--output",
                   str(tmp_path / "m")], env_path=f"{bindir}:{os.environ['PATH']}", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "atc exited with code 3" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.onnx", "bin"]


@pytest.mark.parametrize("extra, message", [
    (["--seq_len", "64", "--buckets", "32,64"], "exactly one of --seq_len"),
    (["--buckets", "64"], "ATC takes 2 to 100 gears"),
    (["--buckets", "32,x"], "expected comma-separated sequence lengths"),
    (["--seq_len", "64", "--soc_version", "310P3"], "expected an Ascend SoC name"),
])
def test_bad_options_are_one_line_errors(bert3, extra, message):
    args = ["--model", str(bert3), "--bs", "1", "--dry-run"] + extra
    if "--soc_version" not in extra:
        args += ["--soc_version", SOC]
    result = CliRunner().invoke(atc_mod.main, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_static_model_shape_must_match(tmp_path):
    model = _onnx(tmp_path / "static.onnx", dims=(1, 128))
    with pytest.raises(atc_mod.UserError, match="fixed sequence length 128, not --seq_len 64"):
        atc_mod.plan_atc(model=model, batch_size=1, seq_len=64, soc_version=SOC)
    with pytest.raises(atc_mod.UserError, match="gears need the dynamic export"):
        atc_mod.plan_atc(model=model, batch_size=1, buckets=(32, 64), soc_version=SOC)
    assert atc_mod.plan_atc(model=model, batch_size=1, seq_len=128, soc_version=SOC).seq_lens == (128,)


def test_missing_model_is_one_line_error(tmp_path):
    result = CliRunner().invoke(atc_mod.main, ["--model", str(tmp_path / "no.onnx"), "--bs", "1", "--seq_len", "8",
                                               "--soc_version", SOC, "--dry-run"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'no.onnx'}: ONNX model does not exist"
