"""postprocess.report: result.json as an HTML page, from a real run of the default model on CoNLL-2003.

The run is the project's own flow on the first 200 test sentences: bin_create (library call),
the ORT runner (`python -m infer`'s library call), bert_metric.py with --report. The page is then
opened in headless Chromium (test_report_in_a_real_browser), which checks its elements and saves a
screenshot in the test's output folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from postprocess.cli import main as bert_metric
from postprocess.report import (benchmark_metric, benchmark_rows, benchmark_tables, confusion_matrix, main as report_main,
                                read_predictions, render_report)

ROOT = Path(__file__).resolve().parents[1]

# The shape `python -m bench --json` writes (runs, batch_table, acceptance, machine facts).
BENCHMARK = {
    "note": "test fixture: illustrative numbers, not a measurement",
    "command": "python -m infer.benchmark --model_dir models/minilm-l6-conll03 --input_file test.txt --json b.json",
    "machine": {"cores": 2, "cpu": "test cpu", "cpu_flags": ["avx2", "fma"], "matmul_peak_gflops": 101.5},
    "model": {"model_dir": "models/minilm-l6-conll03", "layers": 6, "hidden": 384},
    "data": {"input_file": "test.txt", "sentences": 3453, "sample": 500, "seed": 0},
    "runs": [
        {"name": "hf_pipeline", "description": "transformers pipeline, a sentence at a time", "sentences_per_s": 48.1,
         "seconds": 10.4, "passes": [10.4], "gflops": 9.3, "f1": 0.861, "f1_on": "sample", "model_mb": 45.6,
         "peak_rss_mb": 310.0},
        {"name": "ort_fixed512", "description": "the old recipe", "sentences_per_s": 6.2, "seconds": 80.1,
         "passes": [80.1], "gflops": 1.2, "f1": 0.8712, "f1_on": "file", "model_mb": 90.4, "peak_rss_mb": 420.5},
        {"name": "ort_bucketed_fp32", "description": "sorted by length", "sentences_per_s": 612.3, "seconds": 0.82,
         "passes": [0.82, 0.81, 0.83], "gflops": 70.2, "f1": 0.8712, "f1_on": "file", "model_mb": 90.4,
         "peak_rss_mb": 250.1, "label_agreement_vs_torch": 0.9999},
    ],
    "batch_table": [{"batch_size": b, "sentences_per_s": v, "gflops": v / 9}
                    for b, v in ((1, 150.0), (8, 480.0), (64, 612.0))],
    "acceptance": [{"id": "1a", "criterion": "ort_bucketed_fp32 >= 30x ort_fixed512", "value": 98.8, "pass": True}],
    "file_flow": {"f1": 0.8712, "stages": {"bin_create_s": 2.0}},
    "seconds": 321.0,
}


@pytest.fixture(scope="module")
def scored_run(default_model_dir, conll, tmp_path_factory):
    """A real run: 200 CoNLL test sentences through bin_create, the ORT runner and bert_metric --report."""
    from infer.offline import run_offline
    from convert.onnx_cache import ensure_onnx
    from preprocess.conll import read_conll
    from preprocess.pipeline import create_bins

    tmp = tmp_path_factory.mktemp("report_run")
    sentences = read_conll(conll / "test.txt")[:200]
    data = tmp / "test200.txt"
    data.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n",
                    encoding="utf-8")
    onnx = ensure_onnx(default_model_dir)
    bins = create_bins(data, default_model_dir, tmp / "bins", seq_len=128, buckets=(32, 64), show_progress=False)
    run = run_offline(model=onnx, input=",".join(str(d) for d in bins.input_dirs()), output=tmp / "out",
                      outfmt="NPY", batchsize=8, log=lambda msg: None, progress=False)
    bench = tmp / "benchmark.json"
    bench.write_text(json.dumps(BENCHMARK), encoding="utf-8")
    report = tmp / "report.html"
    preds = tmp / "preds.txt"
    res = CliRunner().invoke(bert_metric, ["--result_dir", str(run.out_dir), "--anno_file", str(bins.anno_file),
                                           "--predictions", str(preds), "--report", str(report),
                                           "--benchmark", str(bench)])
    assert res.exit_code == 0, res.output
    return {"dir": tmp, "report": report, "result": run.out_dir / "result.json", "predictions": preds,
            "benchmark": bench, "summary": run.summary_path}


# -- pure pieces ------------------------------------------------------------------------------------------
def test_doctests():
    import doctest

    import postprocess.report

    assert doctest.testmod(postprocess.report).failed == 0


def test_confusion_matrix_counts_words_by_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "B-PER", "O", "B-ORG"], ["I-ORG", "B-MISC"]]
    labels, m = confusion_matrix(gold, pred)
    assert labels == ["LOC", "MISC", "ORG", "PER", "O"]
    assert m[labels.index("PER")][labels.index("PER")] == 2
    assert m[labels.index("LOC")][labels.index("ORG")] == 1
    assert m[labels.index("O")][labels.index("MISC")] == 1
    assert sum(map(sum, m)) == 6
    with pytest.raises(ValueError):
        confusion_matrix([["O"]], [["O", "O"]])


def test_read_predictions_errors(tmp_path):
    from common.errors import InputFileError

    good = tmp_path / "p.txt"
    good.write_text("EU B-ORG B-ORG\nrejects O O\n\nPeter B-PER B-PER\n", encoding="utf-8")
    assert read_predictions(good) == ([["B-ORG", "O"], ["B-PER"]], [["B-ORG", "O"], ["B-PER"]])
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=":1: expected"):
        read_predictions(bad)
    bad.write_text("EU B-ORG X-ORG\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="X-ORG"):
        read_predictions(bad)


def test_benchmark_shapes():
    meta, rows = benchmark_rows(BENCHMARK)
    assert meta["machine.cpu"] == "test cpu" and meta["seconds"] == 321.0 and len(rows) == 3
    assert benchmark_metric(rows) == "sentences_per_s"
    assert [k for k, _ in benchmark_tables(BENCHMARK)] == ["runs", "batch_table", "acceptance"]
    meta, rows = benchmark_rows({"throughput": 123.4, "NPU_compute_time": {"mean": 8.1, "count": 10}})
    assert rows == [{"throughput": 123.4, "compute_ms_mean": 8.1, "compute_ms_count": 10}]
    assert benchmark_rows([{"a": 1}, 3]) == ({}, [{"a": 1}])


def test_render_is_self_contained():
    result = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "accuracy": 0.9,
              "per_type": {"PER": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4, "predicted": 2,
                                   "correct": 1}}, "num_entities": 4, "num_predicted": 2, "num_correct": 1,
              "model_dir": "<script>x</script>"}
    page = render_report(result, gold=[["B-PER", "O"]], pred=[["O", "O"]], benchmark=None)
    assert "<script>x" not in page and "&lt;script&gt;" in page
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert 'id="confusion-matrix"' in page and 'id="benchmark"' not in page


# -- the real run ------------------------------------------------------------------------------------------
def test_bert_metric_report(scored_run):
    page = scored_run["report"].read_text(encoding="utf-8")
    result = json.loads(scored_run["result"].read_text(encoding="utf-8"))
    for element in ('id="per-type-chart"', 'id="per-type-table"', 'id="confusion-matrix"', 'id="counts-chart"',
                    'id="benchmark-chart-runs"', 'id="benchmark-table-runs"', 'id="benchmark-chart-batch_table"',
                    'id="benchmark-table-acceptance"'):
        assert element in page, element
    counts = [int(n) for n in re.findall(r'class="cell[^"]*"[^>]*data-count="(\d+)"', page)]
    assert sum(counts) == result["num_words"] == sum(1 for l in scored_run["predictions"].open() if l.strip())
    assert f'{100 * result["f1"]:.2f}' in page
    assert result["f1"] > 0.6  # the default model is a real NER model


def test_standalone_report_from_predictions_or_from_the_run(scored_run, tmp_path):
    """Both ways of getting per-word tags give the page bert_metric.py --report wrote."""
    from_preds, from_run = tmp_path / "a.html", tmp_path / "b.html"
    runner = CliRunner()
    res = runner.invoke(report_main, ["--result", str(scored_run["result"]), "--output", str(from_preds),
                                      "--predictions", str(scored_run["predictions"]),
                                      "--benchmark", str(scored_run["summary"])])
    assert res.exit_code == 0, res.output
    res = runner.invoke(report_main, ["--result", str(scored_run["result"]), "--output", str(from_run)])
    assert res.exit_code == 0, res.output

    def matrix(path):
        return re.search(r'<table id="confusion-matrix".*?</table>', path.read_text(encoding="utf-8"), re.S).group(0)

    assert matrix(from_preds) == matrix(from_run) == matrix(scored_run["report"])
    assert 'id="benchmark-table-summary"' in from_preds.read_text(encoding="utf-8")  # an ais_bench summary
    assert 'id="benchmark"' not in from_run.read_text(encoding="utf-8")


def test_report_errors(scored_run, tmp_path):
    runner = CliRunner()
    other = tmp_path / "other.txt"
    other.write_text("EU B-ORG B-ORG\n", encoding="utf-8")
    res = runner.invoke(report_main, ["--result", str(scored_run["result"]), "--output", str(tmp_path / "x.html"),
                                      "--predictions", str(other)])
    assert res.exit_code == 1 and "not the same run" in res.stderr
    res = runner.invoke(bert_metric, ["--result_dir", "x", "--anno_file", "y", "--benchmark", "b.json"])
    assert res.exit_code == 1 and "--report" in res.stderr
    moved = tmp_path / "result.json"
    data = json.loads(scored_run["result"].read_text(encoding="utf-8"))
    data["result_dir"] = str(tmp_path / "gone")
    moved.write_text(json.dumps(data), encoding="utf-8")
    res = runner.invoke(report_main, ["--result", str(moved), "--output", str(tmp_path / "y.html")])
    assert res.exit_code == 1 and "--predictions" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def test_report_in_a_real_browser(scored_run, tmp_path, browser):
    """Headless Chromium renders the page: charts, matrix and tables are there, visible, and sized."""
    from selenium.webdriver.common.by import By

    from browser_support import full_page_screenshot, headless_chromium, keep_screenshot

    result = json.loads(scored_run["result"].read_text(encoding="utf-8"))
    types = list(result["per_type"])
    with headless_chromium() as driver:
        driver.get(scored_run["report"].resolve().as_uri())
        assert driver.title.startswith("NER report")
        bars = driver.find_elements(By.CSS_SELECTOR, "#per-type-chart rect.bar")
        assert len(bars) == 3 * (len(types) + 1)
        f1_bar = driver.find_element(By.CSS_SELECTOR, '#per-type-chart rect.bar[data-group="overall"][data-series="f1"]')
        assert f1_bar.rect["width"] > 100 and float(f1_bar.get_attribute("data-value")) == pytest.approx(result["f1"])
        cells = driver.find_elements(By.CSS_SELECTOR, "#confusion-matrix td.cell")
        assert len(cells) == (len(types) + 1) ** 2
        assert sum(int(c.text) for c in cells) == result["num_words"]
        header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#confusion-matrix thead th")]
        assert header[1:-1] == sorted(types) + ["O"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#counts-chart rect.bar")) == 3 * len(types)
        runs = BENCHMARK["runs"]
        bars = driver.find_elements(By.CSS_SELECTOR, "#benchmark-chart-runs rect.bar")
        assert [b.get_attribute("data-group") for b in bars] == [r["name"] for r in runs]
        widths = [b.rect["width"] for b in bars]
        assert widths.index(max(widths)) == 2  # the fastest path has the longest bar
        assert len(driver.find_elements(By.CSS_SELECTOR, "#benchmark-table-runs tbody tr")) == len(runs)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#benchmark-chart-batch_table rect.bar")) == 3
        for selector in ("#summary", "#per-type-chart", "#confusion-matrix", "#counts-chart", "#benchmark-chart-runs"):
            element = driver.find_element(By.CSS_SELECTOR, selector)
            assert element.is_displayed() and element.size["width"] > 200 and element.size["height"] > 50, selector
        # self-contained: the page asked for nothing but itself
        urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls == []
        shot = full_page_screenshot(driver, tmp_path / "report.png")
    assert shot.stat().st_size > 20_000
    keep_screenshot(shot)


