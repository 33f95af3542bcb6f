"""Speed work, checked for sameness (never timed): convert.optimize, convert.quantize, the in-process
words -> labels engine (engine, preprocess.encode / preprocess.plan), the benchmark's paths and its JSON/Markdown.

Speed claims live in `python -m bench`; here every path must give the same word labels
as PyTorch (fp32) or nearly the same (INT8) on real CoNLL-2003 sentences. Structure tests use the
tiny random model; label tests use the default model on 50 test sentences.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

import bench.peak as peak_mod
from bench.cli import main as bench_main
from bench.flops import EncoderShape
from bench.paths import OLD_RECIPE, OrtPath, PipelinePath, TorchPath, agreement
from bench.peak import matmul_peak
from bench.run import run_benchmark
from common.cpu import detect
from common.errors import UserError, ValidationError
from common.model_spec import read_model_spec
from convert import onnx_io
from convert.export import export_onnx
from convert.optimize import main as optimize_main, model_dims, optimize_onnx
from convert.quantize import classifier_nodes, quantize_onnx
from engine import Engine
from runners.onnxrt import OrtRunner
from runners.openvino import OpenVinoRunner
from preprocess.align import Aligner
from reference_decode import words_to_labels
from preprocess.encode import encode
from preprocess.plan import BatchPolicy, batch_feed, plan

N_REAL = 50  # default-model sentences


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_graphs(tiny_model_dir, tmp_path_factory):
    """Tiny model: eager export, its fused graph, and an SDPA export (which does not fuse)."""
    folder = tmp_path_factory.mktemp("speed_tiny")
    plain = export_onnx(model_dir=tiny_model_dir, output=folder / "plain.onnx", num_sentences=4).output
    sdpa = export_onnx(model_dir=tiny_model_dir, output=folder / "sdpa.onnx", num_sentences=4,
                       attn_implementation="sdpa").output
    fused = optimize_onnx(input=plain, output=folder / "fused.onnx", num_sentences=4)
    return {"plain": plain, "sdpa": sdpa, "fused": fused.output, "fused_result": fused, "dir": folder}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def real_models(default_model_dir, tmp_path_factory):
    """The default model through the convert steps: plain, fused, INT8 dynamic, INT8 static (100 calib sentences)."""
    folder = tmp_path_factory.mktemp("speed_default")
    plain = export_onnx(model_dir=default_model_dir, output=folder / "plain.onnx", num_sentences=4).output
    fused = optimize_onnx(input=plain, output=folder / "fused.onnx", num_sentences=4).output
    dyn = quantize_onnx(input=fused, output=folder / "int8_dynamic.onnx", mode="dynamic", check_sentences=N_REAL)
    static = quantize_onnx(input=fused, output=folder / "int8_static.onnx", mode="static", calib_sentences=100,
                           check_sentences=N_REAL)
    return {"plain": plain, "fused": fused, "int8_dynamic": dyn.output, "int8_static": static.output,
            "results": {"int8_dynamic": dyn, "int8_static": static}}


# ---------------------------------------------------------------- convert.optimize

def test_optimize_fuses_attention_in_every_layer(tiny_graphs):
    result = tiny_graphs["fused_result"]
    assert result.dims.num_layers == 2 and result.dims.num_heads == 4 and result.dims.hidden_size == 64
    assert result.fused == {"EmbedLayerNormalization": 1, "Attention": 2, "BiasGelu": 2, "SkipLayerNormalization": 4}
    assert result.attention_complete
    assert result.check.max_abs_diff < 1e-4
    ops = onnx_io.op_counts(onnx_io.load(tiny_graphs["fused"]))
    assert ops["Attention"] == 2 and ops["Softmax"] == 0
    meta = onnx_io.metadata(onnx_io.load(tiny_graphs["fused"]))
    assert json.loads(meta["fused_operators"])["Attention"] == 2
    assert "source_model_dir" in meta  # the export's metadata survives (the benchmark and quantize read it)


def test_optimize_cli_prints_counts(tiny_graphs, tmp_path):
    out = tmp_path / "f.onnx"
    result = CliRunner().invoke(optimize_main, ["--input", str(tiny_graphs["plain"]), "--output", str(out),
                                                "--num_sentences", "4"])
    assert result.exit_code == 0, result.output
    assert "Attention                    2         2" in result.output
    assert "SkipLayerNormalization       4         4" in result.output
    assert "check vs input graph: max |diff|" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx"]


def test_optimize_partial_fusion_fails_unless_allowed(tiny_graphs, tmp_path):
    out = tmp_path / "sdpa_fused.onnx"
    result = CliRunner().invoke(optimize_main, ["--input", str(tiny_graphs["sdpa"]), "--output", str(out),
                                                "--num_sentences", "4"])
    assert result.exit_code == 1
    assert result.output.startswith("error: Attention fused in 0 of 2 layers")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    partial = optimize_onnx(input=tiny_graphs["sdpa"], output=out, allow_partial=True, num_sentences=4)
    assert not partial.attention_complete and partial.warnings and out.is_file()


def test_optimize_dims_from_flags_or_graph(tiny_graphs, tmp_path):
    model = onnx_io.load(tiny_graphs["plain"])
    assert model_dims(model, num_heads=4, hidden_size=64).num_layers == 2
    with pytest.raises(UserError, match="no config.json"):
        model_dims(model, model_dir=tmp_path)
    with pytest.raises(UserError, match="must differ"):
        optimize_onnx(input=tiny_graphs["plain"], output=tiny_graphs["plain"])


# ---------------------------------------------------------------- convert.quantize

@pytest.mark.parametrize("mode, expected", [
    ("dynamic", {"QAttention": 2, "MatMulInteger": 6}),
    ("static", {"QAttention": 2, "QuantizeLinear": 6}),
])
def test_quantize_structure(tiny_graphs, tmp_path, mode, expected):
    out = tmp_path / f"{mode}.onnx"
    extra = {"calib_sentences": 20} if mode == "static" else {}
    result = quantize_onnx(input=tiny_graphs["fused"], output=out, mode=mode, min_agreement=0.0,
                           check_sentences=20, **extra)
    ops = onnx_io.op_counts(onnx_io.load(out))
    for op, count in expected.items():
        assert ops[op] == count, ops
    # the classifier stays float: a plain MatMul on float inputs; every other MatMul is quantized
    assert result.kept_float == tuple(classifier_nodes(onnx_io.load(tiny_graphs["fused"])))
    graph = onnx_io.load(out).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    float_matmuls = [n.name for n in graph.node if n.op_type == "MatMul"
                     and not any(producer.get(i) == "DequantizeLinear" for i in n.input)]
    assert float_matmuls == list(result.kept_float)
    assert json.loads(onnx_io.metadata(onnx_io.load(out))["quantization"])["mode"] == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_quantize_refuses_a_bad_agreement(tiny_graphs, tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(ValidationError, match="word labels agree"):
        quantize_onnx(input=tiny_graphs["fused"], output=out, mode="dynamic", min_agreement=1.01, check_sentences=5)
    assert not out.exists()
    with pytest.raises(UserError, match="--calib_file is for --mode static"):
        quantize_onnx(input=tiny_graphs["fused"], output=out, mode="dynamic", calib_file="x")


# ---------------------------------------------------------------- the engine

def _aligner_labels(tokenizer, sentences, max_len, logits_fn):
    """The reference: preprocess.align (what bin_create writes) + words_to_labels."""
    aligner = Aligner(tokenizer, max_len)
    samples = [s for i, words in enumerate(sentences) for s in aligner.samples(i, words)]
    logits = [logits_fn(np.asarray(s.input_ids)) for s in samples]
    out = words_to_labels(samples, logits, {i: len(w) for i, w in enumerate(sentences)},
                          {i: str(i) for i in range(9)})
    return [out[i] for i in range(len(sentences))]


def _fake_logits(ids):
    """Deterministic per-token logits from the token ids alone (padding cannot change them)."""
    ids = np.asarray(ids)
    return np.stack([np.sin(ids * (k + 1) * 0.37) for k in range(9)], axis=-1)


class FakeLogitsRunner:
    """The runner interface over `_fake_logits`; records every feed it is given."""

    def __init__(self):
        self.feeds = []

    def infer(self, feed):
        self.feeds.append(feed)
        return {"logits": _fake_logits(feed["input_ids"])}


@pytest.mark.parametrize("max_len", [512, 12])
def test_engine_matches_the_aligner(tokenizer, conll_sentences, max_len):
    sentences = [list(s.words) for s in conll_sentences[:80]] + [["x"] * 30, ["\u200b", "a"]]
    rows = encode(tokenizer, sentences, max_len)
    if max_len == 12:
        assert rows.windowed > 0  # long sentences went through windows
    for policy in (BatchPolicy(max_rows=7), BatchPolicy(max_rows=64, max_tokens=200),
                   BatchPolicy(max_rows=8, sort=False, pad_to=max_len)):
        batches = plan(rows, policy)
        assert sorted(int(r) for b in batches for r in b.rows) == list(range(rows.num_rows))
        for b in batches:
            assert b.length >= rows.lengths[b.rows].max()
            if policy.max_tokens:
                assert len(b.rows) == 1 or len(b.rows) * b.length <= policy.max_tokens
        engine = Engine(FakeLogitsRunner(), tokenizer=tokenizer, input_names=["input_ids", "attention_mask",
                        "token_type_ids"], id2label={i: str(i) for i in range(9)}, policy=policy, max_len=max_len)
        got = engine.label(sentences)
        assert got == _aligner_labels(tokenizer, sentences, max_len, _fake_logits)


def test_make_feed_pads_and_masks(tokenizer):
    rows = encode(tokenizer, [["Hello", "world"], ["A"]], 512)
    batch = plan(rows, BatchPolicy(max_rows=2))[0]
    feed = batch_feed(rows, batch, ["input_ids", "attention_mask"], pad_id=0)
    assert set(feed) == {"input_ids", "attention_mask"}
    lengths = rows.lengths[batch.rows]
    assert feed["attention_mask"].sum(1).tolist() == lengths.tolist()
    assert feed["input_ids"].dtype == np.int64 and (feed["input_ids"][feed["attention_mask"] == 0] == 0).all()


def test_flops_formula_minilm():
    shape = EncoderShape(layers=6, hidden=384, intermediate=1536, labels=9)
    assert round(shape.flops_per_token() / 1e6, 1) == 21.2
    assert shape.flops(np.array([10])) == 10 * shape.flops_per_token() + 6 * 4 * 384 * 100


def test_io_binding_gives_the_same_logits(tiny_graphs, tokenizer, conll_sentences):
    rows = encode(tokenizer, [s.words for s in conll_sentences[:16]], 512)
    feed = batch_feed(rows, plan(rows, BatchPolicy(max_rows=16))[0], ["input_ids", "attention_mask", "token_type_ids"])
    outs = []
    for binding in (False, True):
        with OrtRunner.from_path(tiny_graphs["fused"], io_binding=binding) as runner:
            outs.append(runner.infer(feed)["logits"])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_matmul_peak_measures_something():
    peak, timings = matmul_peak([(64, 32, 48)], repeats=3)
    assert peak > 0 and timings[0].gflops == peak


# ---------------------------------------------------------------- every path, real sentences, default model

def test_every_path_gives_pytorchs_labels(real_models, default_model_dir, conll_sentences):
    from transformers import AutoTokenizer

    spec = read_model_spec(default_model_dir)
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    sentences = [list(s.words) for s in conll_sentences[:N_REAL]]
    policy = BatchPolicy(max_rows=16, max_tokens=1024)

    def labels(path):
        path.load()
        try:
            return path.predict(sentences)
        finally:
            path.close()

    torch_labels = labels(TorchPath(default_model_dir, 2, policy, tok, spec))
    assert sum(len(s) for s in torch_labels) == sum(len(s) for s in sentences)
    common = dict(tokenizer=tok, spec=spec)
    fp32 = {
        "hf_pipeline": PipelinePath(default_model_dir, 2),
        "ort_fixed512": OrtPath("f", real_models["plain"], OLD_RECIPE, what="", **common),
        "ort_bucketed_fp32": OrtPath("b", real_models["plain"], policy, what="", **common),
        "ort_fused_fp32": OrtPath("u", real_models["fused"], policy, what="", **common),
    }
    for name, path in fp32.items():
        if name == "ort_fixed512":  # 512 positions per sentence: 16 sentences say as much as 50
            path.load()
            assert path.predict(sentences[:16]) == torch_labels[:16], name
            path.close()
            continue
        assert labels(path) == torch_labels, name
    for name in ("int8_dynamic", "int8_static"):
        got = labels(OrtPath(name, real_models[name], policy, what="", **common))
        assert agreement(got, torch_labels) >= 0.97, name


def test_quantized_models_are_smaller_and_agree(real_models):
    for name, result in real_models["results"].items():
        assert result.size_output_mb < 0.75 * result.size_input_mb, name
        assert result.agreement >= 0.97, name


# ---------------------------------------------------------------- the benchmark command

def test_benchmark_end_to_end_tiny(tiny_model_dir, conll_sentences, tmp_path, monkeypatch):
    """The whole benchmark on the tiny model and 24 sentences: every path (OpenVINO's too), the JSON's keys
    old and new, Markdown, plot, file flow, the INT8 source chosen by measurement, the per-precision peaks."""
    data = tmp_path / "mini.txt"
    data.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(
        "\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in conll_sentences[:24]) + "\n", encoding="utf-8")
    out = tmp_path / "b"
    args = ["--model_dir", str(tiny_model_dir), "--input_file", str(data), "--sample", "12", "--repeats", "2",
            "--warmup", "4", "--work_dir", str(tmp_path / "work"), "--calib_sentences", "10",
            "--eval_file", str(data), "--json", str(out / "b.json"), "--markdown", str(out / "b.md")]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(out / "b.png")]
    except ImportError:
        pass
    monkeypatch.setattr(peak_mod, "DEFAULT_SHAPES", ((128, 64, 64), (64, 128, 64)))
    monkeypatch.setattr(peak_mod, "MIN_SECONDS", 0.05)
    result = CliRunner().invoke(bench_main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "b.json").read_text())
    assert {"machine", "runs", "fp32_fraction_of_peak", "batch_table", "file_flow", "acceptance", "best_fp32",
            "build", "data", "model", "batching", "flops_formula", "memory", "seconds", "command"} <= set(report)
    assert {"valid", "invalid_reasons", "skipped", "cpu_capabilities", "matmul_peaks"} <= set(report)
    assert {"cores", "matmul_peak_gflops", "matmul_peak_samples", "matmul_shapes"} <= set(report["machine"])
    # what this CPU lacks is skipped with its reason; everything else ran, in the benchmark's order
    caps = detect()
    lacking = {"ov_bf16"} if not caps.bf16 else set()
    lacking |= {"ov_int8_nncf"} if not caps.vnni_int8 else set()
    assert {s["name"] for s in report["skipped"]} == lacking and all(s["reason"] for s in report["skipped"])
    names = [r["name"] for r in report["runs"]]
    assert names == [n for n in ("hf_pipeline", "torch_batched", "ort_fixed512", "ort_bucketed_fp32", "ort_fused_fp32",
                                 "ort_int8_dynamic", "ort_int8_static", "ov_fp32", "ov_bf16", "ov_int8_nncf")
                     if n not in lacking]
    for run in report["runs"]:
        assert {"name", "sentences_per_s", "f1", "model_mb", "peak_rss_mb", "label_agreement_vs_torch",
                "peak_precision", "fraction_of_peak"} <= set(run)
        assert run["sentences_per_s"] > 0 and len(run["passes"]) == 2 and run["f1_on"] in ("file", "sample")
        assert 0 < run["fraction_of_peak"] <= 1 and run["model_mb"] > 0
    by = {r["name"]: r for r in report["runs"]}
    for name in ("ort_fixed512", "ort_bucketed_fp32", "ort_fused_fp32", "ov_fp32"):
        assert by[name]["f1"] == by["torch_batched"]["f1"], name
        assert by[name]["label_agreement_vs_torch"] == 1.0, name
    assert by["ov_fp32"]["openvino_precision"] == "f32" and by["ov_fp32"]["peak_precision"] == "fp32"
    if "ov_int8_nncf" in by:  # the IR: .xml + .bin, a quarter of the float weights and some
        assert by["ov_int8_nncf"]["model_mb"] < 0.6 * by["ov_fp32"]["model_mb"]
        assert by["ov_int8_nncf"]["peak_precision"] == "int8" and report["build"]["nncf"]["source"] == "plain"
        assert by["ov_int8_nncf"]["label_agreement_vs_torch"] > 0.9
    # the peaks: fp32 from both runtimes, every shape, both rounds (the first, and one in the timed rounds)
    peaks = report["matmul_peaks"]
    assert set(peaks) == {"fp32", "int8"} | ({"bf16"} if "ov_bf16" in by else set())
    assert set(peaks["fp32"]["best_by_backend"]) == {"onnxruntime", "openvino"} and peaks["fp32"]["rounds"] == 2
    fp32_timings = [t for t in report["machine"]["matmul_shapes"] if t["precision"] == "fp32"]
    assert len(fp32_timings) == 2 * 2 * 2  # backends x shapes x rounds
    assert report["machine"]["matmul_peak_gflops"] == peaks["fp32"]["gflops"] == max(t["gflops"] for t in fp32_timings)
    # the ORT INT8 graphs were quantized from the fp32 graph that ran faster in this run
    source = report["build"]["int8_source"]
    speeds = source["sentences_per_s"]
    assert source["graph"] == max(speeds, key=speeds.get) and len(source["passes_s"]["plain"]) >= 3
    assert report["build"]["quantize_dynamic"]["source"] == report["build"]["quantize_static"]["source"] == source["graph"]
    assert report["valid"] is True and report["invalid_reasons"] == []
    assert [r["batch_size"] for r in report["batch_table"]] == [1, 4, 8, 16, 32, 64]
    flow = report["file_flow"]
    assert set(flow["stages"]) == {"bin_create_s", "infer_s", "bert_metric_s"}
    assert flow["same_f1"] is True and flow["sentences"] == 24
    assert flow["speed_vs_in_process"] == pytest.approx(flow["sentences_per_s"] / by["ort_fused_fp32"]["sentences_per_s"])
    md = (out / "b.md").read_text()
    assert "| ort_fused_fp32 |" in md and "| ov_fp32 |" in md and "python -m bench" in md
    assert "INVALID" not in md and f"INT8 source graph: {source['graph']}" in md
    ids = Counter(c["id"] for c in report["acceptance"])
    assert all(ids[key] == 1 for key in ("2", "5a", "5b", "5c", "6", "7")), ids
    assert all(c["pass"] in (True, False) for c in report["acceptance"] if c["id"] in ("5a", "5b", "5c", "6", "7"))
    # the OpenVINO runner names NNCF's output `logits` (its compiled port also carries the fused MatMul's name)
    if "ov_int8_nncf" in by:
        with OpenVinoRunner.from_path(by["ov_int8_nncf"]["model_file"], precision="f32") as runner:
            assert [m.name for m in runner.get_output_metadata()] == ["logits"]


def test_benchmark_rejects_unknown_path(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="unknown path"):
        run_benchmark(model_dir=tiny_model_dir, input_file=tmp_path / "x.txt", paths=["nope"])
