"""bert_metric.py and `python -m postprocess.report` refuse what they cannot score or write: one line
`error: <file>: <problem>` on stderr, exit 1, no traceback, and no output file left behind.

Runs are the fabricated-but-real-sentence runs of test_postprocess (`write_run`): 20 CoNLL-2003
test sentences with logits one-hot at each scored word's first sub-token.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import postprocess.cli
from postprocess.cli import main
from postprocess.report import main as report_main
from test_postprocess import LABELS, cli_args, output_file, write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path, conll_sentences):
    return write_run(tmp_path / "run", conll_sentences[:20])


def assert_one_line_error(result, *fragments) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


def entry_point(*args):
    """bert_metric.py as a user runs it."""
    return subprocess.run([sys.executable, "bert_metric.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def assert_entry_point_refuses(done, *fragments) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


def rewrite_logits(run, sample: int, edit) -> Path:
    path = output_file(run, sample)
    array = np.load(path)
    path.unlink()
    array = edit(array, run["samples"][sample])
    target = path.with_suffix(".npy")
    np.save(target, array)
    return target


# --- logits that are not finite real numbers (issue 13 point 2) --------------------------------------

@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["plus_inf", "minus_inf"])
def test_infinite_logit_at_a_scored_word_is_refused(run, value):
    def poison(array, rec):
        array[0, rec["words"][0][1], 3] = value
        return array
    path = rewrite_logits(run, 2, poison)
    line = assert_entry_point_refuses(entry_point(*cli_args(run)), path, "infinite")
    assert f"token {run['samples'][2]['words'][0][1]}" in line
    assert not (run["result_dir"] / "result.json").exists()


def test_infinite_logit_where_no_word_is_scored_is_harmless(run):
    baseline = CliRunner().invoke(main, [str(a) for a in cli_args(run)])
    assert baseline.exit_code == 0, baseline.output
    scored = (run["result_dir"] / "result.json").read_text()

    def poison_padding(array, rec):
        array[0, 0] = np.inf  # [CLS]: never a word's first sub-token
        return array
    rewrite_logits(run, 1, poison_padding)
    again = CliRunner().invoke(main, [str(a) for a in cli_args(run)])
    assert again.exit_code == 0, again.output
    assert (run["result_dir"] / "result.json").read_text() == scored


def test_complex_logits_are_refused(run):
    path = rewrite_logits(run, 3, lambda array, rec: array.astype(np.complex64) + 1j)
    assert_entry_point_refuses(entry_point(*cli_args(run)), path, "complex")
    assert not (run["result_dir"] / "result.json").exists()


def test_npy_header_claiming_an_enormous_shape_is_refused_before_loading(run):
    path = output_file(run, 4)
    rec = run["samples"][4]
    data = np.load(path).tobytes()
    header = {"descr": "<f4", "fortran_order": False, "shape": (1, 10 ** 12, len(LABELS))}
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(data)
    line = assert_entry_point_refuses(entry_point(*cli_args(run)), path, "(1, 1000000000000, 9)",
                                      f"(1, {rec['length']}, 9)")
    assert "MemoryError" not in line


# --- destinations that cannot be written (issue 13 point 6) ------------------------------------------

@contextmanager
def read_only(folder: Path):
    """A folder nobody may write into; root ignores permission bits, so it also gets the immutable flag."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        probe = folder / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_read_only_result_folder_says_so_and_suggests_output(run, tmp_path):
    with read_only(run["result_dir"]):
        line = assert_entry_point_refuses(entry_point(*cli_args(run)), run["result_dir"], "result.json", "--output")
        assert "not writable" in line
        elsewhere = tmp_path / "scores" / "result.json"
        done = entry_point(*cli_args(run), "--output", elsewhere)
        assert done.returncode == 0, done.stderr
    assert elsewhere.is_file() and not (run["result_dir"] / "result.json").exists()


def a_regular_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("a regular file\n")
    return path


@pytest.mark.parametrize("option", ["--output", "--predictions", "--report"])
def test_destination_below_a_regular_file(run, tmp_path, option):
    below = a_regular_file(tmp_path) / "x.out"
    assert_entry_point_refuses(entry_point(*cli_args(run), option, below), below, "is a file, not a folder")
    assert not (run["result_dir"] / "result.json").exists()


@pytest.mark.parametrize("option", ["--output", "--predictions", "--report"])
def test_destination_that_is_a_folder(run, tmp_path, option):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert_entry_point_refuses(entry_point(*cli_args(run), option, folder), folder, "is a folder", option)
    assert list(folder.iterdir()) == [] and not (run["result_dir"] / "result.json").exists()


def test_two_options_naming_the_same_file(run, tmp_path):
    same = tmp_path / "same.txt"
    result = CliRunner().invoke(main, [str(a) for a in cli_args(run, "--output", same, "--predictions", same)])
    assert_one_line_error(result, same, "--output", "--predictions")
    assert not same.exists()


def test_a_write_that_fails_late_leaves_nothing(run, tmp_path, monkeypatch):
    """The disk fills up while result.json is written: the predictions written just before go too."""
    def disk_full(path, obj, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(postprocess.cli, "write_json", disk_full)
    predictions = tmp_path / "pred.txt"
    result = CliRunner().invoke(main, [str(a) for a in cli_args(run, "--predictions", predictions)])
    assert_one_line_error(result, run["result_dir"], "result.json", os.strerror(errno.ENOSPC), "--output")
    assert not predictions.exists() and not (run["result_dir"] / "result.json").exists()


def test_stale_temporaries_of_a_killed_run_are_removed(run):
    stale = run["result_dir"] / ".result.json.ab12cd34.tmp"
    stale.write_text('{"half": ')
    result = CliRunner().invoke(main, [str(a) for a in cli_args(run)])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (run["result_dir"] / "result.json").is_file()


# --- python -m postprocess.report --------------------------------------------------------------------

@pytest.fixture
def scored(run, tmp_path):
    predictions = tmp_path / "pred.txt"
    result = CliRunner().invoke(main, [str(a) for a in cli_args(run, "--predictions", predictions)])
    assert result.exit_code == 0, result.output
    return {"result": run["result_dir"] / "result.json", "predictions": predictions}


def test_report_output_below_a_regular_file(scored, tmp_path):
    below = a_regular_file(tmp_path) / "report.html"
    result = CliRunner().invoke(report_main, ["--result", str(scored["result"]), "--output", str(below),
                                              "--predictions", str(scored["predictions"])])
    assert_one_line_error(result, below, "is a file, not a folder")


def test_report_output_that_is_a_folder(scored, tmp_path):
    result = CliRunner().invoke(report_main, ["--result", str(scored["result"]), "--output", str(tmp_path),
                                              "--predictions", str(scored["predictions"])])
    assert_one_line_error(result, tmp_path, "is a folder")


@pytest.mark.parametrize("text", ["5", '{"precision": 1, "recall": 1, "f1": 1, "per_type": 3}'],
                         ids=["number", "per_type_not_an_object"])
def test_report_of_a_json_that_is_not_a_result(scored, tmp_path, text):
    fake = tmp_path / "result.json"
    fake.write_text(text)
    output = tmp_path / "report.html"
    result = CliRunner().invoke(report_main, ["--result", str(fake), "--output", str(output),
                                              "--predictions", str(scored["predictions"])])
    assert_one_line_error(result, fake, "not a bert_metric.py result.json")
    assert not output.exists()


def test_report_result_that_is_a_folder(scored, tmp_path):
    output = tmp_path / "report.html"
    result = CliRunner().invoke(report_main, ["--result", str(tmp_path), "--output", str(output)])
    assert_one_line_error(result, tmp_path, "is not a file")
