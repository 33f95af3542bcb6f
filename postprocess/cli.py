"""`python bert_metric.py`: score an inference run; a thin wrapper over `postprocess.score`."""
from __future__ import annotations

from pathlib import Path

import click

from common.atomic import write_json, write_text
from common.errors import UserError, handle_errors

from .score import format_table, predictions_text, score_run


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--result_dir", "--result-dir", "result_dir", required=True, type=click.Path(path_type=Path),
              help="Inference output folder OUT/<timestamp> holding <input>_<i>_0.npy (or .bin) per sample.")
@click.option("--anno_file", "--anno-file", "anno_file", required=True, type=click.Path(path_type=Path),
              help="bert_bin_<ts>.anno written by bin_create.py.")
@click.option("--index_file", "--index-file", "index_file", type=click.Path(path_type=Path), default=None,
              help="The .index.jsonl [default: the anno path with .anno replaced by .index.jsonl].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write result.json [default: <result_dir>/result.json].")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="Also write `word gold pred` lines (IOB2, blank line between sentences) for conlleval.")
@click.option("--input_file", "--input-file", "input_file", type=click.Path(path_type=Path), default=None,
              help="CoNLL file to take the words from for --predictions [default: the index's source].")
@click.option("--allow-missing", "--allow_missing", "allow_missing", is_flag=True,
              help="Score samples without an output as all-O (and list them) instead of failing.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write a self-contained HTML report: score bars, confusion matrix, entity counts.")
@click.option("--benchmark", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --report: a benchmark JSON whose plot and table the report shows.")
@handle_errors
def main(result_dir, anno_file, index_file, output, predictions, input_file, allow_missing, report, benchmark):
    """Entity-level (conlleval) and word-level scores of an NER inference run -> result.json."""
    if benchmark is not None and report is None:
        raise UserError("--benchmark goes into the HTML report: it needs --report")
    if report is not None:  # imported only when asked for; a bad benchmark JSON fails before scoring
        from .report import read_benchmark, render_report

        bench = read_benchmark(benchmark) if benchmark is not None else None
    run = score_run(result_dir, anno_file, index_file, allow_missing=allow_missing,
                    with_words=predictions is not None, input_file=input_file)
    output = output or result_dir / "result.json"
    if predictions is not None:
        write_text(predictions, predictions_text(run.words, run.gold, run.pred))
    if report is not None:
        write_text(report, render_report(run.result, gold=run.gold, pred=run.pred, benchmark=bench))
    # result.json last: its presence means the whole run was scored.
    write_json(output, run.result)
    click.echo(format_table(run.result))
    if predictions is not None:
        click.echo(f"wrote {predictions}")
    if report is not None:
        click.echo(f"wrote {report}")
    click.echo(f"wrote {output}")
