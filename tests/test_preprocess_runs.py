"""bin_create runs side by side in one --save_dir: a folder of their own each, cleanup of what killed
runs left, a bad --save_dir, and help (`bin_create.py -h`, `bash run.sh --help`) that answers at once."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from preprocess.cli import main as bin_create
from preprocess.pipeline import create_bins

ROOT = Path(__file__).resolve().parents[1]


def run_names(save_dir: Path, stamp: str) -> list[Path]:
    name = f"bert_bin_{stamp}"
    return [save_dir / name, save_dir / f"{name}.anno", save_dir / f"{name}.index.jsonl"]


def claim_path(save_dir: Path, stamp: str) -> Path:
    """Where a run in progress keeps its (locked) claim on a run name."""
    return save_dir / f".bert_bin_{stamp}.claim"


@pytest.fixture
def conll_file(tmp_path, conll_sentences):
    path = tmp_path / "sample.txt"
    lines = []
    for s in conll_sentences[:12]:
        lines += [f"{w} NNP O {t}" for w, t in zip(s.words, s.tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def finished_runs(save_dir: Path) -> list[str]:
    """Run names whose index (written last) is there, each checked complete."""
    names = []
    for index in sorted(save_dir.glob("bert_bin_*.index.jsonl")):
        name = index.name[:-len(".index.jsonl")]
        header = json.loads(index.read_text(encoding="utf-8").splitlines()[0])
        assert (save_dir / f"{name}.anno").is_file()
        assert len(list((save_dir / name / "input_ids").iterdir())) == header["num_samples"] > 0
        names.append(name)
    return names


def test_a_taken_timestamp_gets_a_suffix_instead_of_a_crash(tmp_path, tiny_model_dir, conll_file):
    """Another run already finished in this very second (and the next minute, to be safe): the run
    takes `<ts>_1` and leaves the other run's outputs alone."""
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    now = datetime.datetime.now()
    taken = [(now + datetime.timedelta(seconds=d)).strftime("%Y%m%d-%H%M%S") for d in range(-2, 90)]
    for stamp in taken:
        folder, anno, index = run_names(save_dir, stamp)
        folder.mkdir()
        anno.write_text("0 0\n")
        index.write_text("{}\n")
    result = CliRunner().invoke(bin_create, ["--input_file", str(conll_file), "--model_name_from_hub",
                                             str(tiny_model_dir), "--save_dir", str(save_dir), "--seq_len", "64"])
    assert result.exit_code == 0, result.output
    new = [p.name for p in save_dir.glob("bert_bin_*_1.index.jsonl")]
    assert len(new) == 1 and new[0][len("bert_bin_"):-len("_1.index.jsonl")] in taken
    assert f"{save_dir / new[0]}" in result.output
    for stamp in taken:  # untouched
        folder, anno, index = run_names(save_dir, stamp)
        assert not any(folder.iterdir()) and anno.read_text() == "0 0\n" and index.read_text() == "{}\n"
    assert not list(save_dir.glob(".*")), "a claim or temporary was left behind"


# A process that holds a run-name claim and a temporary the way a live bin_create / atomic write does.
HOLDER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from common.atomic import create_locked
    fds = [create_locked(path) for path in sys.argv[1:]]
    assert None not in fds
    print("holding", flush=True)
    sys.stdin.read()
""")


def test_live_runs_are_respected_and_dead_runs_cleaned(tmp_path, tiny_model_dir, conll_file):
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    live_claim, live_tmp = claim_path(save_dir, "20240101-120000"), save_dir / ".input_ids_0_0.bin.q1w2e3r4.tmp"
    # what runs killed with SIGKILL leave: a claim and an atomic writer's temporary nobody holds
    dead_claim, dead_tmp = claim_path(save_dir, "20240101-120001"), save_dir / ".result.json.a1b2c3d4.tmp"
    dead_claim.write_text("")
    dead_tmp.write_text('{"f1": 0.')
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(live_claim), str(live_tmp)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        live = create_bins(conll_file, tiny_model_dir, save_dir, seq_len=64, stamp="20240101-120000",
                           show_progress=False)
        dead = create_bins(conll_file, tiny_model_dir, save_dir, seq_len=64, stamp="20240101-120001",
                           show_progress=False)
        assert live.bin_dir.name == "bert_bin_20240101-120000_1"  # the name a live run holds is skipped
        assert dead.bin_dir.name == "bert_bin_20240101-120001"  # a dead run's claim does not block it
        assert live_claim.exists() and live_tmp.exists()
        assert not dead_claim.exists() and not dead_tmp.exists()
    finally:
        holder.communicate("", timeout=30)
    assert finished_runs(save_dir) == ["bert_bin_20240101-120000_1", "bert_bin_20240101-120001"]


def test_two_commands_at_once_into_one_save_dir(tmp_path, tiny_model_dir, conll_file):
    save_dir = tmp_path / "out"
    command = [sys.executable, str(ROOT / "bin_create.py"), "--input_file", str(conll_file),
               "--model_name_from_hub", str(tiny_model_dir), "--save_dir", str(save_dir), "--seq_len", "64"]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert len(finished_runs(save_dir)) == 2
    assert not list(save_dir.glob(".*"))


def test_save_dir_that_is_a_file_is_one_clear_line(tmp_path, tiny_model_dir, conll_file):
    save_dir = tmp_path / "bert_bin"
    save_dir.write_text("not a folder\n")
    proc = subprocess.run([sys.executable, str(ROOT / "bin_create.py"), "--input_file", str(conll_file),
                           "--model_name_from_hub", str(tiny_model_dir), "--save_dir", str(save_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {save_dir}: is a file, not a folder (--save_dir)"
    assert save_dir.read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert_bin", "sample.txt"]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_bin_create_help(flag):
    proc = subprocess.run([sys.executable, str(ROOT / "bin_create.py"), flag], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage:") and "--save_dir" in proc.stdout and "--seq_len" in proc.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_run_sh_prints_help_before_any_setup(tmp_path, flag):
    """A copy of run.sh whose setup step would leave a mark and fail: help must never reach it."""
    shutil.copy(ROOT / "run.sh", tmp_path / "run.sh")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run_all.sh", tmp_path / "scripts" / "run_all.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("touch setup-ran\nexit 3\n")
    proc = subprocess.run(["bash", str(tmp_path / "run.sh"), "--seq_len", "128", flag], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: bash run.sh" in proc.stdout and "--work_dir" in proc.stdout
    assert not (tmp_path / "setup-ran").exists()


def test_real_run_sh_help_is_immediate():
    # its own process group, so that a run.sh that went on to the setup is stopped whole
    proc = subprocess.Popen(["bash", str(ROOT / "run.sh"), "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("bash run.sh --help did not answer within 10 s")
    assert proc.returncode == 0, err
    assert "Usage: bash run.sh" in out
