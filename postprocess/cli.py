"""`python bert_metric.py`: score an inference run; a thin wrapper over `postprocess.score`."""
from __future__ import annotations

from pathlib import Path

import click

from common.atomic import write_json, write_text
from common.errors import UserError, handle_errors
from common.cli import CONTEXT_SETTINGS

from .destinations import check_destination, check_distinct, remove_stale_temporaries, write_all
from .outputs import BIN_DTYPES
from .report import read_benchmark, render_report
from .score import format_table, predictions_text, score_run


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--result_dir", "--result-dir", "result_dir", required=True, type=click.Path(path_type=Path),
              help="Inference output folder OUT/<timestamp> holding <input>_<i>_0.npy (or .bin) per sample, "
                   "directly or in the device<N>_* subfolders of a multi-device ais_bench run.")
@click.option("--anno_file", "--anno-file", "anno_file", required=True, type=click.Path(path_type=Path),
              help="bert_bin_<ts>.anno written by bin_create.py.")
@click.option("--index_file", "--index-file", "index_file", type=click.Path(path_type=Path), default=None,
              help="The .index.jsonl [default: the anno path with .anno replaced by .index.jsonl].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write result.json [default: <result_dir>/result.json].")
@click.option("--output_dtype", "--output-dtype", "output_dtype", type=click.Choice(sorted(BIN_DTYPES)),
              default=None, help="dtype of .bin outputs (float16 for an OM with fp16 outputs; .npy files carry their "
                                 "own) [default: from the file size, which must be exactly the float32 or float16 "
                                 "size].")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="Also write `word gold pred` lines (IOB2, blank line between sentences) for conlleval.")
@click.option("--input_file", "--input-file", "input_file", type=click.Path(path_type=Path), default=None,
              help="CoNLL file to take the words from for --predictions [default: the index's source].")
@click.option("--allow-missing", "--allow_missing", "allow_missing", is_flag=True,
              help="Score samples without an output as all-O (and list them) instead of failing.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Also write a self-contained HTML report: score bars, confusion matrix, entity counts.")
@click.option("--benchmark", type=click.Path(path_type=Path), default=None,
              help="With --report: a benchmark JSON whose plot and table the report shows.")
@handle_errors
def main(result_dir, anno_file, index_file, output, output_dtype, predictions, input_file, allow_missing, report,
         benchmark):
    """Entity-level (conlleval) and word-level scores of an NER inference run -> result.json."""
    if benchmark is not None and report is None:
        raise UserError("--benchmark goes into the HTML report: it needs --report")
    # Every destination is checked before the (long) scoring, so a bad one costs nothing.
    output_hint = "" if output else "; pass --output FILE to write result.json elsewhere"
    if output is None and result_dir.is_dir():
        output = result_dir / "result.json"
    check_distinct([("--output", output), ("--predictions", predictions), ("--report", report)])
    for path, option, hint in ((output, "--output", output_hint), (predictions, "--predictions", ""),
                               (report, "--report", "")):
        if path is not None:
            check_destination(path, option, hint)
    bench = read_benchmark(benchmark) if benchmark is not None else None  # a bad JSON fails before scoring
    run = score_run(result_dir, anno_file, index_file, allow_missing=allow_missing,
                    with_words=predictions is not None, input_file=input_file, output_dtype=output_dtype)
    remove_stale_temporaries(output.parent)
    writes = []
    if predictions is not None:
        text = predictions_text(run.words, run.gold, run.pred)
        writes.append((predictions, lambda path: write_text(path, text), ""))
    if report is not None:
        page = render_report(run.result, gold=run.gold, pred=run.pred, benchmark=bench)
        writes.append((report, lambda path: write_text(path, page), ""))
    # result.json last: its presence means the whole run was scored.
    writes.append((output, lambda path: write_json(path, run.result), output_hint))
    write_all(writes)
    click.echo(format_table(run.result))
    if run.result["bin_dtype"] is not None:
        source = "--output_dtype" if output_dtype else "their size"
        click.echo(f"read .bin outputs as {run.result['bin_dtype']} (from {source})")
    for path in (predictions, report, output):
        if path is not None:
            click.echo(f"wrote {path}")
