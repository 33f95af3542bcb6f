"""`python bert_metric.py`: score an inference run; a thin wrapper over `postprocess.score`."""
from __future__ import annotations

from pathlib import Path

import click

from common.atomic import write_json, write_text
from common.errors import handle_errors

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
@handle_errors
def main(result_dir, anno_file, index_file, output, predictions, input_file, allow_missing):
    """Entity-level (conlleval) and word-level scores of an NER inference run -> result.json."""
    run = score_run(result_dir, anno_file, index_file, allow_missing=allow_missing,
                    with_words=predictions is not None, input_file=input_file)
    output = output or result_dir / "result.json"
    if predictions is not None:
        write_text(predictions, predictions_text(run.words, run.gold, run.pred))
    # result.json last: its presence means the whole run was scored.
    write_json(output, run.result)
    click.echo(format_table(run.result))
    if predictions is not None:
        click.echo(f"wrote {predictions}")
    click.echo(f"wrote {output}")
