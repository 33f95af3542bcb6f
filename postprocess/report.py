"""result.json as a self-contained HTML page: scores as bars, a confusion matrix, entity counts,
and the benchmark's plot and table when its JSON is given.

    python bert_metric.py --result_dir OUT/<ts> --anno_file X.anno --report report.html [--benchmark B.json]
    python -m postprocess.report --result OUT/<ts>/result.json --output report.html \
        [--predictions preds.txt] [--benchmark B.json]

The confusion matrix is word-level over entity types with O (a word's type is its tag without the
B-/I- prefix): rows gold, columns predicted. It needs each word's gold and predicted tag, which
result.json does not hold: `bert_metric.py --report` has them in memory; the standalone command
reads them from a `--predictions` file (`word gold pred` lines, as bert_metric.py writes them) or,
without one, scores the run again from the result folder, anno and index that result.json names.

The page has no scripts and loads nothing: charts are inline SVG, styles inline CSS.

>>> labels, m = confusion_matrix([["B-PER", "I-PER", "O"]], [["B-PER", "O", "B-LOC"]])
>>> labels, m
(['LOC', 'PER', 'O'], [[0, 0, 0], [0, 1, 1], [1, 0, 0]])
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from common.atomic import write_text
from common.errors import UserError, handle_errors
from common.cli import CONTEXT_SETTINGS

from .destinations import check_destination, write_all
# The pieces live in report_data (reading, confusion matrix) and report_html (the page); this
# module is their public face and the command line.
from .report_data import (benchmark_meta, benchmark_metric, benchmark_rows, benchmark_tables,  # noqa: F401
                          confusion_matrix, read_benchmark, read_predictions, read_result, word_type)
from .report_html import render_report
from .score import score_run


def labels_from_run(result: dict, result_path) -> tuple[list[list[str]], list[list[str]]]:
    """Score the run that result.json names again, for its per-word gold and predicted tags."""
    needed = [k for k in ("result_dir", "anno_file") if not result.get(k)]
    if needed:
        raise UserError(f"{result_path} names no {' or '.join(needed)}: pass --predictions FILE for the "
                        "confusion matrix")
    for key in ("result_dir", "anno_file"):
        if not Path(result[key]).exists():
            raise UserError(f"the run's {key} {result[key]} (named in {result_path}) is gone: pass "
                            "--predictions FILE (written by bert_metric.py --predictions) for the confusion matrix")
    run = score_run(result["result_dir"], result["anno_file"], result.get("index_file"),
                    allow_missing=bool(result.get("missing")))
    return run.gold, run.pred


def write_report(*, result, output, predictions=None, benchmark=None) -> Path:
    """Read result.json (+ tags, + benchmark JSON) and write the page atomically; returns `output`."""
    result_path, output = Path(result), Path(output)
    check_destination(output, "--output")  # before the (possibly long) scoring
    data = read_result(result_path)
    bench = read_benchmark(benchmark) if benchmark is not None else None
    if predictions is not None:
        gold, pred = read_predictions(predictions)
        source = str(predictions)
    else:
        gold, pred = labels_from_run(data, result_path)
        source = f"the run in {data['result_dir']}"
    if data.get("num_words") is not None and sum(map(len, gold)) != data["num_words"]:
        raise UserError(f"{predictions or source} has {sum(map(len, gold))} words, {result_path} scored "
                        f"{data['num_words']}: they are not the same run")
    page = render_report(data, gold=gold, pred=pred, benchmark=bench, tags_source=source)
    write_all([(output, lambda path: write_text(path, page), "")])
    return output


@click.command(name="report", context_settings=CONTEXT_SETTINGS)
@click.option("--result", "result", required=True, type=click.Path(path_type=Path),
              help="result.json written by bert_metric.py.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="HTML file to write.")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="`word gold pred` file (bert_metric.py --predictions) for the confusion matrix "
                   "[default: score the run that result.json names again].")
@click.option("--benchmark", type=click.Path(path_type=Path), default=None,
              help="Benchmark JSON: adds its plot and table.")
@handle_errors
def main(result, output, predictions, benchmark):
    """Render result.json as a self-contained HTML report."""
    write_report(result=result, output=output, predictions=predictions, benchmark=benchmark)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
