"""`python -m bench`'s OpenVINO paths and its peaks: a CPU without BF16 / VNNI skips ov_bf16 / ov_int8_nncf
with the reason (not an error), the MatMul peak is the best of every kernel, shape and round, and a path
above its peak makes the run invalid (exit code 3, said in the JSON and the Markdown, never a pass).

The whole benchmark with every path (OpenVINO's included) runs in tests/test_speed.py."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import bench.peak as peak_mod
import bench.peak_ov as peak_ov
from bench.acceptance import acceptance
from bench.cli import INVALID_RUN_EXIT, main as bench_main
from bench.paths import PRECISION_OF_PATH
from bench.peak import MatMulTiming
from bench.peaks import PeakSet, kernels_for, peak_violations
from common.cpu import FLAGS_ENV


@pytest.fixture(scope="module")
def mini_file(conll_sentences, tmp_path_factory):
    """16 real CoNLL-2003 test sentences as a CoNLL file."""
    path = tmp_path_factory.mktemp("bench_ov") / "mini.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(
        "\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in conll_sentences[:16]) + "\n", encoding="utf-8")
    return path


def _bench_args(model_dir, data, out, paths):
    return ["--model_dir", str(model_dir), "--input_file", str(data), "--sample", "8", "--repeats", "1",
            "--warmup", "2", "--paths", paths, "--no_batch_table", "--no_file_flow", "--work_dir", str(out / "work"),
            "--json", str(out / "b.json"), "--markdown", str(out / "b.md")]


class ScriptedKernel:
    """A MatMul kernel whose timings are given per round: what a drifting machine does to a real one."""

    def __init__(self, backend, precision, ms_by_round):
        self.backend, self.precision, self.ms_by_round, self.calls = backend, precision, ms_by_round, 0

    def time(self, m, k, n, *, threads, capabilities):
        ms = self.ms_by_round[self.calls // 2] * (2 if (m, k, n) == (64, 64, 64) else 1)  # 2 shapes per round
        self.calls += 1
        return MatMulTiming(m, k, n, ms, backend=self.backend, precision=self.precision)


def test_the_peak_is_the_best_of_every_kernel_shape_and_round():
    ort = ScriptedKernel("onnxruntime", "fp32", [10.0, 4.0, 8.0])  # fastest in round 1
    ov = ScriptedKernel("openvino", "fp32", [6.0, 5.0, 20.0])
    int8 = ScriptedKernel("onnxruntime", "int8", [2.0, 3.0, 1.0])
    peaks = PeakSet([(128, 128, 128), (64, 64, 64)], [ort, ov, int8], threads=2)
    for _ in range(3):
        peaks.measure_round()
    best = MatMulTiming(128, 128, 128, 4.0).gflops
    assert peaks.peak("fp32") == pytest.approx(best) and peaks.peak("bf16") is None
    assert peaks.peak("int8") == pytest.approx(MatMulTiming(128, 128, 128, 1.0).gflops)
    described = peaks.describe()["fp32"]
    assert (described["backend"], described["shape"], described["round"], described["timings"]) == \
           ("onnxruntime", "128x128x128", 1, 12)
    assert described["best_by_backend"]["openvino"] == pytest.approx(MatMulTiming(128, 128, 128, 5.0).gflops)
    # a path at the peak is valid; one above it is not, and says by how much
    runs = [{"name": "ort_fused_fp32", "gflops": best}, {"name": "ov_fp32", "gflops": 1.67 * best},
            {"name": "ort_int8_dynamic", "gflops": 1.0}]
    problems = peak_violations(runs, peaks.peaks(), PRECISION_OF_PATH)
    assert len(problems) == 1 and problems[0].startswith("ov_fp32 runs at") and "167% of the measured fp32" in problems[0]
    assert [r["fraction_of_peak"] for r in runs[:2]] == [pytest.approx(1.0), pytest.approx(1.67)]
    assert runs[2]["peak_precision"] == "int8"


def test_kernels_per_precision():
    assert [(k.backend, k.precision) for k in kernels_for({"fp32", "bf16", "int8"}, openvino=True)] == [
        ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("onnxruntime", "int8"),
        ("openvino", "int8")]
    assert [(k.backend, k.precision) for k in kernels_for({"fp32", "bf16"}, openvino=False)] == [("onnxruntime", "fp32")]


def test_real_kernels_measure_each_precision():
    """Each real kernel runs its graph (OpenVINO's int8 one as an int8 FullyConnected) and times it."""
    for kernel in kernels_for({"fp32", "int8"}, openvino=True):
        timing = kernel.time(64, 64, 64, threads=2, capabilities=None)
        assert timing.gflops > 0 and (timing.backend, timing.precision) == (kernel.backend, kernel.precision)


def test_a_cpu_without_bf16_or_vnni_skips_those_paths_with_the_reason(tiny_model_dir, mini_file, tmp_path, monkeypatch):
    monkeypatch.setenv(FLAGS_ENV, "avx2,fma")  # an older CPU: no avx512_bf16 / amx_bf16, no VNNI
    monkeypatch.setattr(peak_mod, "DEFAULT_SHAPES", ((128, 64, 64),))
    monkeypatch.setattr(peak_mod, "MIN_SECONDS", 0.05)
    out = tmp_path / "b"
    result = CliRunner().invoke(bench_main, _bench_args(tiny_model_dir, mini_file, out, "ov_fp32,ov_bf16,ov_int8_nncf"))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "b.json").read_text())
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert list(skipped) == ["ov_bf16", "ov_int8_nncf"]
    assert "no native BF16" in skipped["ov_bf16"] and "avx512_bf16" in skipped["ov_bf16"]
    assert "no int8 dot-product units" in skipped["ov_int8_nncf"]
    assert [r["name"] for r in report["runs"]] == ["ov_fp32"] and report["valid"] is True
    assert report["cpu_capabilities"]["bf16"] is False and "bf16" not in report["matmul_peaks"]
    assert not (out / "work" / "model_int8_nncf.xml").exists()  # nothing built for a skipped path
    md = (out / "b.md").read_text()
    assert f"| ov_bf16 | skipped: {skipped['ov_bf16']} |" in md


def _slow(m, k, n, *args, precision="fp32", **kwargs):
    return MatMulTiming(m, k, n, 1e6, precision=precision)  # a MatMul of 1000 s: a peak any path beats


def test_a_path_above_its_peak_makes_the_run_invalid(tiny_model_dir, mini_file, tmp_path, monkeypatch):
    monkeypatch.setattr(peak_mod, "DEFAULT_SHAPES", ((128, 64, 64),))
    monkeypatch.setattr(peak_mod, "time_matmul", _slow)
    monkeypatch.setattr(peak_mod, "time_matmul_int8", lambda *a, **kw: _slow(*a, precision="int8"))
    monkeypatch.setattr(peak_ov, "time_matmul_ov", lambda m, k, n, precision, **kw: _slow(m, k, n, precision=precision))
    out = tmp_path / "b"
    result = CliRunner().invoke(bench_main, _bench_args(tiny_model_dir, mini_file, out, "ort_bucketed_fp32"))
    assert result.exit_code == INVALID_RUN_EXIT == 3
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid run: ort_bucketed_fp32 runs at"), result.stderr
    report = json.loads((out / "b.json").read_text())  # written, and marked
    assert report["valid"] is False and report["invalid_reasons"][0] in lines[0]
    assert report["runs"][0]["fraction_of_peak"] > 1
    rows = {c["id"]: c for c in report["acceptance"]}
    assert rows["2"]["pass"] is False and rows["6"]["pass"] is False and "INVALID" in rows["6"]["criterion"]
    assert "INVALID RUN" in (out / "b.md").read_text()


def _run(name, sps, f1, agree, gflops=1.0):
    return {"name": name, "sentences_per_s": sps, "f1": f1, "f1_on": "file", "label_agreement_vs_torch": agree,
            "gflops": gflops}


@pytest.mark.parametrize("int8_speed, int8_f1, agree, expected", [
    (310.0, 0.9010, 0.996, {"5a": True, "5b": True, "5c": True}),
    (290.0, 0.8960, 0.990, {"5a": False, "5b": False, "5c": False}),
])
def test_issue_12_acceptance_rows(int8_speed, int8_f1, agree, expected):
    result = {"valid": True, "fp32_fraction_of_peak": 0.85,
              "runs": [_run("ort_fused_fp32", 100.0, 0.9000, 1.0), _run("ov_int8_nncf", int8_speed, int8_f1, agree),
                       _run("ov_bf16", 150.0, 0.9000, 1.0)],
              "file_flow": {"f1": 0.9, "f1_in_process": 0.9, "same_f1": True, "in_process_path": "ort_fused_fp32",
                            "speed_vs_in_process": 0.79}}
    rows = {c["id"]: c for c in acceptance(result)}
    assert {key: rows[key]["pass"] for key in expected} == expected
    assert "ov_int8_nncf" in rows["5a"]["criterion"]
    assert rows["6"]["pass"] is True and rows["7"]["pass"] is False
    result["valid"] = False  # the same share of an invalid peak never passes
    assert {c["id"]: c["pass"] for c in acceptance(result)}["6"] is False
